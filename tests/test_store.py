"""Tests for vesyncd.storage.store, vesyncd.storage.ledger and vesyncd.storage.tap: in memory, task.Clock, fixed zones."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
import shutil
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from vesyncd.plugs import codec as m
from vesyncd.core.energy import MemoryLedger
from vesyncd.core.hub import Hub
from vesyncd.core.interfaces import IEnergyLedger
from vesyncd.service import StartupError
from vesyncd.storage.store import SCHEMA_VERSION, Store, StoreOpenError
from vesyncd.core.policy import PowerOnPolicy
from vesyncd.storage.persister import Persister
from vesyncd.storage.tap import StoreService, openStore, parseZone
from tests.fakes import result
from tests.pgserver import BackendCase, onPostgres, pgDatabase, postgres  # noqa: F401 - fixtures

def scratch(test: unittest.TestCase) -> Path:
    """A fresh temporary directory outside the working tree, removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="vesyncd-store-test-"))
    test.addCleanup(shutil.rmtree, path, True)
    return path


NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str, zone: Any) -> float:
    """POSIX time of a local wall-clock time in C{zone}."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()




def feed(ledgers: list[Any], plug: str, start: float, end: float, step: float, ws: int) -> int:
    """Record a report every C{step} seconds in each ledger; returns the watt-seconds fed."""
    total, t, i = 0, start, 0
    while t < end:
        e = ws + (i % 7)
        for ledger in ledgers:
            ledger.record(plug, t, e, int(step))
        total += e
        t += step
        i += 1
    return total


class FakeConnection:
    """An IPlugConnection keeping what the hub sends."""

    def __init__(self, peer: str = "192.0.2.7:50000") -> None:
        self.peer = peer
        self.sent: list[dict[str, Any]] = []
        self.closed: list[str] = []

    def send(self, payload: bytes) -> None:
        """Keep the decoded message."""
        self.sent.append(json.loads(payload))

    def disconnect(self, reason: str) -> None:
        """Remember the reason."""
        self.closed.append(reason)


def login(plugId: str, relay: bool) -> m.Login:
    """A firmware 1.89 login."""
    return m.Login(id=plugId, deviceName="vesync_wifi_outlet", firmVersion="1.89", type="wifi-switch",
                   relay=relay)


class LedgerTests(BackendCase, unittest.TestCase):
    """The SQLite ledger gives MemoryLedger's figures, across DST, month and year boundaries."""

    def setUp(self) -> None:
        self.tmp = scratch(self) / "state"
        self.clock = Clock()

    def compare(self, zone: Any, start: str, end: str, periods: list[tuple[str, str]], step: float = 600) -> None:
        """Feed both ledgers the same reports and require identical history documents."""
        self.clock.advance(ts(start, zone))
        store, ledger = self.openAt(self.tmp, zone, self.clock)
        memory = MemoryLedger(zone)
        feed([ledger, memory], "p1", ts(start, zone), ts(end, zone), step, 600)
        for period, value in periods:
            ours, theirs = result(ledger.history("p1", period, value)), result(memory.history("p1", period, value))
            assert ours == theirs, (period, value)
            assert ours["total_wh"] > 0
        return store

    def test_interface(self) -> None:
        """SQLiteLedger provides IEnergyLedger."""
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        verifyObject(IEnergyLedger, ledger)

    def test_hourlyRowsAgreeWithMemory(self) -> None:
        """hourly gives the same (hourStart, wh) rows as MemoryLedger, queued reports included, range half-open."""
        self.clock.advance(ts("2026-03-07T20:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        memory = MemoryLedger(NY)
        feed([ledger, memory], "p1", ts("2026-03-07T20:00", NY), ts("2026-03-08T06:00", NY), 600, 600)
        lo, hi = ts("2026-03-07T22:00", NY), ts("2026-03-08T04:00", NY)
        ours, theirs = result(ledger.hourly("p1", lo, hi)), result(memory.hourly("p1", lo, hi))
        assert [t for t, _ in ours] == [t for t, _ in theirs] and len(ours) == 5  # 03:00 does not exist that night
        assert [wh for _, wh in ours] == pytest.approx([wh for _, wh in theirs])
        assert ours[0][0] == lo and all(t % 3600 == 0 for t, _ in ours)
        assert result(ledger.hourly("nobody", lo, hi)) == []

    def test_hourSumsManyAgreesWithHourSums(self) -> None:
        """hourSumsMany gives each plug what hourSums gives it alone, over spans that cross a month's
        end and the autumn change: from the rollups, priced by the hour (the prices joined in the
        database), or priced by a few runs of one price (each run from the rollups); the ids taken
        a few at a time; a plug without rows gets zeros."""
        from vesyncd.storage import ledger as ledgerModule

        self.patch(ledgerModule, "IDS_PER_QUERY", 2)
        self.clock.advance(ts("2026-10-25T00:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        for n, plug in enumerate(["p1", "p2", "p3"]):
            feed([ledger], plug, ts("2026-10-25T00:00", NY) + 300 * n, ts("2026-11-03T12:00", NY), 1800, 900 * (n + 1))
        self.clock.advance(ts("2026-11-03T12:00", NY) - self.clock.seconds())
        result(store.flush())
        first, turn, last = (int(ts(t, NY) // 3600)
                             for t in ("2026-10-25T00:00", "2026-11-01T00:00", "2026-11-03T12:00"))
        spans = [(first, last), (turn, last), (turn - 30, turn + 30), (last, last), (last - 5, last)]

        def weight(hour: int) -> float:  # a price for each hour of the day: the hours priced by a join
            return 0.1 + (hour % 24) / 97.0

        def dated(hour: int) -> float:  # a flat price that changed on a date: summed from the rollups
            return 0.30 if hour < turn else 0.35

        plugs = ["p1", "p2", "nobody", "p3"]
        for price in (None, weight, dated):
            many = result(ledger.hourSumsMany(plugs, spans, price))
            assert sorted(many) == sorted(plugs)
            for plug in plugs:
                alone = result(ledger.hourSums(plug, spans, price))
                assert [ws for ws, _ in many[plug]] == [ws for ws, _ in alone], (plug, price)
                assert [w for _, w in many[plug]] == pytest.approx([w for _, w in alone], rel=1e-12), (plug, price)
            assert many["nobody"] == [(0, 0.0)] * len(spans)
            assert many["p3"][0][0] > many["p1"][0][0] > 0 and (price is None or many["p1"][0][1] > 0)

    def test_hourlyManyAgreesWithHourly(self) -> None:
        """hourlyMany gives every plug's hourly rows in one read (in chunks of ids), as MemoryLedger does;
        plugs without a row in the range are left out."""
        from vesyncd.storage import ledger as ledgerModule

        self.patch(ledgerModule, "IDS_PER_QUERY", 2)
        self.clock.advance(ts("2026-03-07T20:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        memory = MemoryLedger(NY)
        for n, plug in enumerate(["p1", "p2", "p3"]):
            feed([ledger, memory], plug, ts("2026-03-07T20:00", NY), ts("2026-03-07T23:00", NY), 600, 600 * (n + 1))
        lo, hi = ts("2026-03-07T21:00", NY), ts("2026-03-07T23:00", NY)
        plugs = ["p1", "p2", "nobody", "p3"]
        ours, theirs = result(ledger.hourlyMany(plugs, lo, hi)), result(memory.hourlyMany(plugs, lo, hi))
        assert sorted(ours) == sorted(theirs) == ["p1", "p2", "p3"]
        for plug in ours:
            assert ours[plug] == result(ledger.hourly(plug, lo, hi))
            assert [t for t, _ in ours[plug]] == [t for t, _ in theirs[plug]]
            assert [wh for _, wh in ours[plug]] == pytest.approx([wh for _, wh in theirs[plug]])

    def test_springForwardNewYork(self) -> None:
        """2026-03-08 in New York has 23 hourly buckets, equal to MemoryLedger's."""
        self.compare(NY, "2026-03-07T20:00", "2026-03-09T04:00", [("day", "2026-03-08"), ("month", "2026-03"),
                                                                   ("year", "2026"), ("day", "2026-03-07")])
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        doc = result(ledger.history("p1", "day", "2026-03-08"))
        assert len(doc["buckets"]) == 23
        assert doc["buckets"][2]["label"] == "03:00" and doc["buckets"][2]["start"].endswith("-04:00")

    def test_fallBackNewYork(self) -> None:
        """2026-11-01 in New York has 25 hourly buckets, equal to MemoryLedger's."""
        self.compare(NY, "2026-10-31T18:00", "2026-11-02T03:00", [("day", "2026-11-01"), ("month", "2026-11"),
                                                                   ("month", "2026-10"), ("year", "2026")])
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        doc = result(ledger.history("p1", "day", "2026-11-01"))
        assert len(doc["buckets"]) == 25
        assert [b["label"] for b in doc["buckets"][1:3]] == ["01:00", "01:00"]

    def test_berlinMonthAndYearBoundaries(self) -> None:
        """Reports across New Year and the March change in Berlin land in the same buckets as MemoryLedger's."""
        self.compare(BERLIN, "2025-12-31T20:00", "2026-01-01T04:00", [("day", "2025-12-31"), ("day", "2026-01-01"),
                                                                       ("month", "2025-12"), ("year", "2025"),
                                                                       ("year", "2026")], step=300)

    def test_berlinSpringForward(self) -> None:
        """Berlin's 2026-03-29 has 23 buckets, and the month view agrees with MemoryLedger."""
        self.compare(BERLIN, "2026-03-28T22:00", "2026-03-30T02:00", [("day", "2026-03-29"), ("month", "2026-03")])

    def test_unknownPlugAndBadPeriod(self) -> None:
        """An unknown plug gets every bucket at zero; a malformed period fails with ValueError."""
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        doc = result(ledger.history("nobody", "month", "2026-02"))
        assert len(doc["buckets"]) == 28 and doc["total_wh"] == 0
        assert ledger.summary("nobody", 0).lifetime_wh == 0
        for period, value in (("week", "2026"), ("day", "2026-02-30"), ("month", "26-01"), ("year", "x")):
            self.assertRaises(ValueError, result, ledger.history("p", period, value))

    def test_plugRebootNeverSubtracts(self) -> None:
        """A plug whose counters restart sends small deltas: the lifetime only grows; negatives are refused."""
        self.clock.advance(ts("2026-05-01T12:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        now = self.clock.seconds()
        for e in (3600, 7200, 10, 0, 3600):  # a reboot between 7200 and 10
            ledger.record("p1", now, e, 180)
        ledger.record("p1", now, -5000, 180)
        assert ledger.summary("p1", now).lifetime_wh == pytest.approx(14410 / 3600)
        assert store.stats["reports_refused"] == 1

    def test_daemonRestartKeepsTotals(self) -> None:
        """Closing and reopening the store gives the same lifetime, today and history."""
        self.clock.advance(ts("2026-06-10T08:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        fed = feed([ledger], "p1", ts("2026-06-09T08:00", NY), ts("2026-06-10T08:00", NY), 180, 1000)
        before = ledger.summary("p1", self.clock.seconds())
        history = result(ledger.history("p1", "month", "2026-06"))
        result(store.stop())
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        after = ledger.summary("p1", self.clock.seconds())
        assert after == before and after.lifetime_wh == pytest.approx(fed / 3600)
        assert after.today_wh > 0
        assert result(ledger.history("p1", "month", "2026-06")) == history

    def test_todayTurnsOver(self) -> None:
        """Today's total is zero once the local day has turned, while the lifetime stays."""
        self.clock.advance(ts("2026-06-10T23:30", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        ledger.record("p1", self.clock.seconds(), 3600, 60)
        assert ledger.summary("p1", self.clock.seconds()).today_wh == 1.0
        tomorrow = ts("2026-06-11T00:30", NY)
        assert ledger.summary("p1", tomorrow).today_wh == 0.0
        assert ledger.summary("p1", tomorrow).lifetime_wh == 1.0

    def test_forget(self) -> None:
        """Forgetting a plug drops its totals and its rows."""
        self.clock.advance(ts("2026-06-10T12:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        ledger.record("p1", self.clock.seconds(), 3600, 60)
        result(store.flush())
        ledger.forget("p1")
        result(store.flush())
        assert ledger.summary("p1", self.clock.seconds()).lifetime_wh == 0
        for table in ("reports", "hours", "days", "months"):
            assert store.connection().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0

    def test_forgetDeletesLease(self) -> None:
        """Schema 5 has the nodes and leases tables; forgetting a plug deletes its lease, not others'."""
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        conn = store.connection()
        conn.execute("INSERT INTO nodes (name, address, plug_address, started, heartbeat) VALUES (?, ?, ?, ?, ?)",
                     ("a", "127.0.0.1:1", None, 1.0, 2.0))
        conn.executemany("INSERT INTO leases (plug, node, expires, since) VALUES (?, ?, ?, ?)",
                         [("p1", "a", 10.0, 1.0), ("p2", "a", 10.0, 1.0)])
        ledger.forget("p1")
        result(store.flush())
        assert conn.execute("SELECT plug FROM leases").fetchall() == [("p2",)]
        assert conn.execute("SELECT name FROM nodes").fetchall() == [("a",)]

    def test_manyPlugRowsAndRollupsInOneBatch(self) -> None:
        """Hundreds of plug rows and rollup rows in one batch are inserted, then updated in place."""
        from vesyncd.core.model import PlugState

        self.clock.advance(ts("2026-06-10T12:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        for round in (1, 2):
            for n in range(250):
                store.putPlug(PlugState(id=f"p{n}", alias=f"Plug {n} v{round}", online=True))
                ledger.record(f"p{n}", self.clock.seconds(), n, 60)
            result(store.flush())
        assert sorted(p.alias for p in store.loadPlugs()) == sorted(f"Plug {n} v2" for n in range(250))
        lifetime, todays, _ = store.loadEnergy(self.clock.seconds())
        assert lifetime == {f"p{n}": 2 * n for n in range(250)} and todays == lifetime

    def test_batchesFlushOnSizeAndTime(self) -> None:
        """Reports are written when a batch is full or after the flush interval, never one by one."""
        self.clock.advance(ts("2026-06-10T12:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock, batchRows=10)
        store.start()
        for i in range(9):
            ledger.record("p1", self.clock.seconds(), 10, 3)
        assert store.stats["batches"] == 0
        ledger.record("p1", self.clock.seconds(), 10, 3)
        assert store.stats["batches"] == 1
        ledger.record("p1", self.clock.seconds(), 10, 3)
        self.clock.advance(1.0)
        assert store.stats["batches"] == 2 and store.stats["reports_written"] == 11
        result(store.stop())

    def test_pruneKeepsRollups(self) -> None:
        """Pruning deletes raw reports older than the retention in small batches; totals stay."""
        self.clock.advance(ts("2026-01-01T00:00", NY))
        store, ledger = self.openAt(self.tmp, NY, self.clock, retentionDays=2)
        feed([ledger], "p1", self.clock.seconds(), self.clock.seconds() + 5 * 86400, 60, 100)
        result(store.flush())
        lifetime = ledger.summary("p1", 0).lifetime_wh
        self.clock.advance(5 * 86400)
        deleted = result(store.prune())
        assert deleted == 3 * 1440
        assert store.connection().execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 2 * 1440
        store2, ledger2 = self.openAt(self.tmp, NY, self.clock)
        assert ledger2.summary("p1", 0).lifetime_wh == pytest.approx(lifetime)


class FailingConnection:
    """A connection on a full disk: every statement fails."""

    def execute(self, *a: Any) -> Any:
        """Fail like SQLite on a full disk."""
        raise sqlite3.OperationalError("database or disk is full")

    executemany = execute

    def close(self) -> None:
        """Closing works."""


class FailureTests(BackendCase, unittest.TestCase):
    """Write failures are retried with backoff; energy is never lost; start-up errors are one clear line."""

    def setUp(self) -> None:
        self.tmp = scratch(self) / "state"
        self.clock = Clock()
        self.clock.advance(ts("2026-06-10T12:00", NY))

    def test_writeFailuresRetried(self) -> None:
        """While writes fail, reports wait in memory; once the disk is back every one is written."""
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        store.start()
        good = store.connector
        store.conn, store.connector = FailingConnection(), lambda path: FailingConnection()
        for i in range(50):
            ledger.record("p1", self.clock.seconds(), 100, 3)
            self.clock.advance(1.0)
        assert store.stats["write_failures"] >= 3
        assert store.stats["reports_written"] == 0 and store.pending == 50
        assert ledger.summary("p1", self.clock.seconds()).lifetime_wh == pytest.approx(5000 / 3600)
        store.connector = good
        self.clock.advance(120)
        assert store.pending == 0 and store.stats["reports_written"] == 50
        assert store.connection().execute("SELECT COUNT(*), SUM(ws) FROM reports").fetchone() == (50, 5000)
        result(store.stop())

    def test_overflowFoldsIntoRollups(self) -> None:
        """A full queue drops only raw rows (counted): hourly, daily and lifetime totals keep the energy."""
        store, ledger = self.openAt(self.tmp, NY, self.clock, maxQueued=10)
        store.conn, store.connector = FailingConnection(), lambda path: FailingConnection()
        for i in range(30):
            ledger.record("p1", self.clock.seconds() + i, 100, 3)
        store.flush()
        assert store.stats["raw_dropped"] == 20
        store.connector = lambda path: sqlite3.connect(str(path), isolation_level=None)
        self.clock.advance(120)
        result(store.flush())
        conn = store.connection()
        assert conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 10
        assert conn.execute("SELECT SUM(ws) FROM hours").fetchone()[0] == 3000
        assert conn.execute("SELECT SUM(ws) FROM months").fetchone()[0] == 3000

    def test_databaseIsADirectory(self) -> None:
        """A database path that cannot be opened gives one line naming the directory and the fix."""
        (self.tmp / "vesyncd.sqlite3").mkdir(parents=True)
        config = {"state-dir": self.tmp, "timezone": NY, "retention-days": 400.0}
        with pytest.raises(StartupError) as e:
            openStore(config, self.clock)
        text = str(e.value)
        assert "\n" not in text and str(self.tmp) in text and "--state-dir" in text and "writable" in text

    def test_stateDirUnderAFile(self) -> None:
        """A state directory that cannot be created is reported the same way."""
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.write_text("not a directory")
        with pytest.raises(StoreOpenError, match="--state-dir"):
            Store.open(self.tmp / "sub" / "vesyncd.sqlite3", NY, self.clock)

    def test_badTimezone(self) -> None:
        """--timezone must be an IANA name."""
        with pytest.raises(usage.UsageError, match="Mars/Olympus"):
            parseZone("Mars/Olympus")
        assert parseZone("Europe/Berlin") == BERLIN
        assert parseZone(None) is not None


class MigrationTests(BackendCase, unittest.TestCase):
    """Older databases are upgraded in place with their data."""

    def setUp(self) -> None:
        self.tmp = scratch(self) / "state"
        self.tmp.mkdir(parents=True)
        self.clock = Clock()
        self.clock.advance(ts("2026-03-09T12:00", NY))

    def test_fromVersion1(self) -> None:
        """A hand-made schema 1 database keeps its plugs and reports, and gains rollups."""
        conn = sqlite3.connect(str(self.tmp / "vesyncd.sqlite3"))
        conn.execute("CREATE TABLE plugs (id TEXT PRIMARY KEY, alias TEXT, first_seen REAL, last_seen REAL,"
                     " relay INTEGER)")
        conn.execute("CREATE TABLE reports (plug TEXT NOT NULL, at REAL NOT NULL, ws INTEGER NOT NULL,"
                     " seconds INTEGER NOT NULL)")
        conn.execute("INSERT INTO plugs VALUES ('p1', 'Kettle', 1.0, 2.0, 1)")
        memory = MemoryLedger(NY)
        rows = []
        t = ts("2026-03-07T22:00", NY)
        while t < ts("2026-03-09T02:00", NY):
            rows.append(("p1", t, 900, 180))
            memory.record("p1", t, 900, 180)
            t += 180
        conn.executemany("INSERT INTO reports VALUES (?, ?, ?, ?)", rows)
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        assert store.connection().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (plug,) = store.loadPlugs()
        assert (plug.id, plug.alias, plug.relay, plug.online) == ("p1", "Kettle", True, False)
        assert ledger.summary("p1", 0).lifetime_wh == pytest.approx(len(rows) * 900 / 3600)
        for period, value in (("day", "2026-03-08"), ("month", "2026-03")):
            assert result(ledger.history("p1", period, value)) == result(memory.history("p1", period, value))

    def test_fromVersion2KeepsPlugsAndStoresTrustFields(self) -> None:
        """A schema 2 database gains the trust columns; the energy bound, refused energy, first
        identity and conflict then survive a reopen."""
        from vesyncd.storage.schema import PLUG_COLUMNS_2, _migrate0to1, _migrate1to2

        conn = sqlite3.connect(str(self.tmp / "vesyncd.sqlite3"))
        _migrate0to1(conn, NY)
        _migrate1to2(conn, NY)
        conn.execute("INSERT INTO plugs (id, alias, relay) VALUES ('p1', 'Kettle', 1)")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
        conn.close()
        assert "report_until" not in PLUG_COLUMNS_2
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        (plug,) = store.loadPlugs()
        assert (plug.alias, plug.report_until, plug.energy_refused_wh, plug.first_identity, plug.conflict) == (
            "Kettle", None, 0.0, None, None)
        first = {"account": "1234", "host": "192.0.2.10", "firmware": "1.89"}
        now = {"account": "evil", "host": "192.0.2.66", "firmware": "1.89"}
        plug.report_until, plug.energy_refused_wh, plug.first_identity = 1234.5, 42.0, first
        plug.conflict = {"at": "2026-03-09T17:00:00Z", "fields": ["account", "host"], "first": first, "now": now}
        store.putPlug(plug)
        result(store.stop())
        store2, _ = self.openAt(self.tmp, NY, self.clock)
        (again,) = store2.loadPlugs()
        assert (again.report_until, again.energy_refused_wh, again.first_identity, again.conflict) == (
            1234.5, 42.0, first, plug.conflict)
        assert again.toJSON()["conflict"] == plug.conflict

    def test_newerSchemaRefused(self) -> None:
        """A database from a newer vesyncd is not touched."""
        conn = sqlite3.connect(str(self.tmp / "vesyncd.sqlite3"))
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(StoreOpenError, match="newer"):
            self.openAt(self.tmp, NY, self.clock)

    def test_zoneChangeRebuildsCalendar(self) -> None:
        """Reopening with another --timezone regroups days and months in the new zone."""
        store, ledger = self.openAt(self.tmp, ZoneInfo("UTC"), self.clock)
        memory = MemoryLedger(BERLIN)
        feed([ledger, memory], "p1", ts("2026-01-31T18:00", BERLIN), ts("2026-02-01T06:00", BERLIN), 300, 500)
        result(store.stop())
        store, ledger = self.openAt(self.tmp, BERLIN, self.clock)
        for period, value in (("month", "2026-01"), ("month", "2026-02"), ("year", "2026")):
            assert result(ledger.history("p1", period, value)) == result(memory.history("p1", period, value))


class HubStateTests(BackendCase, unittest.TestCase):
    """Plug state persisted from hub events comes back as context.known; power-on policies apply."""

    def setUp(self) -> None:
        self.tmp = scratch(self) / "state"
        self.clock = Clock()
        self.clock.advance(ts("2026-06-10T12:00", NY))

    def daemon(self) -> tuple[Hub, Store, StoreService]:
        """A hub on task.Clock wired to a fresh store as store_tap.prepare/makeServices would."""
        store, ledger = self.openAt(self.tmp, NY, self.clock)
        hub = Hub(self.clock, ledger=ledger, known=store.loadPlugs())
        svc = StoreService(store)
        svc.hub = hub
        svc.startService()
        Persister(hub, store)
        PowerOnPolicy(hub)
        return hub, store, svc

    def test_stateSurvivesRestart(self) -> None:
        """Alias, power-on policy, relay and device fields come back offline after a restart."""
        hub, store, svc = self.daemon()
        conn = FakeConnection()
        session = hub.login(conn, login("abc123", relay=True))
        hub.rename("abc123", "Kettle")
        hub.setPowerOn("abc123", "last")
        session.received(m.State(relay=False))
        session.received(m.Report(wattSeconds=3600, seconds=180))
        result(svc.stopService())
        hub2, store2, svc2 = self.daemon()
        (plug,) = hub2.plugs()
        assert (plug.alias, plug.power_on, plug.relay, plug.relay_cause, plug.online) == (
            "Kettle", "last", False, "button", False)
        assert plug.firmware == "1.89" and plug.device["deviceName"] == "vesync_wifi_outlet"
        assert plug.address == "192.0.2.7:50000" and plug.first_seen == self.clock.seconds()
        assert hub2.energy("abc123").lifetime_wh == 1.0
        result(svc2.stopService())

    def test_forgottenPlugIsDeleted(self) -> None:
        """A forgotten plug does not come back."""
        hub, store, svc = self.daemon()
        hub.login(FakeConnection(), login("abc123", relay=True))
        hub.forget("abc123")
        result(svc.stopService())
        hub2, store2, svc2 = self.daemon()
        assert hub2.plugs() == []

    def powerOn(self, policy: str, before: bool, reported: bool) -> FakeConnection:
        """Restart with a stored plug (relay C{before}, C{policy}); it logs in reporting C{reported}."""
        hub, store, svc = self.daemon()
        hub.login(FakeConnection(), login("abc123", relay=before))
        hub.setPowerOn("abc123", policy)
        result(svc.stopService())
        hub2, store2, svc2 = self.daemon()
        conn = FakeConnection()
        hub2.login(conn, login("abc123", relay=reported))
        self.clock.advance(0)
        return conn

    def test_powerOnLast(self) -> None:
        """'last' switches back to the relay state from before the outage."""
        conn = self.powerOn("last", before=True, reported=False)
        assert [s["uri"] for s in conn.sent] == ["/loginReply", "/relay"]
        assert conn.sent[-1]["action"] == m.RELAY_ON

    def test_powerOnLastUnchanged(self) -> None:
        """'last' sends nothing when the plug came back as it was."""
        conn = self.powerOn("last", before=True, reported=True)
        assert [s["uri"] for s in conn.sent] == ["/loginReply"]

    def test_powerOnOff(self) -> None:
        """'off' switches a plug that came back on off."""
        conn = self.powerOn("off", before=True, reported=True)
        assert conn.sent[-1] == {**conn.sent[-1], "uri": "/relay", "action": m.RELAY_OFF}

    def test_powerOnFailureIsLogged(self) -> None:
        """A policy switch that times out is logged, never raised."""
        conn = self.powerOn("on", before=False, reported=False)
        assert conn.sent[-1]["uri"] == "/relay"
        self.clock.advance(10)  # no /runtimeInfo: the command times out
        assert len(self.flushLoggedErrors()) == 0


LedgerTestsOnPostgres = onPostgres(LedgerTests)
HubStateTestsOnPostgres = onPostgres(HubStateTests)
