"""The installed vesyncctl against `twistd vesyncd` with one simulated plug on loopback: a countdown
really switches the plug back, automation and cost commands answer, Ctrl-C and SIGTERM end `watch`
quietly, and the daemon's log at info says nothing about each control connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from typing import Any

from test_cli import BIN, _Lines, ctl, startDaemonAndSim


def test_countdownAutomationAndQuietWatchStop() -> None:

    """`on --for 3s` is confirmed on, then the plug is switched off about 3 s later by the daemon; status,
    schedule, rule, cost and history answer; SIGINT and SIGTERM end `watch` with exit 0 and no error."""
    procs: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESYNCD_")}
    with tempfile.TemporaryDirectory() as stateDir:
        try:
            log, _plugPort, _sim, simLines = startDaemonAndSim(stateDir, procs, env, 1,
                                                               "--currency", "EUR", "--price-kwh", "0.30")
            plugId = simLines.waitJSON(lambda e: e.get("event") == "online")["plug"]
            if ctl(stateDir, "--json", "status", plugId).stdout.find('"relay": "on"') >= 0:
                assert ctl(stateDir, "off", plugId).returncode == 0
                simLines.waitJSON(lambda e: e.get("event") == "relay" and e.get("relay") == "off")

            started = time.monotonic()
            result = ctl(stateDir, "--json", "on", plugId, "--for", "3s")
            assert result.returncode == 0, result.stderr
            answer = json.loads(result.stdout)
            assert answer["plug"]["relay"] == "on" and answer["timer"]["switch"] == "off"
            simLines.waitJSON(lambda e: e.get("event") == "relay" and e.get("relay") == "on")
            simLines.waitJSON(lambda e: e.get("event") == "relay" and e.get("relay") == "off", timeout=15)
            assert time.monotonic() - started < 12.0

            added = ctl(stateDir, "--json", "schedule", "add", plugId, "on", "--at", "06:30", "--days", "weekdays")
            assert added.returncode == 0, added.stderr
            status = ctl(stateDir, "status", plugId)
            assert status.returncode == 0, status.stderr
            assert "Schedules:" in status.stdout and "06:30 mon,tue,wed,thu,fri" in status.stdout
            assert "Always on:" in status.stdout and "This year:" in status.stdout
            bad = ctl(stateDir, "--json", "schedule", "add", plugId, "on", "--at", "sunset")
            assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "usage"
            cost = ctl(stateDir, "--json", "cost")
            assert cost.returncode == 0 and json.loads(cost.stdout)["currency"] == "EUR", cost.stderr
            history = ctl(stateDir, "--json", "history", plugId)
            assert history.returncode == 0, history.stderr
            switches = json.loads(history.stdout)
            causes = [s["cause"] for s in switches]
            assert causes[:2] == ["timer", "command"], causes
            # The countdown on the daemon's own clock (the test's clock and the daemon's may drift apart
            # on a busy machine): off about 3 s after on.
            assert 2.9 <= switches[0]["ts"] - switches[1]["ts"] < 12.0, switches[:2]

            watchers = []
            for sig in (signal.SIGINT, signal.SIGTERM):  # both at once: each vesyncctl takes a while to start
                watcher = subprocess.Popen([str(BIN / "vesyncctl"), "--state-dir", stateDir, "watch"],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                procs.append(watcher)
                watchers.append((sig, watcher, _Lines(watcher.stderr)))
            for sig, watcher, notes in watchers:
                notes.waitLine(lambda line: "watching events" in line)
                watcher.send_signal(sig)
                assert watcher.wait(10) == 0, sig
                try:  # everything it wrote, up to the end of the stream
                    notes.waitLine(lambda line: False, timeout=5)
                except AssertionError:
                    pass
                assert [line.strip() for line in notes.seen] == ["vesyncctl: watching events (Ctrl-C stops)"]
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
    infoLines: list[Any] = [line for line in log.seen if "control client" in line or "AMP connection" in line
                            or "ControlProtocol connection" in line]
    assert infoLines == [], infoLines
