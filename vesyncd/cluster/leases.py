"""
Plug leases in the shared database: the node a plug is connected to holds its lease, renews it, and
gives it up when the connection ends; a lease its node stopped renewing lapses and is removed.

A new connection always wins: L{LeaseKeeper.claim} takes the lease whoever held it and says who that
was (so that node can be told to close its stale connection).  Claims and releases asked for in one
reactor turn are written in one transaction (a login wave is a few transactions, not thousands).

A lease is renewed by its node's heartbeat (L{vesyncd.cluster.nodes}), not row by row: it holds until
C{lease} seconds after the later of its claim and its node's latest heartbeat (L{effectiveExpiry}), so
keeping 10,000 leases costs one row update per heartbeat instead of 10,000.  Every C{lease/3} seconds
the keeper compares the table with what it believes it holds (reads only, unless something changed):
a plug another node took is reported with C{onLost}, a lease this node holds for a plug no longer
connected here is removed, and the leases of a node whose heartbeat is stale (the node died) are
removed, each reported once in the cluster with C{onLapsed}.

Network-free: the database is reached through C{run(fn, *args)} (the store's thread) and
C{connection()}; time comes from the injected clock, so it is tested with C{task.Clock}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from vesyncd.cluster.settings import ClusterSettings
from vesyncd.storage.runner import Runner
from vesyncd.storage.sqlite import writeTransaction

log = Logger()


#: Claims (or releases) waiting for the next batch, at most; beyond, the batch is written at once.
MAX_BATCH = 2000


def effectiveExpiry(claimedUntil: float, heartbeat: float | None, lease: float) -> float:
    """When a lease lapses: C{lease} seconds after its node's latest heartbeat (None: the node has no
    row), or at the end of the claim's own term if that is later."""
    return claimedUntil if heartbeat is None else max(claimedUntil, heartbeat + lease)


