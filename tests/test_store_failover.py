"""Taking a plug over from another node sharing the database: L{Store.loadPlug} and
L{SQLiteLedger.reloadPlug} (two stores on one database stand for two nodes)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from vesyncd.core.model import PlugState
from vesyncd.storage.ledger import SQLiteLedger
from vesyncd.storage.store import Store
from tests.fakes import result
from tests.pgserver import BackendCase, onPostgres, pgDatabase, postgres  # noqa: F401 - fixtures

NY = ZoneInfo("America/New_York")
NOW = 1_780_000_000.0  # 2026-05-28, mid-day in New York


class HeldRunner:
    """A runner whose database calls wait until the test releases them, one at a time, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """Hold the call; the returned Deferred fires when it is released."""
        d: Deferred = Deferred()
        self.calls.append((fn, args, d))
        return d

    def release(self) -> None:
        """Run the oldest held call now (in this thread) and fire its Deferred."""
        fn, args, d = self.calls.pop(0)
        d.callback(fn(*args))


class FailoverTests(BackendCase, unittest.TestCase):
    """A node reads back what another node wrote for a plug, without losing or double-counting its own."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.tmp = Path(tempfile.mkdtemp(prefix="vesyncd-failover-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def openNode(self, **kw: Any) -> tuple[Store, SQLiteLedger]:
        """One node's store (inline runner unless given) and ledger on the shared database."""
        return self.openAt(self.tmp, NY, self.clock, **kw)

    def test_loadPlugReadsAnotherNodesRow(self) -> None:
        """loadPlug fires with None for an unknown plug and with the row another node wrote (offline)."""
        a, _ = self.openNode()
        b, _ = self.openNode()
        assert result(b.loadPlug("p1")) is None
        a.putPlug(PlugState(id="p1", alias="Kettle", online=True, relay=True, first_seen=NOW))
        result(a.flush())
        plug = result(b.loadPlug("p1"))
        assert (plug.id, plug.alias, plug.relay, plug.online) == ("p1", "Kettle", True, False)

    def test_loadPlugWritesWhatIsQueuedFirst(self) -> None:
        """A row still queued on this node is written before the read, so loadPlug returns it."""
        a, _ = self.openNode()
        a.putPlug(PlugState(id="p2", alias="Lamp", online=True))
        assert result(a.loadPlug("p2")).alias == "Lamp"
        assert a.pending == 0

    def test_reloadPlugAddsTheOtherNodesEnergy(self) -> None:
        """After reloadPlug a node's totals are the database's plus what it has queued, once each."""
        a, ledgerA = self.openNode()
        b, ledgerB = self.openNode(batchRows=1000)
        ledgerA.record("p1", NOW - 60, 3600, 60)
        result(a.flush())
        ledgerB.record("p1", NOW, 1800, 60)  # queued on B, not yet written
        assert b.pending == 1
        result(ledgerB.reloadPlug("p1"))
        summary = ledgerB.summary("p1", NOW)
        assert (summary.lifetime_wh, summary.today_wh) == (1.5, 1.5)
        result(b.flush())
        result(ledgerB.reloadPlug("p1"))
        assert ledgerB.summary("p1", NOW).lifetime_wh == 1.5
        (total,) = b.connection().execute("SELECT SUM(ws) FROM months WHERE plug = ?", ("p1",)).fetchone()
        assert int(total) == 5400

    def test_reloadPlugCountsABatchWrittenAfterTheRead(self) -> None:
        """A batch that starts writing after the read was queued is counted from memory, not twice."""
        a, ledgerA = self.openNode()
        ledgerA.record("p1", NOW - 60, 3600, 60)
        result(a.flush())
        runner = HeldRunner()
        b, ledgerB = self.openNode(run=runner, batchRows=1000)
        ledgerB.record("p1", NOW, 7200, 60)
        d = ledgerB.reloadPlug("p1")
        runner.release()  # the flush of the 7200 ws: written before the read
        ledgerB.record("p1", NOW + 1, 3600, 1)
        b.flush()  # handed to the thread after the read: in flight when the read reports back
        runner.release()  # the read
        result(d)
        assert ledgerB.summary("p1", NOW + 1).lifetime_wh == 4.0
        runner.release()
        assert int(b.connection().execute("SELECT SUM(ws) FROM hours").fetchone()[0]) == 14400

    def test_reloadPlugOfAnUnknownPlugClearsNothingElse(self) -> None:
        """Reloading a plug no node stored leaves it at zero and other plugs untouched."""
        a, ledgerA = self.openNode()
        ledgerA.record("p1", NOW, 3600, 60)
        result(ledgerA.reloadPlug("p9"))
        assert ledgerA.summary("p9", NOW).lifetime_wh == 0
        assert ledgerA.summary("p1", NOW).lifetime_wh == 1.0


FailoverTestsOnPostgres = onPostgres(FailoverTests)
