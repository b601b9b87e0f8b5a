"""
The doctor's checks of what a cluster depends on, from what the daemon reports (C{vesyncctl info}): the
database (with C{--database postgresql://...}: reachable, its schema version) and the MQTT broker
(connected), and in a cluster (C{--node}) the other nodes (any taken for dead).

The daemon's C{info} carries, when it knows them:

 - C{database}: C{{"kind": "postgresql" | "sqlite", "url" (password hidden), "reachable", "schema",
   "schema_expected", "error"}} (C{schema_version} is read as C{schema});
 - C{broker} (or C{mqtt}): C{{"broker": "host:port", "connected", "error"}};
 - C{cluster}: the C{nodes} answer's summary, C{{"node", "alive", "dead", "plugs", "nodes": [...],
   "database", "broker"}} (docs/scaling.md), whose C{database} and C{broker} are used when the top-level
   keys are missing.

A daemon that reports none of these (a single node on SQLite without MQTT) gets no check here.
"""

from __future__ import annotations

from typing import Any

from vesyncd.doctor.report import Check, Level
from vesyncd.escape import printable

#: Dead nodes named in one finding at most.
_DEAD_SHOWN = 5


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def reported(status: dict[str, Any] | None, key: str, *aliases: str) -> dict[str, Any] | None:
    """The daemon's report about C{key} (top level first, then inside C{cluster}), or None."""
    status = status or {}
    for name in (key, *aliases):
        found = _dict(status.get(name))
        if found is not None:
            return found
    return _dict((_dict(status.get("cluster")) or {}).get(key))


def databaseCheck(status: dict[str, Any] | None) -> Check | None:
    """The database as the daemon reaches it; None when the daemon does not say (an older vesyncd)."""
    db = reported(status, "database")
    clustered = _dict((status or {}).get("cluster")) is not None
    if db is None:
        return None
    kind = str(db.get("kind") or "").lower()
    where = printable(db.get("url") or kind or "the database")
    if kind and kind != "postgresql" and clustered:
        return Check("database", Level.FAIL,
                     f"this node is in a cluster but keeps its state in {where}, not a shared PostgreSQL",
                     "start every node with the same --database postgresql://USER@HOST/DB")
    reachable = db.get("reachable", db.get("ok"))
    if reachable is False:
        why = f" ({printable(db['error'])})" if db.get("error") else ""
        if kind == "sqlite":
            return Check("database", Level.FAIL,
                         f"vesyncd cannot write to {where}{why}; plugs keep working and acknowledged writes "
                         "wait in the store's queue, but nothing new is saved",
                         "free disk space and make the state directory writable by the daemon's user")
        return Check("database", Level.FAIL,
                     f"vesyncd cannot reach {where}{why}; plugs keep working and acknowledged writes wait "
                     "in the store's queue, but nothing new is saved",
                     "start PostgreSQL and check the --database URL, the password file and pg_hba.conf "
                     "(`psql URL -c 'select 1'` from this host)")
    schema = _int(db.get("schema", db.get("schema_version")))
    expected = _int(db.get("schema_expected"))
    if schema is not None and expected is not None and schema != expected:
        if schema < expected:
            return Check("database", Level.FAIL,
                         f"{where} has schema version {schema}; this vesyncd needs {expected}",
                         "run `vesyncctl migrate` (or restart one node: it migrates at start-up)")
        return Check("database", Level.WARN,
                     f"{where} has schema version {schema}, newer than this vesyncd's {expected}: "
                     "another node runs a newer vesyncd",
                     "upgrade this node to the version of the others")
    shown = f", schema version {schema}" if schema is not None else ""
    verb = "is written to" if kind == "sqlite" else "is reachable"
    return Check("database", Level.OK, f"{where} {verb}{shown}")


def brokerCheck(status: dict[str, Any] | None) -> Check | None:
    """The MQTT broker's connection; None when the daemon runs no MQTT (and says nothing about one)."""
    broker = reported(status, "broker", "mqtt")
    if broker is None or "connected" not in broker:
        return None
    where = printable(broker.get("broker") or broker.get("url") or "the MQTT broker")
    if broker.get("connected"):
        return Check("mqtt broker", Level.OK, f"connected to {where}")
    clustered = _dict((status or {}).get("cluster")) is not None
    why = f" ({printable(broker['error'])})" if broker.get("error") else ""
    if clustered:
        message = (f"not connected to {where}{why}: commands for plugs on other nodes fail and events "
                   "from other nodes do not arrive; this node's own plugs keep working")
    else:
        message = f"not connected to {where}{why}: Home Assistant does not see the plugs"
    return Check("mqtt broker", Level.FAIL if clustered else Level.WARN, message,
                 "start the broker and check --mqtt (host, port, user, password file, TLS)")


def nodesCheck(status: dict[str, Any] | None) -> Check | None:
    """In a cluster: OK with the node count, WARN naming nodes taken for dead; None when not in a cluster."""
    cluster = _dict((status or {}).get("cluster"))
    if cluster is None:
        return None
    me = printable(cluster.get("node") or "?")
    nodes = [n for n in (cluster.get("nodes") or []) if isinstance(n, dict)]
    dead = [printable(n.get("name") or "?") for n in nodes if not n.get("alive")]
    alive = _int(cluster.get("alive"))
    alive = alive if alive is not None else len(nodes) - len(dead)
    if any(n.get("self") and not n.get("alive") for n in nodes):
        return Check("cluster nodes", Level.FAIL,
                     f"this node ({me}) is taken for dead by the cluster: its heartbeats do not reach the database",
                     "check the database check above and this node's log")
    if dead:
        more = f" and {len(dead) - _DEAD_SHOWN} more" if len(dead) > _DEAD_SHOWN else ""
        return Check("cluster nodes", Level.WARN,
                     f"{len(dead)} node(s) taken for dead: {', '.join(dead[:_DEAD_SHOWN])}{more}; their plugs "
                     "reconnect to the live nodes", "start them again, or leave them: `vesyncctl nodes` lists them")
    plugs = _int(cluster.get("plugs"))
    owned = f", {plugs} plugs owned" if plugs is not None else ""
    return Check("cluster nodes", Level.OK, f"this node is {me}; {alive} node(s) alive{owned}")


def clusterChecks(status: dict[str, Any] | None) -> list[Check]:
    """The database, broker and node checks the daemon's report allows, in that order."""
    return [c for c in (databaseCheck(status), brokerCheck(status), nodesCheck(status)) if c is not None]
