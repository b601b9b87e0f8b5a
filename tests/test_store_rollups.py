"""Tests for the rollups written behind the raw rows (vesyncd.storage.rollups): on SQLite every minute,
before a read and at stop, and at start for what a crash left behind, never twice; on PostgreSQL with
every batch."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial import unittest

from vesyncd.storage.ledger import SQLiteLedger
from vesyncd.storage.rollups import WATERMARK
from vesyncd.storage.runner import inlineRunner
from vesyncd.storage.store import ROLLUP_INTERVAL, SCHEMA_VERSION, Store
from tests.fakes import result
from tests.pgserver import BackendCase, onPostgres, pgDatabase, postgres  # noqa: F401 - fixtures

UTC = ZoneInfo("UTC")
START = 1_780_000_000.0


def sums(conn: Any) -> dict[str, int]:
    """Watt-seconds in the raw rows and in each rollup."""
    return {table: int(conn.execute(f"SELECT COALESCE(SUM(ws), 0) FROM {table}").fetchone()[0])
            for table in ("reports", "hours", "days", "months")}


def watermark(conn: Any) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (WATERMARK,)).fetchone()
    return int(row[0])


def lastRow(conn: Any) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM reports").fetchone()[0])


class DeferredRollupTests(unittest.TestCase):
    """SQLite: raw rows every second, rollups every minute, before reads, at stop, and after a crash."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vesyncd-rollups-test-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = self.dir / "vesyncd.sqlite3"
        self.clock = Clock()
        self.clock.advance(START)

    def open(self) -> tuple[Store, SQLiteLedger]:
        store = Store.open(self.path, UTC, self.clock, run=inlineRunner)
        self.addCleanup(store.detach)
        return store, SQLiteLedger(store, self.clock.seconds())

    def crash(self, store: Store) -> None:
        """What a kill -9 leaves: the committed file, nothing of memory (no stop, no last flush)."""
        store.detach()
        if store._loop is not None and store._loop.running:
            store._loop.stop()
        if store._pruneDelay is not None and store._pruneDelay.active():
            store._pruneDelay.cancel()

    def report(self, ledger: SQLiteLedger, plug: str, n: int, ws: int = 100) -> int:
        for _ in range(n):
            ledger.record(plug, self.clock.seconds(), ws, 3)
        return n * ws

    def test_rawRowsEverySecondRollupsEveryMinute(self) -> None:
        """The tick writes raw rows at once and the rollups only once the rollup interval has passed."""
        store, ledger = self.open()
        store.start()
        fed = self.report(ledger, "p1", 5)
        self.clock.advance(1.0)
        assert sums(store.connection()) == {"reports": fed, "hours": 0, "days": 0, "months": 0}
        assert watermark(store.connection()) == 0
        fed += self.report(ledger, "p1", 3)
        self.clock.advance(ROLLUP_INTERVAL)
        conn = store.connection()
        assert sums(conn) == {"reports": fed, "hours": fed, "days": fed, "months": fed}
        assert watermark(conn) == lastRow(conn) == 8
        assert ledger.summary("p1", self.clock.seconds()).lifetime_wh == fed / 3600
        result(store.stop())

    def test_aReadSeesReportsNotYetRolledUp(self) -> None:
        """History, hourly rows and sums include reports not yet added to the rollups."""
        store, ledger = self.open()
        store.start()
        fed = self.report(ledger, "p1", 4, ws=900)
        self.clock.advance(1.0)
        assert sums(store.connection())["hours"] == 0
        day = result(ledger.history("p1", "day", "2026-05-28"))
        assert day["total_wh"] == fed / 3600
        hour = int(START // 3600)
        assert result(ledger.hourSums("p1", [(hour, hour + 1)])) == [(fed, 0.0)]
        fed += self.report(ledger, "p1", 2, ws=900)
        self.clock.advance(1.0)
        rows = result(ledger.hourly("p1", START - 3600, START + 3600))
        assert rows == [(float(hour * 3600), fed / 3600)]
        assert watermark(store.connection()) == lastRow(store.connection())
        result(store.stop())

    def test_stopWritesTheRollups(self) -> None:
        """A clean stop leaves nothing for the next start to replay."""
        store, ledger = self.open()
        store.start()
        fed = self.report(ledger, "p1", 7)
        self.clock.advance(1.0)
        result(store.stop())
        conn = sqlite3.connect(str(self.path))
        try:
            assert sums(conn) == {"reports": fed, "hours": fed, "days": fed, "months": fed}
            assert watermark(conn) == lastRow(conn)
        finally:
            conn.close()

    def test_crashBeforeAnyRollup(self) -> None:
        """Raw rows committed before a crash are added to the rollups at the next start, once."""
        store, ledger = self.open()
        store.start()
        fed = self.report(ledger, "p1", 6) + self.report(ledger, "p2", 2, ws=50)
        self.clock.advance(1.0)
        self.crash(store)
        for _ in range(2):  # a second start adds nothing more
            again, ledger2 = self.open()
            assert sums(again.connection()) == {"reports": fed, "hours": fed, "days": fed, "months": fed}
            assert ledger2.summary("p1", self.clock.seconds()).lifetime_wh == 600 / 3600
            assert ledger2.summary("p2", self.clock.seconds()).today_wh == 100 / 3600
            self.crash(again)

    def test_crashAfterARollup(self) -> None:
        """Rows rolled up before a crash are not replayed; only those after the watermark are."""
        store, ledger = self.open()
        store.start()
        fed = self.report(ledger, "p1", 4)
        self.clock.advance(ROLLUP_INTERVAL)
        assert watermark(store.connection()) == 4
        fed += self.report(ledger, "p1", 3)
        self.clock.advance(1.0)
        assert sums(store.connection())["hours"] == 400
        self.crash(store)
        again, _ = self.open()
        assert sums(again.connection()) == {"reports": fed, "hours": fed, "days": fed, "months": fed}
        assert watermark(again.connection()) == 7

    def test_forgettingAPlugDropsItsKeptRollups(self) -> None:
        """A forgotten plug's raw rows not yet rolled up go with it, and rows numbered after the deletion (SQLite
        reuses the numbers of deleted last rows) are still replayed after a crash."""
        store, ledger = self.open()
        store.start()
        self.report(ledger, "keep", 3)
        self.report(ledger, "gone", 3)
        self.clock.advance(ROLLUP_INTERVAL)
        assert watermark(store.connection()) == 6
        self.report(ledger, "gone", 2)
        self.clock.advance(1.0)
        ledger.forget("gone")
        self.clock.advance(1.0)
        conn = store.connection()
        assert watermark(conn) == lastRow(conn) == 3
        self.report(ledger, "keep", 2)  # rows 4 and 5: numbers "gone" used before
        self.clock.advance(1.0)
        self.crash(store)
        again, ledger2 = self.open()
        conn = again.connection()
        assert sums(conn) == {"reports": 500, "hours": 500, "days": 500, "months": 500}
        assert conn.execute("SELECT COUNT(*) FROM hours WHERE plug = 'gone'").fetchone()[0] == 0
        assert ledger2.summary("keep", self.clock.seconds()).lifetime_wh == 500 / 3600

    def test_pruningEveryRowLowersTheWatermark(self) -> None:
        """When pruning removes the last raw rows too, rows written afterwards are still replayed."""
        store, ledger = self.open()
        store.retentionDays = 1
        self.report(ledger, "p1", 3)
        result(store.flush())
        assert watermark(store.connection()) == 3
        self.clock.advance(2 * 86400)
        assert result(store.prune()) == 3
        assert watermark(store.connection()) == 0
        fed = self.report(ledger, "p1", 2)
        result(store.flush(rollups=False))
        assert lastRow(store.connection()) == 2  # numbers the pruned rows had
        self.crash(store)
        again, _ = self.open()
        assert sums(again.connection()) == {"reports": fed, "hours": 300 + fed, "days": 300 + fed,
                                            "months": 300 + fed}

    def test_schema5DatabaseGetsAWatermarkAndNoReplay(self) -> None:
        """Opening a schema 5 database (rollups written with every batch) counts nothing twice."""
        store, ledger = self.open()
        fed = self.report(ledger, "p1", 5)
        result(store.stop())
        conn = sqlite3.connect(str(self.path), isolation_level=None)
        conn.execute("DELETE FROM meta WHERE key = ?", (WATERMARK,))
        conn.execute("PRAGMA user_version = 5")
        conn.close()
        again, _ = self.open()
        conn = again.connection()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        assert sums(conn) == {"reports": fed, "hours": fed, "days": fed, "months": fed}
        assert watermark(conn) == lastRow(conn) == 5

    def test_aFailedBatchKeepsNothingBack(self) -> None:
        """A batch whose transaction fails leaves nothing behind; its retry counts it once."""
        store, ledger = self.open()
        store.start()
        fed = self.report(ledger, "p1", 3)
        real = store.connector
        broken = [True]

        class Refusing:
            """The real connection, failing every multi-row insert while C{broken}."""

            def __init__(self, conn: Any) -> None:
                self.conn = conn

            def execute(self, sql: str, *a: Any) -> Any:
                return self.conn.execute(sql, *a)

            def executemany(self, sql: str, *a: Any) -> Any:
                if broken[0]:
                    raise sqlite3.OperationalError("disk I/O error")
                return self.conn.executemany(sql, *a)

            def close(self) -> None:
                self.conn.close()

        store.detach()
        store.connector = lambda path: Refusing(real(path))
        self.clock.advance(1.0)
        assert store.stats["write_failures"] == 1
        conn = sqlite3.connect(str(self.path))
        try:
            assert sums(conn) == {"reports": 0, "hours": 0, "days": 0, "months": 0}
        finally:
            conn.close()
        broken[0] = False
        store.connector = real
        self.clock.advance(2.0)
        result(store.stop())
        conn = sqlite3.connect(str(self.path))
        try:
            assert sums(conn) == {"reports": fed, "hours": fed, "days": fed, "months": fed}
        finally:
            conn.close()


class _PostgresRollups(BackendCase, unittest.TestCase):
    """On PostgreSQL every batch writes its own rollups (several nodes write the same tables)."""

    def test_everyBatchWritesItsRollups(self) -> None:
        clock = Clock()
        clock.advance(START)
        tmp = Path(tempfile.mkdtemp(prefix="vesyncd-rollups-pg-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        store, ledger = self.openAt(tmp, UTC, clock)
        store.start()
        ledger.record("p1", clock.seconds(), 700, 3)
        clock.advance(1.0)
        assert sums(store.connection()) == {"reports": 700, "hours": 700, "days": 700, "months": 700}
        assert store.connection().execute("SELECT COUNT(*) FROM meta WHERE key = ?", (WATERMARK,)).fetchone()[0] == 0
        result(store.stop())


PostgresRollupTests = onPostgres(_PostgresRollups)
del _PostgresRollups


class RollUpRawBucketTests(unittest.TestCase):
    """L{rollUpRaw} puts every raw row in the right hour, local day and month, as a Python reference
    computed row by row does, in zones with half-hour offsets and daylight-saving changes."""

    def check(self, zoneName: str) -> None:
        import random

        from vesyncd.storage.rollups import rollUpRaw
        from vesyncd.storage.schema import dayKey

        zone = ZoneInfo(zoneName)
        directory = Path(tempfile.mkdtemp(prefix="vesyncd-rollups-buckets-"))
        self.addCleanup(shutil.rmtree, directory, True)
        store = Store.open(directory / "vesyncd.sqlite3", zone, Clock(), run=inlineRunner)
        self.addCleanup(store.detach)
        conn = store.connection()
        rng = random.Random(zoneName)
        # 20 days around the end of March (a month's end, and a DST change where there is one),
        # in two batches so the second adds to existing totals.
        begin = 1_774_224_000.0  # 2026-03-23 00:00 UTC
        rows = [(f"plug-{rng.randrange(5)}", begin + rng.uniform(0, 20 * 86400), rng.randrange(0, 5000), 3)
                for _ in range(4000)]
        expected: dict[str, dict[tuple[str, Any], int]] = {"hours": {}, "days": {}, "months": {}}
        for part in (rows[:2500], rows[2500:]):
            with conn:
                conn.executemany("INSERT INTO reports (plug, at, ws, seconds) VALUES (?, ?, ?, ?)", part)
                self.assertEqual(rollUpRaw(conn, lambda hour: dayKey(hour, zone)), len(part))
            for plug, at, ws, _seconds in part:
                hour = int(at // 3600)
                day = dayKey(hour, zone)
                for table, key in (("hours", hour), ("days", day), ("months", day[:7])):
                    expected[table][(plug, key)] = expected[table].get((plug, key), 0) + ws
        for table, column in (("hours", "hour"), ("days", "day"), ("months", "month")):
            got = {(plug, key): ws for plug, key, ws in conn.execute(f"SELECT plug, {column}, ws FROM {table}")}
            self.assertEqual(got, expected[table], table)
        self.assertEqual(watermark(conn), lastRow(conn))
        with conn:
            self.assertEqual(rollUpRaw(conn, lambda hour: dayKey(hour, zone)), 0)  # nothing new: nothing added

    def test_half_hour_zone(self) -> None:
        self.check("Asia/Kolkata")

    def test_daylight_saving_zone(self) -> None:
        self.check("Europe/London")

    def test_utc(self) -> None:
        self.check("UTC")
