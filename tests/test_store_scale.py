"""The store at scale: one batch in flight at a time without per-report Deferreds, and start-up reads
whose cost does not grow with the days of history."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from vesyncd.storage.ledger import SQLiteLedger
from vesyncd.storage.store import Store, localDay
from vesyncd.storage.runner import inlineRunner

NY = ZoneInfo("America/New_York")
NOW = 1_780_000_000.0  # 2026-05-28, mid-day in New York


def scratch(test: unittest.TestCase) -> Path:
    """A fresh temporary directory outside the working tree, removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="vesyncd-store-scale-"))
    test.addCleanup(shutil.rmtree, path, True)
    return path


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


class CountingStore(Store):
    """A store that counts calls of L{Store.flush}."""

    flushes = 0

    def flush(self, rollups: bool = True) -> Deferred:
        """Count, then flush as the store does."""
        self.flushes += 1
        return super().flush(rollups)


class FlushInFlightTests(unittest.TestCase):
    """While a batch is written, new reports queue without new flushes; its completion writes the rest."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.runner = HeldRunner()
        self.store = CountingStore.open(scratch(self) / "vesyncd.sqlite3", NY, self.clock, run=self.runner,
                                        batchRows=500)

    def add(self, n: int) -> None:
        """Queue C{n} reports of 3 s and 10 watt-seconds each."""
        for i in range(n):
            self.store.addReport(f"p{i % 7}", self.clock.seconds(), 10, 3)

    def test_noFlushPerReportWhileInFlight(self) -> None:
        """Reports arriving while a batch is written cause no flush; the batch's end writes them."""
        self.add(500)
        assert (self.store.flushes, len(self.runner.calls)) == (1, 1)
        self.add(1200)
        assert (self.store.flushes, len(self.runner.calls)) == (1, 1)
        self.runner.release()
        assert self.store.stats["reports_written"] == 500
        assert (self.store.flushes, len(self.runner.calls)) == (2, 1)  # 1,200 waiting: written at once
        self.add(100)
        assert self.store.flushes == 2
        self.runner.release()
        assert self.store.stats["reports_written"] == 1700
        assert (self.store.flushes, len(self.runner.calls), self.store.pending) == (2, 0, 100)
        d = self.store.flush()
        self.runner.release()
        assert self.successResultOf(d) is None
        assert self.store.stats["reports_written"] == 1800
        rows = self.store.connection().execute("SELECT COUNT(*), SUM(ws) FROM reports").fetchone()
        assert rows == (1800, 18000)

    def test_flushAfterAFailedBatchWaitsForTheRetry(self) -> None:
        """A batch that fails is requeued; reports meanwhile start no write until the retry is due."""
        self.add(500)
        fn, args, d = self.runner.calls.pop(0)
        d.errback(sqlite3.OperationalError("database or disk is full"))
        assert self.store.stats["write_failures"] == 1 and self.store.pending == 500
        self.add(600)
        assert self.runner.calls == []
        self.clock.advance(1.0)
        self.store.flush()
        self.runner.release()
        assert (self.store.stats["reports_written"], self.store.pending, self.runner.calls) == (1100, 0, [])


class StartupReadTests(unittest.TestCase):
    """Loading the energy totals reads today's row per plug on the key, not the whole daily table."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.path = scratch(self) / "vesyncd.sqlite3"
        store = Store.open(self.path, NY, self.clock, run=inlineRunner)
        ledger = SQLiteLedger(store, NOW)
        for plug in ("a", "b", "c", "d"):
            for day in range(40):
                ledger.record(plug, NOW - day * 86400 - (3600 if plug == "d" else 0), 100 + day, 3)
        ledger.record("c", NOW - 45 * 86400, 7, 3)
        self.store = store
        result = store.flush()
        result.addErrback(lambda f: f.raiseException())

    def naive(self, now: float) -> tuple[dict[str, int], dict[str, int]]:
        """Lifetime and today's watt-seconds read the straightforward way."""
        conn = self.store.connection()
        lifetime = dict(conn.execute("SELECT plug, SUM(ws) FROM months GROUP BY plug"))
        todays = dict(conn.execute("SELECT plug, ws FROM days WHERE day = ?", (localDay(now, NY).isoformat(),)))
        return lifetime, todays

    def steps(self, fn: Callable[[], Any]) -> int:
        """SQLite virtual-machine steps (in hundreds) that C{fn} runs on the store's connection."""
        count = [0]

        def tick() -> int:
            count[0] += 1
            return 0

        conn = self.store.connection()
        conn.set_progress_handler(tick, 100)
        try:
            fn()
        finally:
            conn.set_progress_handler(None, 100)
        return count[0]

    def test_sameFiguresAsBefore(self) -> None:
        """Lifetime and today's totals are those of the rollups, today, yesterday and on a day without rows."""
        for now in (NOW, NOW - 86400, NOW + 86400, NOW - 44 * 86400):
            lifetime, todays, today = self.store.loadEnergy(now)
            assert today == localDay(now, NY)
            assert (lifetime, todays) == self.naive(now), now
        lifetime, todays, _ = self.store.loadEnergy(NOW)
        assert set(lifetime) == {"a", "b", "c", "d"} and todays["a"] == 100 and todays["c"] == 100

    def test_costDoesNotGrowWithDaysOfHistory(self) -> None:
        """Adding ten years of daily rows for every plug leaves the work of loading the totals unchanged."""
        before = self.steps(lambda: self.store.loadEnergy(NOW))
        start = date(2010, 1, 1)
        rows = [(plug, (start + timedelta(days=i)).isoformat(), 5, 3) for plug in "abcd" for i in range(3650)]
        conn = self.store.connection()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO days (plug, day, ws, seconds) VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        naiveSteps = self.steps(lambda: self.naive(NOW))
        after = self.steps(lambda: self.store.loadEnergy(NOW))
        assert naiveSteps > 10 * (before + 1)  # the test can tell a scan of the daily table
        assert after <= before + 2, (before, after)
