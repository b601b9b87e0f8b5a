"""In-memory doubles for the cluster tests: one shared SQLite database, a broker that delivers by topic
filter when pumped, and nodes made of a real hub and a real cluster member on a task.Clock."""

from __future__ import annotations

import sqlite3
from datetime import timezone
from typing import Any, Callable

from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred, succeed

from tests.fakes import FakeConnection
from vesyncd.automation.engine import AutomationEngine
from vesyncd.automation.settings import AutomationConfig
from vesyncd.cluster.member import ClusterMember, NotifyingAutomationStore
from vesyncd.cluster.settings import ClusterSettings
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.plugs import codec as m
from vesyncd.storage.automationstore import SCHEMA as AUTOMATION_SCHEMA, SqliteAutomationStore
from vesyncd.storage.schema import SCHEMA_5, statements

PREFIX = "vesyncd"


def sharedDatabase() -> sqlite3.Connection:
    """An in-memory database with the nodes, leases and automation tables, used by every node of a test."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in statements(SCHEMA_5) + statements(AUTOMATION_SCHEMA):
        conn.execute(statement)
    return conn


def syncRun(fn: Callable[..., Any], *args: Any) -> Deferred:
    """The store's runner, run at once in the test's thread."""
    return maybeDeferred(fn, *args)


def topicMatches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching with '+' and a trailing '#'."""
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)


class FakeBroker:
    """Queues what the links publish and delivers it to every subscribed link on L{pump}."""

    def __init__(self) -> None:
        self.links: list[Any] = []
        self.queue: list[tuple[str, bytes]] = []
        self.down: set[str] = set()
        self.published: list[tuple[str, bytes]] = []

    def attach(self, link: Any) -> None:
        """Connect a link: its publishes are queued here."""
        self.links.append(link)
        link.publish = lambda topic, payload, qos: self._publish(link, topic, payload)
        link.connected = lambda: link.node not in self.down

    def _publish(self, link: Any, topic: str, payload: bytes) -> None:
        if link.node in self.down:
            return
        self.published.append((topic, payload))
        self.queue.append((topic, payload))

    def inject(self, topic: str, payload: bytes) -> None:
        """Publish as some other client of the broker."""
        self.queue.append((topic, payload))

    def pump(self, rounds: int = 50) -> None:
        """Deliver until nothing is queued."""
        for _ in range(rounds):
            if not self.queue:
                return
            queue, self.queue = self.queue, []
            for topic, payload in queue:
                for link in list(self.links):
                    if link.node in self.down:
                        continue
                    if any(topicMatches(f, topic) for f in link.subscriptions()):
                        link.received(topic, payload)


class Node:
    """A hub and its cluster member on a shared clock, database and broker."""

    def __init__(self, name: str, clock: task.Clock, db: sqlite3.Connection, broker: FakeBroker,
                 automation: bool = False, heartbeat: float = 5.0) -> None:
        self.name = name
        self.clock = clock
        self.hub = Hub(clock, Settings(command_timeout=5.0))
        self.loads: list[str] = []
        self.stored: dict[str, Any] = {}
        self.member = ClusterMember(clock, self.hub, ClusterSettings(name, heartbeat=heartbeat), run=syncRun, connection=lambda: db,
                                    prefix=PREFIX, commandTimeout=5.0, loadPlug=self._loadPlug,
                                    reloadEnergy=lambda plugId: succeed(None))
        broker.attach(self.member.link)
        self.engine: AutomationEngine | None = None
        if automation:
            store = NotifyingAutomationStore(SqliteAutomationStore(syncRun, lambda: db), self.member)
            self.engine = AutomationEngine(self.hub, store, clock, AutomationConfig(zone=timezone.utc))
            self.member.attachAutomation(self.engine)
            self.engine.attachCluster(self.hub.elsewhere, self.member.loadItems)
        self.connections: dict[str, FakeConnection] = {}

    def _loadPlug(self, plugId: str) -> Deferred:
        self.loads.append(plugId)
        return succeed(self.stored.get(plugId))

    def start(self) -> "Node":
        """Start the member (and the engine)."""
        self.member.start()
        if self.engine is not None:
            self.engine.start([])
        return self

    def login(self, plugId: str, relay: bool = False) -> Any:
        """A plug logs in on this node over a fresh fake connection; returns its session."""
        connection = self.connections[plugId] = FakeConnection(f"192.0.2.{len(self.connections) + 10}:4000")
        return self.hub.login(connection, m.Login(id=plugId, relay=relay, firmVersion="1.89"))

    def relaysSent(self, plugId: str) -> list[dict[str, Any]]:
        """The /relay commands sent to the plug over this node's connection."""
        connection = self.connections.get(plugId)
        return [] if connection is None else [s for s in connection.sent if s.get("uri") == "/relay"]
