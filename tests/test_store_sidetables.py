"""Schemas 4 and 5: the automation, switches, baselines, nodes and leases tables (on SQLite and PostgreSQL),
migrated from schema 3, written inline on task.Clock."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial import unittest

from vesyncd.storage.automationstore import SqliteAutomationStore
from vesyncd.core.hub import Hub
from vesyncd.plugs import codec as m
from vesyncd.storage.persister import Persister
from vesyncd.storage.schema import SCHEMA_VERSION, _migrate0to1, _migrate1to2, _migrate2to3
from vesyncd.storage.sidetables import BaselineStore, SwitchLog
from vesyncd.storage.store import Store
from vesyncd.storage.runner import inlineRunner
from tests.fakes import FakeConnection, result
from tests.pgserver import BackendCase, onPostgres, pgDatabase, postgres  # noqa: F401 - fixtures

NY = ZoneInfo("America/New_York")



class SideTableTests(BackendCase, unittest.TestCase):
    """The store's smaller tables over an inline runner."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="vesyncd-sidetables-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.path = self.tmp / "vesyncd.sqlite3"
        self.clock = Clock()
        self.clock.advance(1_796_000_000)

    def open(self) -> Store:
        """The store on the test's database, writing inline."""
        return self.openStore(self.tmp, NY, self.clock)

    def test_leasesAndNodesKept(self) -> None:
        """Schema 5's nodes and leases tables take rows the cluster writes and read them back."""
        conn = self.open().connection()
        conn.execute("INSERT INTO nodes (name, address, plug_address, started, heartbeat) VALUES (?, ?, ?, ?, ?)",
                     ("n1", "127.0.0.1:17300", "127.0.0.1", 1.5, 2.5))
        conn.execute("INSERT INTO leases (plug, node, expires, since) VALUES (?, ?, ?, ?)", ("p1", "n1", 9.5, 1.5))
        conn.execute("INSERT INTO leases (plug, node, expires, since) VALUES (?, ?, ?, ?) ON CONFLICT (plug)"
                     " DO UPDATE SET node = excluded.node, expires = excluded.expires", ("p1", "n2", 19.5, 1.5))
        self.assertEqual(conn.execute("SELECT plug, node, expires, since FROM leases").fetchall(),
                         [("p1", "n2", 19.5, 1.5)])
        self.assertEqual(conn.execute("SELECT heartbeat FROM nodes WHERE name = ?", ("n1",)).fetchone(), (2.5,))


    def test_switchHistoryNewestFirstAndPruned(self) -> None:
        """Switches read back newest first; pruning drops those past the days kept and beyond the row cap."""
        store = self.open()
        log = SwitchLog(store, keepDays=90, keepRows=3)
        now = self.clock.seconds()
        log.add("p1", now - 100 * 86400, True, "command")  # older than 90 days
        for i in range(5):
            log.add("p1", now - 10 + i, i % 2 == 0, f"schedule:s00000{i}")
        log.add("p2", now, False, None)
        history = result(log.switchHistory("p1", 2))
        self.assertEqual([(s["relay"], s["cause"]) for s in history], [(True, "schedule:s000004"),
                                                                       (False, "schedule:s000003")])
        self.assertEqual(history[0]["ts"], now - 6)
        self.assertTrue(history[0]["at"].endswith("Z"))
        self.assertEqual(result(log.prune()), 3)  # the old one, then two beyond the newest three
        self.assertEqual(len(result(log.switchHistory("p1", 100))), 3)
        self.assertEqual(result(log.switchHistory("p2", 10))[0]["cause"], None)

    def test_dailyPruneRunsTheHook(self) -> None:
        """The store's daily pruning prunes the switch history too."""
        store = self.open()
        log = SwitchLog(store, keepDays=1)
        log.add("p1", self.clock.seconds(), True, "command")
        store.start()
        self.clock.advance(3 * 86400)
        self.assertEqual(result(log.switchHistory("p1", 10)), [])
        result(store.stop())

    def test_persisterRecordsSwitchesAndForgetDeletes(self) -> None:
        """Each relay event is a switch row with its cause; forgetting the plug deletes its rows and baseline."""
        store = self.open()
        log = SwitchLog(store)
        hub = Hub(self.clock)
        Persister(hub, store, switches=log)
        session = hub.login(FakeConnection(), m.Login(id="p1", relay=False))
        hub.switch("p1", True, cause="away")
        session.received(m.RuntimeInfo(relay=True))
        self.assertEqual([(s["relay"], s["cause"]) for s in result(log.switchHistory("p1", 10))],
                         [(True, "away"), (False, "login")])
        baselines = BaselineStore(store)
        result(baselines.save({"p1": b"\x01\x02", "p2": b"\x03"}))
        hub.forget("p1")
        result(store.flush())
        self.assertEqual(result(log.switchHistory("p1", 10)), [])
        self.assertEqual(baselines.load(), {"p2": b"\x03"})

    def test_baselinesReplacedAsAWhole(self) -> None:
        """Each save replaces every stored baseline; they load back after a reopen."""
        store = self.open()
        baselines = BaselineStore(store)
        result(baselines.save({"a": b"one", "b": b"two"}))
        result(baselines.save({"b": b"three"}))
        result(store.stop())
        self.assertEqual(BaselineStore(self.open()).load(), {"b": b"three"})


SideTableTestsOnPostgres = onPostgres(SideTableTests)


class SQLiteMigrationTests(unittest.TestCase):
    """An SQLite file of schema 3 gains the later tables."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="vesyncd-sidetables-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.path = self.tmp / "vesyncd.sqlite3"
        self.clock = Clock()
        self.clock.advance(1_796_000_000)

    def open(self) -> Store:
        """The store on the test's database, writing inline."""
        return Store.open(self.path, NY, self.clock, run=inlineRunner)

    def test_fromVersion3(self) -> None:
        """A schema 3 database gains the three tables and keeps its plugs and energy."""
        conn = sqlite3.connect(str(self.path))
        for step in (_migrate0to1, _migrate1to2, _migrate2to3):
            step(conn, NY)
        conn.execute("INSERT INTO plugs (id, alias, relay) VALUES ('p1', 'Kettle', 1)")
        conn.execute("INSERT INTO hours VALUES ('p1', 498888, 3600, 3600)")
        conn.execute("PRAGMA user_version = 3")
        conn.commit()
        conn.close()
        store = self.open()
        conn = store.connection()
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertLessEqual({"automation", "switches", "baselines", "plugs", "hours"}, tables)
        self.assertEqual([p.alias for p in store.loadPlugs()], ["Kettle"])
        self.assertEqual(conn.execute("SELECT ws FROM hours").fetchall(), [(3600,)])
        automation = SqliteAutomationStore(store.run, store.connection)
        automation.save("timer", "p1", "p1", {"switch": "off", "due": 1.0, "created": 0.0})
        self.assertEqual(automation.load(), [("timer", "p1", "p1", {"switch": "off", "due": 1.0, "created": 0.0})])
