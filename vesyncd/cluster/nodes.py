"""
The node directory: each node's row in the shared C{nodes} table (its heartbeat and the addresses it
advertises), read back with every lease so that any node can list the cluster.

L{ClusterView} (with L{NodeInfo} and L{LeaseInfo}, defined in L{vesyncd.core.clusterview} so that the front
ends can name them) is what the front ends and the DNS responder read (C{vesyncctl nodes}, C{/metrics},
answers for C{server2.vesync.com}); L{NodeDirectory} provides it from values read every heartbeat,
so every call is synchronous and costs no database round trip.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vesyncd.cluster.leases import effectiveExpiry
from vesyncd.cluster.settings import ClusterSettings
from vesyncd.core.clusterview import ClusterView, LeaseInfo, NodeInfo
from vesyncd.storage.runner import Runner
from vesyncd.storage.sqlite import writeTransaction

__all__ = ["ClusterView", "LeaseInfo", "NodeDirectory", "NodeInfo"]

log = Logger()



@implementer(ClusterView)
class NodeDirectory:
    """Writes this node's heartbeat and reads the nodes and leases every C{settings.heartbeat} seconds.

    C{run(fn, *args)} runs C{fn} in the store's thread and C{connection()} is that thread's database
    connection (L{vesyncd.storage.store.Store.run} and C{.connection}).  C{address()} and
    C{plugAddress()} give what this node advertises, read at each heartbeat.  C{onRead(owners)} is
    called after each read with every lease (plug id -> node), lapsed ones included.
    C{brokerConnected()}, if given, tells whether this node's broker connection is up (L{broker}).
    """

    def __init__(self, clock: IReactorTime, run: Runner, connection: Callable[[], Any], settings: ClusterSettings,
                 address: Callable[[], str | None] = lambda: None,
                 plugAddress: Callable[[], str | None] = lambda: None,
                 onRead: Callable[[dict[str, str]], None] | None = None,
                 brokerConnected: Callable[[], bool] | None = None) -> None:
        self.clock = clock
        self.run = run
        self.connection = connection
        self.settings = settings
        self.nodeName = settings.node
        self.address = address
        self.plugAddress = plugAddress
        self.onRead = onRead
        self.brokerConnected = brokerConnected
        self.started = clock.seconds()
        self._nodes: list[tuple[str, str | None, str | None, float, float]] = []
        self._leases: dict[str, tuple[str, float, float]] = {}
        self._readAt: float | None = None
        # The loop must not wait for a hanging beat: the next ones count as missed (see L{beat}).
        self._loop = task.LoopingCall(lambda: self.beat() and None)
        self._loop.clock = clock
        self._beating: Deferred | None = None
        #: Heartbeats that could not be written (database unreachable), or missed while one hung.
        self.failures = 0
        #: Set by a beat that found another daemon's heartbeat under this node's name; how often that was seen.
        self.duplicate: tuple[float, float] | None = None
        self.duplicates = 0
        #: Where L{counters} come from (the cluster member sets it).
        self.countersFrom: Callable[[], dict[str, int]] = lambda: {}

    def start(self) -> None:
        """Write the first heartbeat now and one every C{settings.heartbeat} seconds."""
        if not self._loop.running:
            self._loop.start(self.settings.heartbeat, now=True)

    def stop(self) -> Deferred:
        """Stop beating and remove this node's row (its leases are the lease keeper's)."""
        if self._loop.running:
            self._loop.stop()
        d = self.run(self._leave, self.nodeName)
        d.addErrback(lambda f: log.warn("cluster: could not remove node {node}: {error}", node=self.nodeName,
                                        error=f.getErrorMessage()))
        return d

    def beat(self) -> Deferred:
        """Write this node's heartbeat, then read every node and lease (one at a time: a slow database
        skips beats rather than queueing them)."""
        if self._beating is not None:
            # The previous one has not come back (a database that hangs): this beat is missed.
            self.failures += 1
            return succeed(None)
        now = self.clock.seconds()
        d = self.run(self._beat, self.nodeName, self.address(), self.plugAddress(), self.started, now)
        self._beating = d

        def read(result: tuple[list[Any], list[Any]]) -> None:
            nodes, leases = result
            if self.duplicate is not None:
                self.duplicates += 1
                log.error("cluster: another daemon runs as node {node} (started at {started}) on this database: "
                          "give each node its own --node name", node=self.nodeName, started=self.duplicate[0])
                self.duplicate = None
            self._nodes = [(str(n), a, p, float(s), float(h)) for n, a, p, s, h in nodes]
            beats = {str(n): float(h) for n, _, _, _, h in nodes}
            lease = self.settings.lease
            self._leases = {str(plug): (str(node), effectiveExpiry(float(expires), beats.get(str(node)), lease),
                                        float(since)) for plug, node, expires, since in leases}
            self._readAt = now
            if self.onRead is not None:
                # Lapsed leases too: a plug stays with its dead node until a node removes the lease
                # and announces it offline, once (see vesyncd.cluster.leases).
                self.onRead({plug: node for plug, (node, _, _) in self._leases.items()})

        def failed(f: Any) -> None:
            self.failures += 1
            log.warn("cluster: heartbeat of node {node} failed: {error}", node=self.nodeName, error=f.getErrorMessage())

        def done(_: Any) -> None:
            self._beating = None

        d.addCallbacks(read, failed).addBoth(done)
        return d

    def _beat(self, name: str, address: str | None, plugAddress: str | None, started: float,
              now: float) -> tuple[list[Any], list[Any]]:
        """Upsert the node's row and read all nodes and leases (store thread)."""
        conn = self.connection()
        with writeTransaction(conn):
            row = conn.execute("SELECT started, heartbeat FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is not None and float(row[0]) != started and float(row[1]) > started:
                # Someone else beat under this name since this node started: two daemons share a name.
                self.duplicate = (float(row[0]), float(row[1]))
            conn.execute("INSERT INTO nodes (name, address, plug_address, started, heartbeat) VALUES (?, ?, ?, ?, ?)"
                         " ON CONFLICT (name) DO UPDATE SET address = excluded.address,"
                         " plug_address = excluded.plug_address, started = excluded.started,"
                         " heartbeat = excluded.heartbeat", (name, address, plugAddress, started, now))
        nodes = conn.execute("SELECT name, address, plug_address, started, heartbeat FROM nodes ORDER BY name").fetchall()
        leases = conn.execute("SELECT plug, node, expires, since FROM leases").fetchall()
        return nodes, leases

    def _leave(self, name: str) -> None:
        """Delete the node's row (store thread)."""
        conn = self.connection()
        with writeTransaction(conn):
            conn.execute("DELETE FROM nodes WHERE name = ?", (name,))

    # -- ClusterView ---------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """Every node as last read (see L{ClusterView.nodes})."""
        now = self.clock.seconds()
        counts: dict[str, int] = {}
        for node, _, _ in self._leases.values():
            counts[node] = counts.get(node, 0) + 1
        out = []
        for name, address, plugAddress, started, heartbeat in self._nodes:
            age = max(0.0, now - heartbeat)
            out.append(NodeInfo(name, address, plugAddress, started, heartbeat, age, age <= self.settings.nodeTimeout,
                                counts.get(name, 0), name == self.nodeName))
        return out

    def liveAddresses(self) -> list[str]:
        """The live nodes' advertised addresses (see L{ClusterView.liveAddresses})."""
        out: list[str] = []
        own = self.address()
        for node in self.nodes():
            address = own if node.this else node.address
            if (node.alive or node.this) and address and address not in out:
                out.append(address)
        if own and own not in out:
            out.append(own)
        return out

    def leases(self, node: str | None = None) -> list[LeaseInfo]:
        """The leases as last read (see L{ClusterView.leases})."""
        now = self.clock.seconds()
        return [LeaseInfo(plug, holder, expires, since, max(0.0, now - since))
                for plug, (holder, expires, since) in sorted(self._leases.items()) if node in (None, holder)]

    def ownerOf(self, plugId: str) -> str | None:
        """The node holding the plug's lease as last read, or None."""
        lease = self._leases.get(plugId)
        return lease[0] if lease is not None else None

    def seemsDead(self, name: str) -> bool:
        """True when the node has a row whose heartbeat is older than the node timeout, as read lately (a
        node not read yet, or any node while this one's own reads fail, is given the benefit of the doubt)."""
        now = self.clock.seconds()
        if self._readAt is None or now - self._readAt > self.settings.nodeTimeout:
            return False  # this node cannot read the database either: no judging the others
        for node, _, _, _, heartbeat in self._nodes:
            if node == name:
                return node != self.nodeName and now - heartbeat > self.settings.nodeTimeout
        return False

    def liveOwners(self) -> dict[str, str]:
        """Plug id -> node for the leases not yet expired when last read."""
        now = self.clock.seconds()
        return {plug: node for plug, (node, expires, _) in self._leases.items() if expires >= now}

    def status(self) -> dict[str, Any]:
        """This node, every node and how fresh the reading is (see L{ClusterView.status})."""
        return {"node": self.nodeName, "nodes": [n.toJSON() for n in self.nodes()],
                "leases_held": sum(1 for holder, _, _ in self._leases.values() if holder == self.nodeName),
                "read_age_s": None if self._readAt is None else round(self.clock.seconds() - self._readAt, 3),
                "heartbeat_failures": self.failures}

    def counters(self) -> dict[str, int]:
        """This node's cluster counters (see L{ClusterView.counters})."""
        return {"heartbeat_failures": self.failures, "duplicate_name": self.duplicates, **self.countersFrom()}

    def database(self) -> dict[str, Any]:
        """The shared database as this node reaches it (see L{ClusterView.database})."""
        age = None if self._readAt is None else round(self.clock.seconds() - self._readAt, 3)
        doc: dict[str, Any] = {"read_age_s": age, "heartbeat_failures": self.failures,
                               "reachable": age is not None and age <= self.settings.nodeTimeout}
        if not doc["reachable"]:
            doc["error"] = (("never read" if age is None else f"last read {age:.0f} s ago")
                            + f", {self.failures} heartbeat(s) failed")
        return doc

    def broker(self) -> dict[str, Any] | None:
        """This node's broker connection (see L{ClusterView.broker})."""
        if self.brokerConnected is None:
            return None
        return {"connected": bool(self.brokerConnected())}

    def refresh(self) -> Deferred:
        """Beat and read now (see L{ClusterView.refresh})."""
        return self.beat().addCallback(lambda _: self.nodes())
