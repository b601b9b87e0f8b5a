"""vesyncctl: formatting in memory, and end to end against a real daemon with simulated plugs on loopback."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from vesyncd.cli import ago, energyCSV, formatPlugs

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HELPERS = Path(__file__).resolve().parent / "control_helpers.py"


def test_ago() -> None:
    """Times are shown relative to now."""
    now = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert ago("2024-01-01T11:58:00Z", now) == "2 min ago"
    assert ago("2024-01-01T11:59:59Z", now) == "just now"
    assert ago(None, now) == "never"


def test_tableHasUnits() -> None:
    """The list table is aligned and shows W, V, dBm and kWh."""
    plug = {"id": "abc", "alias": "Kettle", "online": True, "relay": "on", "power_w": 12.0, "voltage_v": 230.0,
            "rssi_dbm": -50, "energy_today_kwh": 0.1, "energy_lifetime_kwh": 12.5, "last_seen": None}
    text = formatPlugs([plug])
    assert "12.0 W" in text and "230.0 V" in text and "-50 dBm" in text and "0.100 kWh" in text
    assert "12.500 kWh" in text and "LIFETIME" in text
    assert text.splitlines()[0].startswith("NAME")


def test_energyCSV() -> None:
    """CSV output has a header, one row per bucket and a total."""
    text = energyCSV({"buckets": [{"start": "s", "label": "00:00", "wh": 1.5}], "total_wh": 1.5})
    assert text.splitlines() == ["start,label,wh", "s,00:00,1.5", ",total,1.5"]


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lines:
    """Reads a subprocess's stdout lines on a thread so tests can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.q.put(line)

    def waitFor(self, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
        """The first JSON line satisfying C{predicate}, or fail after C{timeout} s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=max(0.05, end - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if predicate(obj):
                return obj
        raise AssertionError(f"not seen within {timeout} s; lines: {self.seen[-10:]}")


@pytest.fixture(scope="module")
def daemon() -> Any:
    """A daemon on loopback with 3 simulated plugs; yields (stateDir, sim process, sim lines)."""
    procs: list[subprocess.Popen] = []
    tmp = tempfile.TemporaryDirectory()
    try:
        port = _freePort()
        extra = ["--dns-port", str(_freePort()), "--dns-interface", "127.0.0.1", "--no-http"]
        log = open(Path(tmp.name) / "daemon.log", "w")
        procs.append(subprocess.Popen([sys.executable, str(HELPERS), "-n", "--pidfile=", "vesyncd",
                                       "--plugs", f"tcp:{port}:interface=127.0.0.1", "--state-dir", tmp.name,
                                       "--refresh-interval", "0", *extra],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=tmp.name))
        sock = Path(tmp.name) / "control.sock"
        end = time.monotonic() + 20
        while not sock.exists():
            assert procs[0].poll() is None, (Path(tmp.name) / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < end, "daemon did not start"
            time.sleep(0.1)
        sim = subprocess.Popen([str(BIN / "vesyncd-sim"), "--server", f"127.0.0.1:{port}", "--count", "3",
                                "--events"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        procs.append(sim)
        lines = _Lines(sim)
        end = time.monotonic() + 20
        while True:
            listed = ctl(tmp.name, "--json", "list")
            if listed.returncode == 0 and sum(p["online"] for p in json.loads(listed.stdout)) == 3:
                break
            assert time.monotonic() < end, f"plugs did not come online: {listed.stdout} {listed.stderr}"
            time.sleep(0.2)
        yield tmp.name, sim, lines
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        tmp.cleanup()


def ctl(stateDir: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run vesyncctl against the test daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESYNCD_")}
    return subprocess.run([str(BIN / "vesyncctl"), "--state-dir", stateDir, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_listSchema(daemon: Any) -> None:
    """`list --json` is an array of plugs with the documented keys and types."""
    result = ctl(daemon[0], "--json", "list")
    assert result.returncode == 0, result.stderr
    plugs = json.loads(result.stdout)
    assert len(plugs) == 3
    types = {"id": str, "alias": (str, type(None)), "online": bool, "relay": (str, type(None)),
             "power_w": (float, int, type(None)), "voltage_v": (float, int, type(None)),
             "rssi_dbm": (int, type(None)), "firmware": (str, type(None)), "address": (str, type(None)),
             "last_seen": (str, type(None)), "energy_today_kwh": (float, int),
             "energy_lifetime_kwh": (float, int)}
    for plug in plugs:
        for key, kind in types.items():
            assert isinstance(plug[key], kind), (key, plug[key])
        assert plug["relay"] in ("on", "off", None)
        assert plug["last_seen"].endswith("Z")
    human = ctl(daemon[0], "list")
    assert human.returncode == 0 and "NAME" in human.stdout


def test_onOffReachThePlug(daemon: Any) -> None:
    """`on` and `off` switch the simulated plug's relay, seen in the simulator's events."""
    stateDir, _sim, lines = daemon
    plug = json.loads(ctl(stateDir, "--json", "list").stdout)[0]
    plugId = plug["id"]
    first, second = ("off", "on") if plug["relay"] == "on" else ("on", "off")
    result = ctl(stateDir, first, plugId[:8])
    assert result.returncode == 0, result.stderr
    assert f"is {first}" in result.stdout
    lines.waitFor(lambda e: e.get("event") == "relay" and e.get("plug") == plugId and e.get("relay") == first)
    result = ctl(stateDir, "--json", second, plugId)
    assert result.returncode == 0 and json.loads(result.stdout)["relay"] == second
    lines.waitFor(lambda e: e.get("event") == "relay" and e.get("plug") == plugId and e.get("relay") == second)


def test_watchSeesButtonPress(daemon: Any) -> None:
    """`watch --json` prints the relay event of a button press on plug 0, cause "button"."""
    stateDir, sim, _lines = daemon
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESYNCD_")}
    watcher = subprocess.Popen([str(BIN / "vesyncctl"), "--state-dir", stateDir, "--json", "watch"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        watched = _Lines(watcher)
        time.sleep(1.0)  # let the watch start before pressing
        sim.stdin.write("press 0\n")
        sim.stdin.flush()
        event = watched.waitFor(lambda e: e.get("event") == "relay" and e["data"].get("cause") == "button")
        assert event["data"]["relay"] in (True, False) and event["at"].endswith("Z")
    finally:
        watcher.terminate()
        watcher.wait(5)


def test_exitCodes(daemon: Any, tmp_path: Path) -> None:
    """0 done, 1 failed (unknown plug, unreachable daemon, saying where), 2 usage error."""
    stateDir = daemon[0]
    assert ctl(stateDir, "info").returncode == 0
    unknown = ctl(stateDir, "on", "no-such-plug")
    assert unknown.returncode == 1 and "no plug is called" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert ctl(stateDir, "power-on", "x", "sometimes").returncode == 2
    assert ctl(stateDir, "frobnicate").returncode == 2
    away = ctl(str(tmp_path), "list")
    assert away.returncode == 1 and str(tmp_path) in away.stderr
    (tmp_path / "control.token").write_text("00" * 32)
    refused = ctl(str(tmp_path), "list")
    assert refused.returncode == 1 and "control.sock" in refused.stderr


def test_energyAndStatus(daemon: Any) -> None:
    """`energy` prints a day's hours with a total; `status` the plug's details."""
    stateDir = daemon[0]
    plugId = json.loads(ctl(stateDir, "--json", "list").stdout)[1]["id"]
    result = ctl(stateDir, "--json", "energy", plugId, "--year", "2024")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["buckets"]) == 12
    assert "total" in ctl(stateDir, "energy", plugId).stdout
    assert ctl(stateDir, "energy", plugId, "--csv", "--month", "2024-02").stdout.count("\n") == 29 + 2
    assert "Firmware" in ctl(stateDir, "status", plugId).stdout


def test_doctorAgainstTheDaemon(daemon: Any) -> None:
    """`doctor --json` finds the running daemon, asks its DNS responder where it really listens,
    and lists the simulated plugs with their address and firmware."""
    result = ctl(daemon[0], "doctor", "--json", timeout=30)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert set(checks["daemon"]) == {"name", "level", "message", "fix"}
    assert checks["daemon"]["level"] == "OK", checks["daemon"]
    responder = checks["dns vesyncd responder"]
    assert "no answer" not in responder["message"], responder
    assert "server2.vesync.com" in responder["message"] or "127.0.0.1" in responder["message"], responder
    plugChecks = [c for name, c in checks.items() if name.startswith("plug ")]
    assert len(plugChecks) == 3 and all(c["level"] == "OK" for c in plugChecks)
    assert all("firmware 1.89" in c["message"] and "127.0.0.1" in c["message"] for c in plugChecks)
    assert result.returncode in (0, 1)
    assert result.returncode == (1 if any(c["level"] == "FAIL" for c in checks.values()) else 0)


def test_provisionThenThePlugWorks(daemon: Any) -> None:
    """Provision a factory-reset simulated plug: it answers, logs in to the daemon, `watch` shows it
    as a new plug, and `vesyncctl on` switches it; the password never shows in any output."""
    stateDir = daemon[0]
    info = json.loads(ctl(stateDir, "--json", "info").stdout)
    plugPort = int(info["listeners"]["plugs"].rsplit(":", 1)[1])
    setupPort = _freePort()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESYNCD_")}
    plug = subprocess.Popen([str(BIN / "vesyncd-sim"), "--setup-mode", "--listen", f"127.0.0.1:{setupPort}",
                             "--server-port", str(plugPort), "--seed", "provisioned", "--events"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = subprocess.Popen([str(BIN / "vesyncctl"), "--state-dir", stateDir, "--json", "watch"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        plugLines, watched = _Lines(plug), _Lines(watcher)
        plugLines.waitFor(lambda e: e.get("event") == "setup_mode")
        time.sleep(1.0)  # let the watch start
        result = ctl(stateDir, "provision", "--ssid", "HomeNet", "--password", "s3cret-pass",
                     "--server-ip", "127.0.0.1", "--plug-address", f"127.0.0.1:{setupPort}", "--timeout", "10")
        assert result.returncode == 0, result.stderr
        assert "vesyncctl list" in result.stdout
        assert "s3cret-pass" not in result.stdout + result.stderr
        new = watched.waitFor(lambda e: e.get("event") == "plug_new")
        plugLines.waitFor(lambda e: e.get("event") == "online")
        switched = ctl(stateDir, "--json", "off", new["plug"][:12])
        assert switched.returncode == 0, switched.stderr
        assert json.loads(switched.stdout)["relay"] == "off"
        plugLines.waitFor(lambda e: e.get("event") == "relay" and e.get("relay") == "off")
    finally:
        for proc in (watcher, plug):
            proc.terminate()
            proc.wait(5)
        assert "s3cret-pass" not in "".join(plugLines.seen) + (plug.stderr.read() if plug.stderr else "")


def test_provisionRefusesTooLongBeforeSending(daemon: Any) -> None:
    """A password that cannot fit the one-byte length is refused with exit 1 or 2 and a clear line,
    before any connection is attempted (nothing listens at the plug address)."""
    result = ctl(daemon[0], "provision", "--ssid", "S" * 32, "--password", "p" * 63, "--server-ip", "127.0.0.1",
                 "--plug-address", f"127.0.0.1:{_freePort()}")
    assert result.returncode in (1, 2)
    assert "shorten" in result.stderr and "p" * 63 not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
