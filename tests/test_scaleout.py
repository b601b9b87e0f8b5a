"""
Scale-out end to end (docs/scaling.md): three real C{twistd -n vesyncd} nodes on loopback (127.0.0.2-4)
sharing a real PostgreSQL (tests.pgserver) and a real mosquitto, with simulated plugs that find their
node through the nodes' DNS responders (tests.scaleout_helpers.SeekingPlug).

 - 300 plugs spread over the nodes by DNS; a command through node a to a plug on node c is confirmed;
   after C{kill -9} of node b every one of its plugs is back on a or c and commandable through a within
   L{FAILOVER_BOUND} seconds; its lifetime energy carries on from where it was; no report is counted twice
   (the database's reports match what the plugs sent, the lost ones only those sent to b as it died); a
   schedule due after the kill runs exactly once on the new owner, and the ones on a and c once too.
 - the database restarted under load (60 plugs reporting, renames and switches acknowledged while it is
   down) loses nothing that was acknowledged: every report, alias and switch (in the switch history) is
   in the database afterwards.

Timings: heartbeat 1 s, lease 3 s (so a node is taken for dead after 3 s), plugs at 20x speed (a
keep-alive and an energy report every 9 s per plug).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.fakes import waitFor
from vesyncd.cli.cluster import formatNodes
from vesyncd.doctor.clusterchecks import clusterChecks
from tests.mqtt_helpers import MOSQUITTO, SKIP_REASON, Broker
from tests.pgserver import pgDatabase, postgres  # noqa: F401  (pytest fixtures)
from tests.scaleout_helpers import Cluster, Fleet, clusterSupported, dbQuery, eventually, sentReports

#: Seconds from kill -9 of a node until every plug it held is connected elsewhere and commandable.
FAILOVER_BOUND = 15.0
#: Seconds after the kill the schedules are due (beyond FAILOVER_BOUND: they must run on the new owner).
SCHEDULE_AFTER_KILL = FAILOVER_BOUND + 3.0
#: Seconds before a node's death in which a report sent to it may not have been written yet.
UNSURE = 1.0
#: Commands in flight on one control connection at once (the control port allows 16).
BATCH = 12

UNSUPPORTED = clusterSupported()


def lifetimeWh(doc: dict[str, Any]) -> float:
    return float(doc.get("energy_lifetime_kwh") or 0.0) * 1000.0


def inBatches(client: Any, method: str, refs: list[str], *args: Any) -> Any:
    """Call C{client.method(ref, *args)} for every ref, BATCH at a time; fires with {ref: result or Exception}."""

    @inlineCallbacks
    def run() -> Any:
        out: dict[str, Any] = {}
        for start in range(0, len(refs), BATCH):
            chunk = refs[start:start + BATCH]
            results = yield gatherResults([getattr(client, method)(ref, *args).addErrback(lambda f: f.value)
                                           for ref in chunk])
            out.update(zip(chunk, results))
        return out

    return run()


class ClusterCase(unittest.TestCase):
    """A broker and a three-node cluster on the test's fresh database (the pgDatabase fixture)."""

    timeout = 110
    databaseUrl: str
    postgres: Any
    if MOSQUITTO is None:
        skip = SKIP_REASON
    elif UNSUPPORTED is not None:
        skip = f"the cluster options are not wired into the daemon yet ({UNSUPPORTED})"

    @inlineCallbacks
    def setUp(self) -> Any:
        self.broker = Broker()
        self.addCleanup(self.broker.cleanup)
        yield self.broker.start()
        # Short: a UNIX socket's path (the control port) must fit in 108 bytes.
        root = Path(tempfile.mkdtemp(prefix="vsc-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.cluster = Cluster(root, self.databaseUrl, self.broker.port)
        self.addCleanup(self.cluster.stop)
        yield self.cluster.start()

    @inlineCallbacks
    def startFleet(self, count: int) -> Any:
        fleet = Fleet(count, self.cluster.dnsServers, self.cluster.plugPort)
        self.addCleanup(fleet.stop)
        fleet.start(spread=2.0)
        yield waitFor(lambda: len(fleet.online()) == count, timeout=30, what=f"{count} plugs online")
        return fleet

    @inlineCallbacks
    def flushedEnergy(self, fleet: Fleet, uncertain: Any = lambda at, node: False, timeout: float = 20.0) -> Any:
        """Stop the plugs, then wait until the database's reports of every plug are all it must hold
        (every report sent but the C{uncertain} ones, see L{sentReports}) and never more than were sent:
        more rows or watt-seconds than sent would be a report counted twice.  Fires with {plug: (n, ws)}."""
        stoppedAt = time.monotonic()
        fleet.stop()
        bounds = {p.id: sentReports(p, lambda at, node: uncertain(at, node) or at >= stoppedAt - 0.5)
                  for p in fleet.plugs}
        ids = [p.id for p in fleet.plugs]

        latest: dict[str, tuple[int, int]] = {}

        @inlineCallbacks
        def shortfalls() -> Any:
            rows = yield deferToThread(dbQuery, self.databaseUrl, "SELECT plug, COUNT(*), COALESCE(SUM(ws), 0)"
                                       " FROM reports WHERE plug = ANY(%s) GROUP BY plug", ids)
            latest.clear()
            latest.update({plug: (int(n), int(ws)) for plug, n, ws in rows})
            over = {p: (latest[p], bounds[p][1]) for p in latest
                    if latest[p][0] > bounds[p][1][0] or latest[p][1] > bounds[p][1][1]}
            assert not over, f"reports counted twice (stored, sent): {dict(list(over.items())[:5])}"
            # (stored, must have been stored, sent) of the plugs still short
            return {p: (latest.get(p, (0, 0)), bounds[p][0], bounds[p][1]) for p in ids
                    if latest.get(p, (0, 0))[0] < bounds[p][0][0] or latest.get(p, (0, 0))[1] < bounds[p][0][1]}

        yield eventually(shortfalls, lambda short: not short, timeout,
                         "every sent report in the database ((stored, must be, sent) of the plugs short)")
        return dict(latest)


@pytest.mark.usefixtures("pgDatabase")
class FailoverTests(ClusterCase):
    """300 plugs, a routed command, kill -9 of a node, schedules and energy across it."""

    @inlineCallbacks
    def test_routedCommandFailoverEnergyAndSchedules(self) -> Any:
        cluster = self.cluster
        a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
        fleet = yield self.startFleet(300)
        for node in (a, b, c):
            self.assertGreater(len(fleet.on(node.ip)), 50, f"DNS spread: {node.name} has too few plugs")
        # The cluster agrees on who holds which plug (leases) before commands are routed.
        yield eventually(a.client.nodes, lambda doc: {n["name"]: n["plugs"] for n in doc["nodes"]} == {
            n.name: len(fleet.on(n.ip)) for n in (a, b, c)}, 15, "the leases to match the connections")

        # A command through node a to a plug on node c is confirmed, and the plug really switched.
        target = fleet.on(c.ip)[0]
        state = "off" if target.relay else "on"
        started = time.monotonic()
        doc = yield a.client.switch(target.id, state)
        routedTime = time.monotonic() - started
        self.assertEqual(doc["relay"], state)
        self.assertEqual(target.relay, state == "on")
        self.assertLess(routedTime, 5.0)

        # Schedules due after the kill: on six of b's plugs (they must run on the new owner) and on two
        # of a's and c's; each switches its plug to the other state.
        due = datetime.now(timezone.utc) + timedelta(seconds=SCHEDULE_AFTER_KILL + 2)
        at = due.strftime("%H:%M:%S")
        scheduled = fleet.on(b.ip)[:6] + fleet.on(a.ip)[1:3] + fleet.on(c.ip)[1:3]
        wanted = {p.id: not p.relay for p in scheduled}
        schedules = {}
        for plug in scheduled:
            found = yield a.client.addSchedule(plug.id, "on" if wanted[plug.id] else "off", at, "daily")
            schedules[plug.id] = found["id"]

        # kill -9 of node b.
        onB = fleet.on(b.ip)
        before = yield inBatches(a.client, "getPlug", [p.id for p in onB])
        killedAt = b.kill9()
        yield waitFor(lambda: all(p.loggedIn and p.node in (a.ip, c.ip) for p in onB), timeout=FAILOVER_BOUND,
                      what="b's plugs to reconnect to a or c")
        reconnected = time.monotonic() - killedAt
        pending = {p.id for p in onB}
        errors: dict[str, str] = {}

        @inlineCallbacks
        def refreshPending() -> Any:
            results = yield inBatches(a.client, "refresh", sorted(pending))
            pending.difference_update(ref for ref, r in results.items() if not isinstance(r, Exception))
            errors.update({ref: repr(r) for ref, r in results.items() if isinstance(r, Exception)})
            return f"{len(pending)} not yet, e.g. {[errors[p] for p in sorted(pending)[:3]]}" if pending else True

        yield eventually(refreshPending, lambda r: r is True, FAILOVER_BOUND - (time.monotonic() - killedAt),
                         "b's plugs commandable through a")
        commandable = time.monotonic() - killedAt
        self.assertLessEqual(commandable, FAILOVER_BOUND)

        # Lifetime energy carries on: never below what it was before the kill, but for the reports b had
        # not yet written when it died (sent to it in its last UNSURE seconds: nobody was told they were kept).
        after = yield inBatches(a.client, "getPlug", [p.id for p in onB])
        for plug in onB:
            unsure = sum(ws for at, node, ws in plug.reports if node == b.ip and at >= killedAt - UNSURE) / 3600.0
            self.assertGreaterEqual(lifetimeWh(after[plug.id]) + unsure + 1e-3, lifetimeWh(before[plug.id]),
                                    f"{plug.id}: reports {[(round(at - killedAt, 2), node, ws) for at, node, ws in plug.reports]}")

        # `vesyncctl nodes` shows b dead, and `vesyncctl doctor` names it, with the database reachable.
        cluster = yield eventually(a.client.nodes, lambda doc: [n["name"] for n in doc["nodes"] if not n["alive"]]
                                   == ["b"], 10, "b taken for dead")
        table = formatNodes(cluster)
        self.assertIn("DEAD", next(line for line in table.splitlines() if line.startswith("b ")))
        findings = {check.name: check for check in clusterChecks((yield a.client.info()))}
        self.assertEqual(findings["database"].level.value, "OK")
        self.assertEqual(findings["cluster nodes"].level.value, "WARN")
        self.assertIn(": b;", findings["cluster nodes"].message)
        # The same as a user runs it: the installed vesyncctl against node a's state directory.
        shown = yield deferToThread(subprocess.run, [str(Path(sys.executable).with_name("vesyncctl")), "nodes",
                                                     "--state-dir", str(a.stateDir)],
                                    capture_output=True, text=True, timeout=30)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("DEAD", next(line for line in shown.stdout.splitlines() if line.startswith("b ")))

        # Each schedule ran once: the plug switched, by exactly one relay command (what the plug itself
        # received, across its connections to b and then a or c), also a moment after the due time.
        yield waitFor(lambda: all(p.relay == wanted[p.id] for p in scheduled), timeout=SCHEDULE_AFTER_KILL + 15,
                      what="every schedule to switch its plug")
        yield waitFor(lambda: time.time() > due.timestamp() + 2.0, timeout=10, what="two seconds past the due time")
        relayCommands = {p.id: [x for x in p.commands if x != "getRuntime"] for p in scheduled}
        self.assertEqual({k: len(v) for k, v in relayCommands.items()}, {p.id: 1 for p in scheduled}, relayCommands)
        # ... and the switch history never holds a schedule's run twice (rows may still be on their way).
        history = dbQuery(self.databaseUrl, "SELECT plug, cause, COUNT(*) FROM switches WHERE plug = ANY(%s)"
                          " AND cause LIKE 'schedule:%%' GROUP BY plug, cause HAVING COUNT(*) > 1",
                          [p.id for p in scheduled])
        self.assertEqual(history, [])

        # No report counted twice: the database holds every report the plugs sent, except those sent to b
        # from one second before its death (never acknowledged), and never more.
        stored = yield self.flushedEnergy(fleet, lambda at, node: node == b.ip and at >= killedAt - UNSURE)
        # ... and the owner's lifetime figure is the database's sum (no report added twice in memory);
        # energy_lifetime_kwh has 6 decimals (0.001 Wh).
        sample = [p.id for p in fleet.plugs[:60]]

        @inlineCallbacks
        def lifetimesAndSums() -> Any:
            from twisted.internet.threads import deferToThread

            docs = yield inBatches(a.client, "getPlug", sample)
            rows = yield deferToThread(dbQuery, self.databaseUrl, "SELECT plug, SUM(ws) FROM reports"
                                       " WHERE plug = ANY(%s) GROUP BY plug", sample)
            sums = {plug: int(ws) / 3600.0 for plug, ws in rows}
            return {ref: (round(lifetimeWh(docs[ref]), 4), round(sums.get(ref, 0.0), 4)) for ref in sample
                    if isinstance(docs[ref], dict) and abs(lifetimeWh(docs[ref]) - sums.get(ref, 0.0)) > 0.0011}

        yield eventually(lifetimesAndSums, lambda differ: not differ, 10,
                         "each owner's lifetime energy to equal the database's sum (memory, database)")
        self.figures = {"routed_s": routedTime, "reconnected_s": reconnected, "commandable_s": commandable}


@pytest.mark.usefixtures("pgDatabase")
class DatabaseRestartTests(ClusterCase):
    """The database restarted under load loses nothing acknowledged."""

    @inlineCallbacks
    def outage(self, fleet: Fleet) -> Any:
        """Stop the database; while it is down rename and switch ten plugs through nodes a and c; once node a
        says the database is unreachable, start it again.  Fires with the acknowledged renames
        {plug: alias} and switches {plug: (state, time asked)}."""
        a, c = self.cluster.node("a"), self.cluster.node("c")
        self.postgres.stop()
        self.addCleanup(lambda: self.postgres.process is None and self.postgres.start())
        renamed: dict[str, str] = {}
        switched: dict[str, tuple[str, float]] = {}
        for i, plug in enumerate(fleet.plugs[:10]):
            client = (a if i % 2 else c).client
            try:
                yield client.rename(plug.id, f"lamp-{i}")
                renamed[plug.id] = f"lamp-{i}"
            except Exception:
                pass
            state = "off" if plug.relay else "on"
            asked = time.time()
            try:
                doc = yield client.switch(plug.id, state)
                if doc["relay"] == state:
                    switched[plug.id] = (state, asked)
            except Exception:
                pass
        yield eventually(a.client.nodes, lambda doc: (doc.get("database") or {}).get("reachable") is False,
                         10, "`vesyncctl nodes` on node a to say the database is unreachable")
        self.postgres.start()
        self.assertTrue(renamed and switched, "nothing was acknowledged while the database was down")
        # Under load until the cluster is whole again: the database read and every plug leased (a plug's
        # reports wait for its stored row to be read after a take-over; a plug gone before that would take
        # reports nobody ever acknowledged with it).
        yield eventually(a.client.nodes, lambda doc: (doc.get("database") or {}).get("reachable") is True
                         and doc.get("plugs") == len(fleet.plugs) and doc.get("alive") == 3, 20,
                         "the database read again and every plug leased")
        return renamed, switched

    @inlineCallbacks
    def test_databaseRestartLosesNothingAcknowledged(self) -> Any:
        """60 plugs reporting through the outage: every report they sent, every acknowledged rename and every
        acknowledged switch (in the switch history) is in the database afterwards, each report once."""
        fleet = yield self.startFleet(60)
        renamed, switched = yield self.outage(fleet)
        for plugId, (state, _) in switched.items():
            self.assertEqual(next(p.relay for p in fleet.plugs if p.id == plugId), state == "on")
        yield self.flushedEnergy(fleet, timeout=25)
        aliases = dict(dbQuery(self.databaseUrl, "SELECT id, alias FROM plugs WHERE id = ANY(%s)", list(renamed)))
        self.assertEqual(aliases, renamed)

        # The switch history retries with a doubling backoff (1 s up to 60 s): after an outage of a few
        # seconds its next try comes at most about as long again after the database is back.
        def missing() -> Any:
            rows = deferToThread(dbQuery, self.databaseUrl, "SELECT plug, relay, cause, at FROM switches"
                                 " WHERE plug = ANY(%s)", list(switched))
            return rows.addCallback(lambda found: sorted(
                plugId for plugId, (state, asked) in switched.items()
                if not any(p == plugId and bool(r) == (state == "on") and c == "command" and at >= asked - 1.0
                           for p, r, c, at in found)))

        yield eventually(missing, lambda plugs: not plugs, 30, "every acknowledged switch in the switch history",
                         every=0.5)
