"""kill -9 of a real vesyncd on PostgreSQL while simulated plugs report: what it wrote stays written,
raw rows and rollups agree, and a restarted daemon carries on with the same totals."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from vesyncd.sim.runner import Simulator
from tests.pgserver import PASSWORD, pgDatabase, postgres  # noqa: F401 - fixtures
from tests.test_killnine import WRAPPER, Daemon, scratch

PLUGS = 20
RUN_SECONDS = 6.0


def spawn(stateDir: Path, script: Path, url: str) -> tuple[Daemon, Any]:
    """Start vesyncd on PostgreSQL with a free loopback plug port."""
    daemon = Daemon()
    args = [sys.executable, str(script), "--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", str(stateDir),
            "--timezone", "UTC", "--no-dns", "--no-http", "--database", url]
    process = reactor.spawnProcess(daemon, sys.executable, args, env=dict(os.environ), path=str(stateDir))
    return daemon, process


def totals(url: str) -> dict[str, Any]:
    """Raw rows, raw and lifetime watt-seconds and plugs, read directly from the database."""
    with psycopg.connect(url) as conn:
        return {
            "rows": conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0],
            "raw_ws": int(conn.execute("SELECT COALESCE(SUM(ws), 0) FROM reports").fetchone()[0]),
            "lifetime_ws": int(conn.execute("SELECT COALESCE(SUM(ws), 0) FROM months").fetchone()[0]),
            "plugs": conn.execute("SELECT COUNT(*) FROM plugs").fetchone()[0],
        }


@pytest.mark.usefixtures("pgDatabase")
class KillNineOnPostgresTests(unittest.TestCase):
    """A daemon on PostgreSQL killed with SIGKILL loses at most its unwritten batch."""

    timeout = 90

    @inlineCallbacks
    def test_killNineWhileReporting(self) -> Any:
        """Stored >= sent minus the last ~2 s; rollups = raw rows; a restart sees the same totals; the
        daemon's output never shows the password."""
        stateDir = scratch(self)
        script = stateDir / "run_vesyncd.py"
        script.write_text(WRAPPER)
        daemon, process = spawn(stateDir, script, self.databaseUrl)
        match = yield daemon.waitFor(r"plug server listening on 127\.0\.0\.1:(\d+)")
        yield daemon.waitFor(r"store: postgresql://vesyncd:\*\*\*@127\.0\.0\.1:\d+/\w+: 0 plugs known")
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
        yield deferLater(reactor, 0.2, lambda: None)

        after = totals(self.databaseUrl)
        recent = sum(1 for t in sent if t >= killedAt - 2.0)
        print(f"kill -9 on PostgreSQL: sent {len(sent)} reports, stored {after['rows']}, last 2 s {recent}")
        assert len(sent) >= 20, daemon.output[-2000:]
        assert len(sent) - recent <= after["rows"] <= len(sent)
        assert after["raw_ws"] == after["lifetime_ws"] and after["plugs"] == PLUGS

        daemon2, process2 = spawn(stateDir, script, self.databaseUrl)
        yield daemon2.waitFor(rf"store: .*: {PLUGS} plugs known")
        yield daemon2.waitFor(r"plug server listening on")
        process2.signalProcess("TERM")
        yield daemon2.ended
        again = totals(self.databaseUrl)
        assert again["lifetime_ws"] == after["lifetime_ws"] and again["rows"] == after["rows"]
        output = daemon.output + daemon2.output
        assert "Traceback" not in output, output[-3000:]
        assert PASSWORD not in output and PASSWORD.replace("%", "%25") not in output
