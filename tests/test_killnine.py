"""kill -9 of a real vesyncd process while simulated plugs report: the database survives, little is lost.

The daemon runs under twistd in a subprocess started through a small wrapper; the simulated plugs run in
this process at 60x speed, on loopback only, and count every /report they send.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import shutil
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

from vesyncd.core.model import PlugState
from vesyncd.paths import DATABASE
from vesyncd.sim.plug import plugId
from vesyncd.sim.runner import Simulator
from vesyncd.storage.store import Store
from vesyncd.storage.runner import inlineRunner

def scratch(test: unittest.TestCase) -> Path:
    """A fresh temporary directory outside the working tree, removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="vesyncd-store-test-"))
    test.addCleanup(shutil.rmtree, path, True)
    return path


WRAPPER = """
import sys
from twisted.scripts.twistd import run
sys.argv = ["twistd", "-n", "--pidfile=", "vesyncd"] + sys.argv[1:]
run()
"""

PLUGS = 20
RUN_SECONDS = 6.0


class Daemon(ProcessProtocol):
    """A vesyncd subprocess whose output is watched for patterns."""

    def __init__(self) -> None:
        self.output = ""
        self.ended: Deferred = Deferred()
        self._waiting: list[tuple[re.Pattern[str], Deferred]] = []

    def outReceived(self, data: bytes) -> None:
        """Collect output and fire waiters whose pattern appeared."""
        self.output += data.decode("utf-8", "replace")
        for pattern, d in list(self._waiting):
            match = pattern.search(self.output)
            if match:
                self._waiting.remove((pattern, d))
                d.callback(match)

    errReceived = outReceived

    def waitFor(self, pattern: str, timeout: float = 20.0) -> Deferred:
        """Fire with the match once C{pattern} shows in the output (fails after C{timeout} s)."""
        d: Deferred = Deferred()
        self._waiting.append((re.compile(pattern), d))
        self.outReceived(b"")
        d.addTimeout(timeout, reactor, onTimeoutCancel=lambda r, t: self._fail(r))
        return d

    def _fail(self, result: Any) -> Any:
        raise AssertionError(f"daemon output did not show the expected line:\n{self.output[-3000:]}")

    def processEnded(self, reason: Any) -> None:
        """Note the end."""
        self.ended.callback(reason.value)


def spawn(stateDir: Path, script: Path) -> tuple[Daemon, Any]:
    """Start vesyncd (store feature on) on a free loopback port."""
    daemon = Daemon()
    args = [sys.executable, str(script), "--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", str(stateDir),
            "--timezone", "UTC", "--no-dns", "--no-http"]
    process = reactor.spawnProcess(daemon, sys.executable, args, env=dict(os.environ), path=str(stateDir))
    return daemon, process


def totals(path: Path) -> dict[str, Any]:
    """Integrity, raw rows, lifetime watt-seconds and the seeded alias, read directly from the database."""
    conn = sqlite3.connect(str(path))
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "rows": conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0],
            "raw_ws": conn.execute("SELECT COALESCE(SUM(ws), 0) FROM reports").fetchone()[0],
            "lifetime_ws": conn.execute("SELECT COALESCE(SUM(ws), 0) FROM months").fetchone()[0],
            "plugs": conn.execute("SELECT COUNT(*) FROM plugs").fetchone()[0],
            "alias": conn.execute("SELECT alias FROM plugs WHERE id = ?", (plugId("sim", 0),)).fetchone()[0],
        }
    finally:
        conn.close()


class KillNineTests(unittest.TestCase):
    """A daemon killed with SIGKILL loses at most its unflushed batch and reopens cleanly."""

    timeout = 90

    @inlineCallbacks
    def test_killNineWhileReporting(self) -> Any:
        """Reports stored >= reports sent minus the last ~2 s; integrity ok; alias and lifetime survive a restart."""
        stateDir = scratch(self)
        script = stateDir / "run_vesyncd.py"
        script.write_text(WRAPPER)
        seed = Store.open(stateDir / DATABASE, ZoneInfo("UTC"), Clock(), run=inlineRunner)
        seed.putPlug(PlugState(id=plugId("sim", 0), alias="Kettle"))
        yield seed.stop()

        daemon, process = spawn(stateDir, script)
        match = yield daemon.waitFor(r"plug server listening on 127\.0\.0\.1:(\d+)")
        yield daemon.waitFor(r"store: .*1 with aliases")
        sim = Simulator(reactor, "127.0.0.1", int(match.group(1)), PLUGS, speed=60.0)
        sent: list[float] = []
        for plug in sim.plugs:
            def send(obj: dict[str, Any], _orig: Any = plug.send, _plug: Any = plug) -> None:
                if obj.get("uri") == "/report" and _plug.protocol is not None:
                    sent.append(reactor.seconds())
                _orig(obj)
            plug.send = send  # type: ignore[method-assign]
        sim.start()
        try:
            yield deferLater(reactor, RUN_SECONDS, lambda: None)
            killedAt = reactor.seconds()
            os.kill(process.pid, signal.SIGKILL)
            yield daemon.ended
        finally:
            sim.stop()
        yield deferLater(reactor, 0.2, lambda: None)  # let the aborted connections close

        after = totals(stateDir / DATABASE)
        recent = sum(1 for t in sent if t >= killedAt - 2.0)
        print(f"kill -9: sent {len(sent)} reports, stored {after['rows']}, sent in the last 2 s {recent}")
        assert after["integrity"] == "ok"
        assert len(sent) >= 20, daemon.output[-2000:]
        assert len(sent) - recent <= after["rows"] <= len(sent)
        # The rollups are written once a minute (and at a clean stop); the run is shorter, so what the
        # kill left is raw rows past the rollups' watermark, which the next start adds exactly once.
        assert after["lifetime_ws"] < after["raw_ws"]
        assert after["alias"] == "Kettle" and after["plugs"] == PLUGS

        daemon2, process2 = spawn(stateDir, script)
        yield daemon2.waitFor(rf"store: .*{PLUGS} plugs known \(1 with aliases\)")
        yield daemon2.waitFor(r"plug server listening on")
        process2.signalProcess("TERM")
        yield daemon2.ended
        again = totals(stateDir / DATABASE)
        assert again["integrity"] == "ok"
        assert again["alias"] == "Kettle"
        assert again["lifetime_ws"] == after["raw_ws"] and again["rows"] == after["rows"]
        replayed = re.search(r"store: added (\d+) reports written before the last stop", daemon2.output)
        assert replayed is not None and 0 < int(replayed.group(1)) <= after["rows"], daemon2.output[-3000:]
        assert "Traceback" not in daemon2.output, daemon2.output[-3000:]
