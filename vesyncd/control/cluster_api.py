"""
The C{nodes} request of the control plane: the cluster as this node sees it, as one JSON document.

The cluster's view (C{vesyncd.cluster.nodes.ClusterView}) is given to the control plane as a plain object:
this package does not import the cluster package (docs/architecture.md), it reads the view's documented
attributes: C{nodeName}; C{nodes()}, objects (or dicts) with C{name}, C{address}, C{plug_address},
C{age} (of the heartbeat), C{alive}, C{plugs} (leases held) and C{this}; C{leases()}, objects with
C{node}, C{age} (since the lease was taken) and C{expires}; C{status()} with C{read_age_s} and
C{heartbeat_failures} (how fresh this node's last read of the shared database is); and, when the view
offers them, C{database} and C{broker} status.  Everything read is turned into plain JSON values here, strings cut to
L{MAX_TEXT} characters and the nodes to L{MAX_NODES}, so what a node wrote in the shared database cannot
swell the answer past one AMP value.

Shape (docs/scaling.md)::

    {"node": "a", "nodes": [{"name", "address", "plug_address", "heartbeat_age", "alive", "plugs",
                             "leases", "lease_age_max", "lease_expires_in_min", "self"}, ...],
     "alive": 2, "dead": 1, "plugs": 300, "listed": 3,
     "database": {...} or null, "broker": {...} or null}
"""

from __future__ import annotations

import math
from typing import Any

#: Nodes listed at most (a cluster is a handful); L{fitCluster} cuts further to one AMP value.
MAX_NODES = 128
#: Longest text kept from a node's row.
MAX_TEXT = 100

#: JSON field and the attribute or key names a view may use for it.
_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "address": ("address",),
    "plug_address": ("plug_address", "plugAddress"),
    "heartbeat_age": ("heartbeat_age", "heartbeatAge", "age"),
    "alive": ("alive",),
    "plugs": ("plugs", "plug_count", "plugCount", "owned"),
    "leases": ("leases", "lease_count", "leaseCount"),
    "lease_age_max": ("lease_age_max", "leaseAgeMax", "oldest_lease_age", "oldestLeaseAge"),
    "renewals": ("renewals", "lease_renewals", "leaseRenewals"),
    "routed": ("routed", "routed_commands", "routedCommands"),
    "routed_failed": ("routed_failed", "routedFailed", "routed_failures", "routedFailures"),
}


def _read(thing: Any, names: tuple[str, ...]) -> Any:
    """The first of C{names} that C{thing} has, as a key or an attribute (called if it is a method)."""
    for name in names:
        if isinstance(thing, dict):
            if name in thing:
                return thing[name]
        elif hasattr(thing, name):
            value = getattr(thing, name)
            return value() if callable(value) else value
    return None


def plainJSON(value: Any, depth: int = 0) -> Any:
    """C{value} as plain, bounded JSON: text cut, finite numbers only, nesting and lengths bounded."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if depth >= 3:
        return None
    if isinstance(value, dict):
        return {str(k)[:MAX_TEXT]: plainJSON(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, (list, tuple)):
        return [plainJSON(v, depth + 1) for v in list(value)[:64]]
    return str(value)[:MAX_TEXT]


def nodeJSON(node: Any, me: str | None) -> dict[str, Any]:
    """One node's row as JSON; C{self} is true for the node answering."""
    doc = {key: plainJSON(_read(node, names)) for key, names in _FIELDS.items()}
    leases = doc["leases"]
    if isinstance(leases, list):
        # A list of lease rows or ages: the count, and the oldest age when the rows say.
        ages = [x if isinstance(x, (int, float)) else plainJSON(_read(x, ("age", "lease_age")))
                for x in leases]
        ages = [a for a in ages if isinstance(a, (int, float)) and not isinstance(a, bool)]
        doc["leases"] = len(leases)
        if doc["lease_age_max"] is None and ages:
            doc["lease_age_max"] = max(ages)
    doc["alive"] = bool(doc["alive"])
    this = _read(node, ("this", "self"))
    doc["self"] = bool(this) if this is not None else (me is not None and doc["name"] == me)
    return doc


