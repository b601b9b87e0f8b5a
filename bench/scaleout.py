"""
Scale-out figures (docs/scaling.md): ``python -m bench.scaleout [--plugs N] [--full]``
(or ``python -m bench --only scaleout``).

On loopback, with a private PostgreSQL (tests.pgserver) and mosquitto (tests.mqtt_helpers), and plugs that
find their node through the nodes' DNS responders (tests.scaleout_helpers):

 1. PostgreSQL write load per 1,000 plugs: one node (or the cluster's three) on PostgreSQL, N plugs at
    C{--speed} times the real cadence for C{--window} seconds; transactions (C{pg_stat_database}) and rows
    written per table (C{pg_stat_user_tables}) per second; per 1,000 plugs at the real cadence (a report
    every 180 s) the plugs' traffic is scaled down by the speed, the cluster's upkeep (leases, heartbeats,
    at the default lease and heartbeat) is not.
 2. Routed command p99 next to a local one's, in the same run: C{refresh} through node a's control port
    of plugs held by a (local) and by c (routed over the broker), alternating.
 3. Failover after C{kill -9} of node b: seconds until every plug it held is connected to another node,
    and until every one answers a command through node a.  300 plugs (3,000 with C{--full}).

Steps 2 and 3 need the cluster (C{--node}); when this vesyncd has not got it, they say so and step 1 runs
on a single node.  Prints one line per figure with the command that produced it, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

#: Seconds between a plug's reports at the real cadence (a keep-alive every 180 s, a report after each).
REAL_REPORT_INTERVAL = 180.0


def percentile(values: list[float], q: float) -> float | None:
    """The C{q} quantile (0..1) of C{values} by nearest rank, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


#: Tables whose writes follow the plugs' own traffic (reports and their rollups, plug rows, switches); the
#: others (nodes, leases) are the cluster's upkeep, paced by the heartbeat and the lease, not by the plugs.
TRAFFIC_TABLES = ("reports", "hours", "days", "months", "plugs", "switches", "baselines", "automation")


def pgStats(url: str) -> dict[str, Any]:
    """The database's counters now: transactions, rows written per table, and the time read."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        xacts = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                             " WHERE datname = current_database()").fetchone()[0]
        tables = {name: float(ins + upd + dele) for name, ins, upd, dele in conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables").fetchall()}
    return {"xacts": float(xacts), "tables": tables, "at": time.monotonic()}


def writeLoad(before: dict[str, Any], after: dict[str, Any], plugs: int, speed: float, nodes: int) -> dict[str, Any]:
    """Rows and transactions per second over the window, raw, and rows per 1,000 plugs at the real cadence:
    the plugs' traffic scaled down by C{speed}, the cluster's upkeep (leases, heartbeats) as it is."""
    seconds = after["at"] - before["at"]
    perTable = {name: (after["tables"].get(name, 0.0) - before["tables"].get(name, 0.0)) / seconds
                for name in after["tables"]}
    traffic = sum(v for k, v in perTable.items() if k in TRAFFIC_TABLES)
    upkeep = sum(v for k, v in perTable.items() if k not in TRAFFIC_TABLES)
    xacts = (after["xacts"] - before["xacts"]) / seconds
    per1000 = 1000.0 / plugs
    return {"seconds": round(seconds, 1), "plugs": plugs, "nodes": nodes, "speed": speed,
            "rows_per_s": round(traffic + upkeep, 1), "xacts_per_s": round(xacts, 1),
            "traffic_rows_per_s": round(traffic, 1), "upkeep_rows_per_s": round(upkeep, 1),
            "rows_per_table_per_s": {k: round(v, 1) for k, v in sorted(perTable.items()) if v},
            "traffic_rows_per_s_per_1000_real": round(traffic / speed * per1000, 2),
            "upkeep_rows_per_s_per_1000": round(upkeep * per1000, 2)}


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the steps on the real reactor; the results as a dict."""
    from twisted.internet import task

    out: dict[str, Any] = {"bench": "scaleout", "command": "python -m bench.scaleout " + shlex.join(args.argv)}

    def main(reactor: Any) -> Any:
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(_steps(args, out, say))

    task.react(main)
    return out


