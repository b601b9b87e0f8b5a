"""Writes of the store's side writers survive a database that is away: the switch history and the
automation items go back in their queues and are written once the database answers again."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock

from vesyncd.storage import automationstore, sidetables
from vesyncd.storage.automationstore import SCHEMA, SqliteAutomationStore
from vesyncd.storage.schema import statements


class FlakyRunner:
    """Runs a database call at once, or fails it like a database that is away while C{down}."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        self.calls += 1
        if self.down:
            return fail(sqlite3.OperationalError("database is away"))
        return maybeDeferred(fn, *args)


class FakeStore:
    """What L{sidetables.SwitchLog} uses of the store: C{run}, C{connection}, C{clock}, C{closed}."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock, run: FlakyRunner) -> None:
        self.conn = conn
        self.clock = clock
        self.run = run
        self.closed = False
        self.pruneHooks: list[Any] = []

    def connection(self) -> sqlite3.Connection:
        return self.conn


def switchesDatabase() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE switches (plug TEXT NOT NULL, at REAL NOT NULL, relay INTEGER NOT NULL, cause TEXT)")
    return conn


def test_switches_made_while_the_database_is_away_are_written_when_it_is_back() -> None:
    """Rows of a failed write are kept (oldest first) and written by the retry after the backoff,
    without another switch to prompt it; the backoff doubles while the database stays away."""
    clock, run, conn = Clock(), FlakyRunner(), switchesDatabase()
    log = sidetables.SwitchLog(FakeStore(conn, clock, run))  # type: ignore[arg-type]
    run.down = True
    log.add("p1", 10.0, True, "command")
    log.add("p2", 11.0, False, "timer")  # a retry is waiting: queued behind the first
    assert conn.execute("SELECT COUNT(*) FROM switches").fetchone() == (0,)
    clock.advance(sidetables.RETRY_MIN)  # the retry fails again: the wait doubles
    assert conn.execute("SELECT COUNT(*) FROM switches").fetchone() == (0,)
    run.down = False
    clock.advance(sidetables.RETRY_MIN)
    assert conn.execute("SELECT COUNT(*) FROM switches").fetchone() == (0,), "retried before its backoff"
    clock.advance(sidetables.RETRY_MIN)
    rows = conn.execute("SELECT plug, at, relay, cause FROM switches ORDER BY at").fetchall()
    assert rows == [("p1", 10.0, 1, "command"), ("p2", 11.0, 0, "timer")]
    log.add("p1", 12.0, False, "command")  # back to normal: written at once
    assert conn.execute("SELECT COUNT(*) FROM switches").fetchone() == (3,)


def test_shutdown_tries_once_more_during_a_backoff() -> None:
    """C{flush(now=True)} (the store service's stop) writes at once even while a retry waits."""
    clock, run, conn = Clock(), FlakyRunner(), switchesDatabase()
    log = sidetables.SwitchLog(FakeStore(conn, clock, run))  # type: ignore[arg-type]
    run.down = True
    log.add("p1", 10.0, True, "command")
    run.down = False
    log.flush()
    assert conn.execute("SELECT COUNT(*) FROM switches").fetchone() == (0,)
    log.flush(now=True)
    assert conn.execute("SELECT COUNT(*) FROM switches").fetchone() == (1,)


def test_a_long_outage_keeps_the_newest_switches_within_the_bound(monkeypatch: Any) -> None:
    """The queue stays bounded through an outage: the oldest rows give way to the newest."""
    monkeypatch.setattr(sidetables, "MAX_QUEUED", 3)
    clock, run, conn = Clock(), FlakyRunner(), switchesDatabase()
    log = sidetables.SwitchLog(FakeStore(conn, clock, run))  # type: ignore[arg-type]
    run.down = True
    for n in range(6):
        log.add("p1", float(n), bool(n % 2), None)
        log.flush()
        clock.advance(sidetables.RETRY_MAX)
    run.down = False
    clock.advance(sidetables.RETRY_MAX)
    assert [r[0] for r in conn.execute("SELECT at FROM switches ORDER BY at")] == [3.0, 4.0, 5.0]


def automationDatabase() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in statements(SCHEMA):
        conn.execute(statement)
    return conn


def test_automation_items_saved_while_the_database_is_away_are_written_when_it_is_back() -> None:
    """A failed write is kept and retried after the backoff; a flush waiting on it fires when the
    attempt fails (shutdown is never held up), and what was saved since wins over the kept batch."""
    clock, run, conn = Clock(), FlakyRunner(), automationDatabase()
    store = SqliteAutomationStore(run, lambda: conn, clock=clock)
    run.down = True
    store.save("timer", "t1", "p1", {"v": 1})
    store.save("rule", "r1", "p2", {"v": 1})
    store.save("timer", "t1", "p1", {"v": 2})  # newer than the failed batch's document
    calls = run.calls
    store.save("rule", "r2", "p3", {"v": 1})
    assert run.calls == calls, "a write started while a retry is waiting"
    flushed: list[Any] = []
    store.flush().addCallback(flushed.append)  # shutdown's flush: one attempt now, over when it fails
    assert run.calls == calls + 1 and flushed == [None] and store.load() == []
    run.down = False
    clock.advance(automationstore.RETRY_MIN)
    assert store.load() == [], "retried before its backoff (doubled by the flush's failed attempt)"
    clock.advance(automationstore.RETRY_MIN)
    assert sorted(store.load()) == [("rule", "r1", "p2", {"v": 1}), ("rule", "r2", "p3", {"v": 1}),
                                    ("timer", "t1", "p1", {"v": 2})]


def test_a_plug_deleted_during_the_outage_gets_nothing_back() -> None:
    """Items of a failed batch are not written back for a plug whose items were deleted since."""
    clock, run, conn = Clock(), FlakyRunner(), automationDatabase()
    store = SqliteAutomationStore(run, lambda: conn, clock=clock)
    run.down = True
    store.save("timer", "t1", "p1", {"v": 1})
    store.save("timer", "t2", "p2", {"v": 1})
    store.deletePlug("p1")
    run.down = False
    clock.advance(automationstore.RETRY_MIN)
    assert store.load() == [("timer", "t2", "p2", {"v": 1})]


def test_the_store_reports_whether_its_database_takes_writes(tmp_path: Any) -> None:
    """C{Store.health} (shown by C{vesyncctl info} and checked by the doctor) says the last write
    failed, with its error, and clears once a write succeeds again."""
    from zoneinfo import ZoneInfo

    from vesyncd.doctor.clusterchecks import databaseCheck
    from vesyncd.storage.store import Store

    clock, run = Clock(), FlakyRunner()
    store = Store.open(tmp_path / "state.sqlite3", ZoneInfo("UTC"), clock, run=run)
    store.addReport("p1", 100.0, 3600, 60)
    assert store.health()["reachable"] is True
    run.down = True
    store.flush()
    health = store.health()
    assert health["reachable"] is False and "database is away" in health["error"] and health["pending"] == 1
    check = databaseCheck({"database": health})
    assert check is not None and check.level.value == "FAIL" and "cannot write to" in check.message
    run.down = False
    clock.advance(60)
    store.flush()
    assert store.health()["reachable"] is True and store.health()["pending"] == 0
    check = databaseCheck({"database": store.health()})
    assert check is not None and check.level.value == "OK"