class LeaseKeeper:
    """This node's plug leases (see the module's docstring).

    C{held()} returns the plug ids connected to this node right now (the hub's sessions); C{onLost(plug,
    node)} is called when another node holds a plug this node still has, C{onLapsed(plug, node)}
    when this node removed a lapsed lease of C{node}.
    """

    def __init__(self, clock: IReactorTime, run: Runner, connection: Callable[[], Any], settings: ClusterSettings,
                 held: Callable[[], Any], onLost: Callable[[str, str], None],
                 onLapsed: Callable[[str, str], None]) -> None:
        self.clock = clock
        self.run = run
        self.connection = connection
        self.settings = settings
        self.node = settings.node
        self.held = held
        self.onLost = onLost
        self.onLapsed = onLapsed
        self._claims: dict[str, list[Deferred]] = {}
        self._releases: set[str] = set()
        self._batch: IDelayedCall | None = None
        self._loop = task.LoopingCall(self.renew)
        self._loop.clock = clock
        self._renewing: Deferred | None = None
        self._renewedAt: float | None = None
        self.stopped = False
        self.stats = {"claims": 0, "taken_over": 0, "releases": 0, "renewals": 0, "lost": 0, "lapsed": 0,
                      "failures": 0}

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> Deferred:
        """Remove what an earlier run of this node left (its plugs are not connected here any more), then
        renew every C{lease/3} seconds."""
        d = self.run(self._clearOwn, self.node)
        d.addErrback(self._failed, "clearing this node's old leases")
        d.addCallback(lambda _: None if self._loop.running else self._loop.start(self.settings.renewEvery,
                                                                                  now=False))
        return d

    def stop(self) -> Deferred:
        """Stop renewing and give up every lease of this node (its plugs reconnect to the others)."""
        self.stopped = True
        if self._loop.running:
            self._loop.stop()
        if self._batch is not None and self._batch.active():
            self._batch.cancel()
        claims, self._claims = self._claims, {}
        self._releases.clear()
        for waiting in claims.values():
            for waiter in waiting:
                waiter.callback(self.node)  # nothing to take over: the node stops
        d = self.run(self._clearOwn, self.node)
        d.addErrback(self._failed, "giving up this node's leases")
        return d

    def _clearOwn(self, node: str) -> int:
        conn = self.connection()
        with writeTransaction(conn):
            return conn.execute("DELETE FROM leases WHERE node = ?", (node,)).rowcount

    def _failed(self, f: Any, what: str) -> None:
        self.stats["failures"] += 1
        log.warn("cluster: {what} failed: {error}", what=what, error=f.getErrorMessage())

    # -- claims and releases -------------------------------------------------------------------

    def claim(self, plugId: str) -> Deferred:
        """Take the plug's lease for this node; fires with the node that held it before (this node's
        name if it already did, None if nobody did)."""
        if self.stopped:
            return succeed(self.node)
        d: Deferred = Deferred()
        self._claims.setdefault(plugId, []).append(d)
        self._releases.discard(plugId)
        self._schedule()
        return d

    def release(self, plugId: str) -> None:
        """Give up the plug's lease if this node holds it (its connection here ended)."""
        if self.stopped or plugId in self._claims:
            return  # stopping (every lease goes), or claimed again in this batch: the newer connection keeps it
        self._releases.add(plugId)
        self._schedule()

    def _schedule(self) -> None:
        if len(self._claims) + len(self._releases) >= MAX_BATCH:
            self._writeBatch()
        elif self._batch is None or not self._batch.active():
            self._batch = self.clock.callLater(0, self._writeBatch)

    def _writeBatch(self) -> None:
        """Write the waiting claims and releases in one transaction."""
        if self._batch is not None and self._batch.active():
            self._batch.cancel()
        self._batch = None
        claims, self._claims = self._claims, {}
        releases, self._releases = self._releases, set()
        if not claims and not releases:
            return
        now = self.clock.seconds()
        d = self.run(self._write, list(claims), sorted(releases), now)

        def written(previous: dict[str, str | None]) -> None:
            self.stats["claims"] += len(claims)
            self.stats["releases"] += len(releases)
            for plugId, waiting in claims.items():
                before = previous.get(plugId)
                if before is not None and before != self.node:
                    self.stats["taken_over"] += 1
                for waiter in waiting:
                    waiter.callback(before)

        def failed(f: Any) -> None:
            self._failed(f, f"writing {len(claims)} claims and {len(releases)} releases")
            for waiting in claims.values():
                for waiter in waiting:
                    waiter.errback(f)

        d.addCallbacks(written, failed)

    def _write(self, claims: list[str], releases: list[str], now: float) -> dict[str, str | None]:
        """Take the claimed leases and drop the released ones (store thread); returns the previous holders."""
        conn = self.connection()
        expires = now + self.settings.lease
        previous: dict[str, str | None] = {}
        with writeTransaction(conn):
            for plugId in claims:
                row = conn.execute("SELECT node FROM leases WHERE plug = ?", (plugId,)).fetchone()
                previous[plugId] = row[0] if row is not None else None
            conn.executemany(
                "INSERT INTO leases (plug, node, expires, since) VALUES (?, ?, ?, ?) ON CONFLICT (plug) DO UPDATE"
                " SET node = excluded.node, expires = excluded.expires,"
                " since = CASE WHEN leases.node = excluded.node THEN leases.since ELSE excluded.since END",
                [(plugId, self.node, expires, now) for plugId in claims])
            conn.executemany("DELETE FROM leases WHERE plug = ? AND node = ?",
                             [(plugId, self.node) for plugId in releases])
        return previous

    def holder(self, plugId: str) -> Deferred:
        """Fire with the node holding the plug's lease now (None: nobody)."""
        return self.run(self._holder, plugId)

    def _holder(self, plugId: str) -> str | None:
        row = self.connection().execute("SELECT node FROM leases WHERE plug = ?", (plugId,)).fetchone()
        return None if row is None else str(row[0])

    # -- renewal -------------------------------------------------------------------------------

    def renew(self) -> Deferred:
        """Reconcile this node's leases with the plugs connected here and remove lapsed ones (the leases
        themselves are kept alive by the node's heartbeat); one pass at a time: a slow database skips a
        pass rather than queueing them."""
        if self._renewing is not None:
            return succeed(None)
        self._writeBatch()
        now = self.clock.seconds()
        # Right after the database was away (this node's last pass long ago or failed) the other nodes
        # have not beaten yet either: no lease is judged lapsed on this pass.
        sweep = self._renewedAt is not None and now - self._renewedAt <= 2 * self.settings.renewEvery + 1.0
        d = self._renewing = self.run(self._renew, sorted(self.held()), now, sweep)

        def done(result: tuple[dict[str, str], list[tuple[str, str]]]) -> None:
            lost, lapsed = result
            self._renewedAt = now
            self.stats["renewals"] += 1
            for plugId, node in sorted(lost.items()):
                self.stats["lost"] += 1
                self.onLost(plugId, node)
            for plugId, node in lapsed:
                self.stats["lapsed"] += 1
                self.onLapsed(plugId, node)

        def finished(_: Any) -> None:
            self._renewing = None

        d.addCallbacks(done, self._failed, errbackArgs=("renewing leases",)).addBoth(finished)
        return d

    def _renew(self, here: list[str], now: float, sweep: bool = True) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """One reconciliation pass (store thread); returns C{(lost, lapsed)}: plugs here held by another
        live node, and the lapsed leases this pass removed."""
        conn = self.connection()
        node = self.node
        herePlugs = set(here)
        lost: dict[str, str] = {}
        lapsed: list[tuple[str, str]] = []
        with writeTransaction(conn):
            mine = {str(p) for (p,) in conn.execute("SELECT plug FROM leases WHERE node = ?", (node,)).fetchall()}
            gone = sorted(mine - herePlugs)
            conn.executemany("DELETE FROM leases WHERE plug = ? AND node = ?", [(p, node) for p in gone])
            missing = sorted(herePlugs - mine)
            for plugId in missing:
                row = conn.execute("SELECT leases.node, leases.expires, nodes.heartbeat FROM leases LEFT JOIN nodes"
                                   " ON nodes.name = leases.node WHERE leases.plug = ?", (plugId,)).fetchone()
                if row is not None and row[0] != node and effectiveExpiry(
                        float(row[1]), None if row[2] is None else float(row[2]), self.settings.lease) >= now:
                    lost[plugId] = str(row[0])
                else:
                    # Nobody holds it (its lease lapsed while the database was away): take it back.
                    conn.execute("INSERT INTO leases (plug, node, expires, since) VALUES (?, ?, ?, ?) ON CONFLICT"
                                 " (plug) DO UPDATE SET node = excluded.node, expires = excluded.expires,"
                                 " since = excluded.since", (plugId, node, now + self.settings.lease, now))
            # Only a dead node's leases lapse (its heartbeat is stale and the claim's own term is over);
            # right after the database was away no pass sweeps (C{sweep}): the others have not beaten yet.
            for plugId, holder in conn.execute(
                    "SELECT leases.plug, leases.node FROM leases LEFT JOIN nodes ON nodes.name = leases.node"
                    " WHERE leases.expires < ? AND (nodes.heartbeat IS NULL OR nodes.heartbeat < ?)",
                    (now, now - self.settings.nodeTimeout)).fetchall() if sweep else ():
                if conn.execute("DELETE FROM leases WHERE plug = ? AND node = ? AND expires < ?",
                                (plugId, holder, now)).rowcount == 1:
                    lapsed.append((str(plugId), str(holder)))
        return lost, lapsed