async def _steps(args: argparse.Namespace, out: dict[str, Any], say: Callable[[str], None]) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.task import deferLater

    from tests.fakes import waitFor
    from tests.mqtt_helpers import MOSQUITTO, Broker
    from tests.pgserver import PASSWORD, USER, PostgresServer, serverBinaries
    from tests.scaleout_helpers import Cluster, Fleet, clusterSupported

    bindir = serverBinaries()
    if bindir is None or MOSQUITTO is None:
        out["skipped"] = "needs the PostgreSQL server binaries and mosquitto (Debian packages postgresql, mosquitto)"
        say(f"scaleout: skipped: {out['skipped']}")
        return
    pg = PostgresServer(bindir)
    broker = Broker()
    root = Path(tempfile.mkdtemp(prefix="vesyncd-scaleout-"))
    unsupported = clusterSupported()
    cluster: Cluster | None = None
    fleet: Fleet | None = None
    try:
        pg.init()
        pg.start()
        pg.admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        url = pg.createDatabase()
        await broker.start()
        count = 3 if unsupported is None else 1
        # The default lease and heartbeat (15 s, 5 s): the upkeep's write load is the real one.
        cluster = Cluster(root, url, broker.port, count=count, heartbeat=args.heartbeat, lease=args.lease)
        if unsupported is not None:
            node = cluster.nodes[0]
            for option in ("--node", "--node-heartbeat", "--node-lease", "--mqtt"):
                i = node.command.index(option)
                del node.command[i:i + 2]
            say(f"scaleout: {unsupported}: one node on PostgreSQL, no routed or failover figures")
            out["cluster"] = f"not available: {unsupported}"
            node.start()
            await node.ready()
        else:
            await cluster.start()
        fleet = Fleet(args.plugs, cluster.dnsServers, cluster.plugPort, speed=args.speed)
        started = time.monotonic()
        fleet.start(spread=min(10.0, args.plugs / 300.0))
        await waitFor(lambda: len(fleet.online()) == args.plugs, timeout=60 + args.plugs / 50,
                      what=f"{args.plugs} plugs online")
        say(f"scaleout: {args.plugs} plugs online in {time.monotonic() - started:.1f} s "
            f"({', '.join(f'{n.name}: {len(fleet.on(n.ip))}' for n in cluster.nodes if n.process)})")

        # 1. write load, after the login wave has settled (one report interval at this speed)
        await deferLater(reactor, REAL_REPORT_INTERVAL / args.speed, lambda: None)
        before = pgStats(url)
        first = cluster.nodes[0]
        infoBefore = await first.client.info()
        await deferLater(reactor, args.window, lambda: None)
        load = writeLoad(before, pgStats(url), args.plugs, args.speed, count)
        infoAfter = await first.client.info()
        out["write_load"] = load
        counters = (infoBefore.get("cluster_counters") or {}), (infoAfter.get("cluster_counters") or {})
        if counters[0]:
            held = max(1, len(fleet.on(first.ip)))
            sent = (counters[1].get("events_sent", 0) - counters[0].get("events_sent", 0)) / load["seconds"]
            got = (counters[1].get("events_received", 0) - counters[0].get("events_received", 0)) / load["seconds"]
            out["broker"] = {"events_sent_per_s": round(sent, 1), "events_received_per_s": round(got, 1),
                             "plugs_on_node": held,
                             "events_per_plug_per_s_real": round(sent / held / args.speed, 5)}
            say(f"scaleout: broker traffic of node {first.name} ({held} plugs, {args.speed:g}x): "
                f"{sent:.1f} events/s published, {got:.1f} received from the other nodes; "
                f"{out['broker']['events_per_plug_per_s_real']} events/s per plug at the real cadence"
                f"   [{out['command']}]")
        say(f"scaleout: PostgreSQL write load, {count} node(s), {args.plugs} plugs at {args.speed:g}x for "
            f"{load['seconds']} s: {load['xacts_per_s']} transactions/s, {load['rows_per_s']} rows/s "
            f"({load['traffic_rows_per_s']} from the plugs' traffic, {load['upkeep_rows_per_s']} leases and "
            f"heartbeats; per table {load['rows_per_table_per_s']}); per 1,000 plugs at the real cadence: "
            f"{load['traffic_rows_per_s_per_1000_real']} rows/s of traffic + {load['upkeep_rows_per_s_per_1000']}"
            f" rows/s of upkeep   [{out['command']}]")
        if unsupported is not None:
            return

        a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
        # 2. routed vs local command latency, alternating, sequential (one in flight)
        local = [p.id for p in fleet.on(a.ip)]
        routed = [p.id for p in fleet.on(c.ip)]
        times: dict[str, list[float]] = {"local": [], "routed": []}
        failures = {"local": 0, "routed": 0}
        for i in range(args.commands):
            for kind, ids in (("local", local), ("routed", routed)):
                t0 = time.perf_counter()
                try:
                    await a.client.refresh(ids[i % len(ids)])
                except Exception:
                    failures[kind] += 1
                    continue
                times[kind].append(time.perf_counter() - t0)
        latency = {kind: {"n": len(v), "failed": failures[kind],
                          "p50_ms": round(1000 * (percentile(v, 0.5) or 0), 2),
                          "p99_ms": round(1000 * (percentile(v, 0.99) or 0), 2)} for kind, v in times.items()}
        out["latency"] = latency
        say(f"scaleout: command through node a, {args.commands} each: local p50 {latency['local']['p50_ms']} ms "
            f"p99 {latency['local']['p99_ms']} ms; routed to node c p50 {latency['routed']['p50_ms']} ms p99 "
            f"{latency['routed']['p99_ms']} ms ({failures['routed']} failed)   [{out['command']}]")

        # 3. failover after kill -9 of node b
        onB = fleet.on(b.ip)
        killed = b.kill9()
        await waitFor(lambda: all(p.loggedIn and p.node in (a.ip, c.ip) for p in onB), timeout=120,
                      what="b's plugs to reconnect")
        reconnected = time.monotonic() - killed
        pending = {p.id for p in onB}
        while pending and time.monotonic() - killed < 180:
            batch = sorted(pending)[:12]
            results = await gatherResults([a.client.refresh(ref).addErrback(lambda f: f.value) for ref in batch])
            pending.difference_update(ref for ref, r in zip(batch, results) if not isinstance(r, Exception))
            if pending:
                d: Deferred = deferLater(reactor, 0.05, lambda: None)
                await d
        commandable = time.monotonic() - killed
        out["failover"] = {"plugs_on_b": len(onB), "reconnected_s": round(reconnected, 2),
                           "commandable_s": round(commandable, 2), "never_commandable": len(pending)}
        say(f"scaleout: kill -9 of node b holding {len(onB)} of {args.plugs} plugs: all reconnected in "
            f"{reconnected:.2f} s, all commandable through node a in {commandable:.2f} s"
            f"{f' ({len(pending)} never)' if pending else ''}   [{out['command']}]")
    finally:
        if fleet is not None:
            fleet.stop()
        if cluster is not None:
            cluster.stop()
        broker.cleanup()
        pg.destroy()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options, run, print the JSON line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="3,000 plugs (default 300)")
    p.add_argument("--plugs", type=int, help="plugs (default 300, 3,000 with --full)")
    p.add_argument("--speed", type=float, default=20.0, help="plug timers sped up this much (default 20)")
    p.add_argument("--window", type=float, default=20.0, help="seconds the write load is measured (default 20)")
    p.add_argument("--commands", type=int, default=200, help="local and routed commands each (default 200)")
    p.add_argument("--lease", type=float, default=15.0, help="--node-lease of the nodes (default 15, the daemon's)")
    p.add_argument("--heartbeat", type=float, default=5.0, help="--node-heartbeat of the nodes (default 5)")
    args = p.parse_args(argv)
    args.plugs = args.plugs or (3000 if args.full else 300)
    args.argv = argv
    result = run(args, lambda s: print(s, flush=True))
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
