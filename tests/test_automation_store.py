"""Tests for the automation store on SQLite and PostgreSQL: round trips, coalesced writes in order, and an
engine restart on it."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from vesyncd.automation.interfaces import IAutomationStore
from vesyncd.storage.automationstore import SCHEMA, SqliteAutomationStore
from vesyncd.automation.store import MemoryAutomationStore
from vesyncd.storage.runner import inlineRunner
from tests.automation_helpers import BERLIN, FakeAutomationHub, clockAt, makeEngine
from tests.pgserver import anyConnection, pgDatabase, postgres  # noqa: F401 - fixtures

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN)


def database() -> sqlite3.Connection:
    """An in-memory database with the automation table (applied twice: the DDL is idempotent)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    conn.executescript(SCHEMA)
    return conn


class HeldRunner:
    """A runner that holds each database call until the test releases it, like a busy writer thread."""

    def __init__(self) -> None:
        self.held: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        d: Deferred = Deferred()
        self.held.append((fn, args, d))
        return d

    def release(self) -> None:
        """Run the oldest held call and fire its Deferred."""
        fn, args, d = self.held.pop(0)
        d.callback(fn(*args))


def test_both_stores_provide_the_interface() -> None:
    """The memory and SQLite stores provide IAutomationStore."""
    conn = database()
    assert IAutomationStore.providedBy(MemoryAutomationStore())
    assert IAutomationStore.providedBy(SqliteAutomationStore(inlineRunner, lambda: conn))


def test_round_trip_delete_and_forget(anyConnection: Any) -> None:
    """Saved documents load back; delete removes one item, deletePlug every item of a plug."""
    conn = anyConnection
    store = SqliteAutomationStore(inlineRunner, lambda: conn)
    store.save("schedule", "s1", "p1", {"at": "07:00:00", "n": 1})
    store.save("schedule", "s1", "p1", {"at": "08:00:00"})
    store.save("rule", "r1", "p1", {"when": "above"})
    store.save("timer", "p2", "p2", {"switch": "off"})
    assert sorted(store.load()) == [("rule", "r1", "p1", {"when": "above"}),
                                    ("schedule", "s1", "p1", {"at": "08:00:00"}),
                                    ("timer", "p2", "p2", {"switch": "off"})]
    store.delete("rule", "r1", "p1")
    store.deletePlug("p2")
    assert store.load() == [("schedule", "s1", "p1", {"at": "08:00:00"})]


def test_unreadable_rows_are_skipped(anyConnection: Any) -> None:
    """A row that is not a JSON object is left out of the load."""
    conn = anyConnection
    conn.execute("INSERT INTO automation VALUES ('rule', 'r9', 'p1', 'not json')")
    conn.execute("INSERT INTO automation VALUES ('rule', 'r8', 'p1', '[1, 2]')")
    store = SqliteAutomationStore(inlineRunner, lambda: conn)
    store.save("rule", "r1", "p1", {"ok": True})
    assert store.load() == [("rule", "r1", "p1", {"ok": True})]


def test_writes_are_coalesced_one_at_a_time_and_flush_waits(anyConnection: Any) -> None:
    """While a write is in flight, later saves of an item are coalesced into one next write; flush
    fires only when everything asked so far is written."""
    conn = anyConnection
    runner = HeldRunner()
    store = SqliteAutomationStore(runner, lambda: conn)
    store.save("timer", "p1", "p1", {"v": 1})
    for v in range(2, 6):
        store.save("timer", "p1", "p1", {"v": v})
    store.delete("rule", "r1", "p1")
    flushed: list[Any] = []
    store.flush().addCallback(flushed.append)
    assert len(runner.held) == 1
    runner.release()
    assert len(runner.held) == 1 and not flushed
    runner.release()
    assert runner.held == [] and flushed == [None]
    assert store.load() == [("timer", "p1", "p1", {"v": 5})]


def test_engine_restart_on_sqlite(anyConnection: Any) -> None:
    """Schedules, rules, away windows and a timer written by one engine are what the next engine runs."""
    conn = anyConnection
    clock = clockAt(NOON)
    store = SqliteAutomationStore(inlineRunner, lambda: conn)
    engine, hub, _ = makeEngine(clock, store=store)
    sid = engine.addSchedule("p1", "on", "18:00", "weekdays")["id"]
    rid = engine.addRule("p1", above=100, duration="1m")["id"]
    engine.away("p2", "20:00", "22:00")
    engine.setTimer("p1", "off", "1h")
    engine.stop()
    hub2 = FakeAutomationHub(clock)
    hub2.add("p1")
    engine2, _, _ = makeEngine(clock, hub=hub2, store=SqliteAutomationStore(inlineRunner, lambda: conn))
    described = engine2.describe("p1")
    assert [s["id"] for s in described["schedules"]] == [sid] and [r["id"] for r in described["rules"]] == [rid]
    assert described["timer"]["left_s"] == 3600 and engine2.awayStatus("p2")["to"] == "22:00:00"
    clock.advance(3600)
    assert (False, "timer") in hub2.causes("p1")


class ThreadedStoreTests(unittest.TestCase):
    """The SQLite store on the storage package's real writer thread."""

    def test_writes_happen_in_the_writer_thread_and_persist(self) -> Deferred:
        """Saves go through the one-thread runner (never the reactor thread) and are on disk after flush."""
        import threading

        from twisted.internet import reactor

        from vesyncd.storage.schema import connect
        from vesyncd.storage.runner import threadRunner

        path = Path(self.mktemp() + ".db")
        conn = connect(path)
        conn.executescript(SCHEMA)
        run, stop = threadRunner(reactor)
        self.addCleanup(stop)
        threads: list[str] = []

        def connection() -> sqlite3.Connection:
            threads.append(threading.current_thread().name)
            return conn

        store = SqliteAutomationStore(run, connection)
        for n in range(20):
            store.save("schedule", f"s{n}", "p1", {"n": n})
        store.delete("schedule", "s0", "p1")

        def check(_: object) -> None:
            self.assertTrue(threads and all(name != threading.main_thread().name for name in threads))
            reopened = sqlite3.connect(str(path))
            self.addCleanup(reopened.close)
            self.assertEqual(reopened.execute("SELECT COUNT(*) FROM automation").fetchone()[0], 19)

        return store.flush().addCallback(check)


def test_engine_starts_from_items_loaded_earlier() -> None:
    """start(items) takes items read before (as the daemon does before forking) instead of reading again."""
    clock = clockAt(NOON)
    engine, _, store = makeEngine(clock)
    sid = engine.addSchedule("p1", "on", "18:00")["id"]
    engine.stop()
    items = store.load()
    store.items.clear()
    engine2, _, _ = makeEngine(clock, store=store, start=False)
    engine2.start(items)
    assert [s["id"] for s in engine2.schedulesOf()] == [sid]