def _leaseFigures(view: Any) -> dict[str, dict[str, Any]]:
    """Per node: leases held, the oldest one's age (held longest) and the soonest expiry in seconds."""
    figures: dict[str, dict[str, Any]] = {}
    try:
        leases = list(_read(view, ("leases",)) or [])
    except Exception:
        return figures
    for lease in leases:
        node = _read(lease, ("node",))
        age = _read(lease, ("age", "age_s"))
        expires, since = _read(lease, ("expires",)), _read(lease, ("since",))
        if not isinstance(node, str) or not isinstance(age, (int, float)):
            continue
        f = figures.setdefault(node[:MAX_TEXT], {"leases": 0, "lease_age_max": 0.0, "lease_expires_in_min": None})
        f["leases"] += 1
        f["lease_age_max"] = max(f["lease_age_max"], float(age))
        if isinstance(expires, (int, float)) and isinstance(since, (int, float)):
            left = float(expires) - (float(since) + float(age))  # now = since + age
            if f["lease_expires_in_min"] is None or left < f["lease_expires_in_min"]:
                f["lease_expires_in_min"] = left
    return figures


def _database(view: Any) -> Any:
    """The view's own database status, else one told by how fresh its reads of the shared database are."""
    own = _read(view, ("database", "databaseStatus"))
    if own is not None:
        return own
    status = _read(view, ("status",))
    if not isinstance(status, dict) or "read_age_s" not in status:
        return None
    settings = getattr(view, "settings", None)
    timeout = getattr(settings, "nodeTimeout", None)
    age = status.get("read_age_s")
    doc: dict[str, Any] = {"read_age_s": age, "heartbeat_failures": status.get("heartbeat_failures")}
    if isinstance(timeout, (int, float)):
        doc["reachable"] = isinstance(age, (int, float)) and age <= timeout
        if not doc["reachable"]:
            doc["error"] = ("never read" if age is None else f"last read {age:.0f} s ago") + \
                f", {status.get('heartbeat_failures') or 0} heartbeat(s) failed"
    return doc


def clusterJSON(view: Any) -> dict[str, Any]:
    """The C{nodes} answer from a cluster view (see the module's docstring)."""
    me = plainJSON(_read(view, ("nodeName", "node_name", "name")))
    nodes = [nodeJSON(n, me) for n in list(_read(view, ("nodes",)) or [])[:MAX_NODES]]
    nodes.sort(key=lambda n: str(n["name"]))
    leases = _leaseFigures(view)
    for node in nodes:
        found = leases.get(str(node["name"]))
        if found is not None:
            node["leases"] = found["leases"]
            node["lease_age_max"] = round(found["lease_age_max"], 3)
            node["lease_expires_in_min"] = (None if found["lease_expires_in_min"] is None
                                            else round(found["lease_expires_in_min"], 3))
        elif node["leases"] is None and isinstance(node["plugs"], int):
            node["leases"] = node["plugs"]
    alive = sum(1 for n in nodes if n["alive"])
    plugs = sum(n["plugs"] for n in nodes if isinstance(n["plugs"], int) and not isinstance(n["plugs"], bool))
    return {
        "node": me,
        "nodes": nodes,
        "listed": len(nodes),
        "alive": alive,
        "dead": len(nodes) - alive,
        "plugs": plugs,
        "database": plainJSON(_database(view)),
        "broker": plainJSON(_read(view, ("broker", "brokerStatus"))),
    }


def fitCluster(doc: dict[str, Any], fits: Any) -> dict[str, Any]:
    """C{doc} with its node list halved until C{fits(doc)} (the totals still count every node listed before)."""
    while doc["nodes"] and not fits(doc):
        doc = dict(doc, nodes=doc["nodes"][: len(doc["nodes"]) // 2])
    return doc


def clusterSummary(view: Any) -> dict[str, Any]:
    """The short form published in C{info} (for the doctor): totals, each node's name and liveness, and the
    database's and broker's status."""
    doc = clusterJSON(view)
    doc["nodes"] = [{"name": n["name"], "alive": n["alive"], "self": n["self"]} for n in doc["nodes"]]
    return doc
