"""
The C{nodes} request of the control plane: the cluster as this node sees it, as one JSON document.

It reads the cluster's L{ClusterView} (L{vesyncd.core.clusterview}; this package does not import the cluster
package, docs/architecture.md): C{nodeName}, C{nodes()} (L{NodeInfo}), C{leases()} (L{LeaseInfo}: per node
the count, the oldest lease's age and the soonest expiry), C{database()} and C{broker()}.  Node rows come
from the shared database, which every node writes: strings are cut to L{MAX_TEXT} characters, numbers that
are not finite become null and the nodes are cut to L{MAX_NODES}, so what a node wrote cannot swell the
answer past one AMP value (L{fitCluster} cuts further).

Shape (docs/scaling.md)::

    {"node": "a", "nodes": [{"name", "address", "plug_address", "heartbeat_age", "alive", "plugs",
                             "leases", "lease_age_max", "lease_expires_in_min", "self"}, ...],
     "alive": 2, "dead": 1, "plugs": 300, "listed": 3,
     "database": {...} or null, "broker": {...} or null}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vesyncd.core.clusterview import ClusterView, LeaseInfo, NodeInfo

#: Nodes listed at most (a cluster is a handful); L{fitCluster} cuts further to one AMP value.
MAX_NODES = 128
#: Longest text kept from a node's row.
MAX_TEXT = 100


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


def _text(value: str | None) -> str | None:
    """A node row's text, cut to L{MAX_TEXT} (None stays None)."""
    return None if value is None else str(value)[:MAX_TEXT]


def _seconds(value: float) -> float | None:
    """A number of seconds rounded to the millisecond, or None when it is not a finite number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return round(float(value), 3)
    return None


def _count(value: int) -> int:
    """A count from a row: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass
class _Leases:
    """One node's leases: how many, the oldest one's age and the soonest expiry (seconds from the reading)."""

    count: int = 0
    ageMax: float | None = None
    expiresInMin: float | None = None

    def add(self, lease: LeaseInfo) -> None:
        self.count += 1
        age, left = lease.age, lease.expires - (lease.since + lease.age)  # the reading was at since + age
        if math.isfinite(age) and (self.ageMax is None or age > self.ageMax):
            self.ageMax = age
        if math.isfinite(left) and (self.expiresInMin is None or left < self.expiresInMin):
            self.expiresInMin = left


def _leasesByNode(leases: list[LeaseInfo]) -> dict[str, _Leases]:
    """The leases per holder's name (cut as node names are)."""
    out: dict[str, _Leases] = {}
    for lease in leases:
        out.setdefault(str(lease.node)[:MAX_TEXT], _Leases()).add(lease)
    return out


def nodeJSON(node: NodeInfo, leases: _Leases | None) -> dict[str, Any]:
    """One node's row as JSON with its leases' figures; C{self} is true for the node answering."""
    held = leases or _Leases()
    return {
        "name": _text(node.name) or "",
        "address": _text(node.address),
        "plug_address": _text(node.plug_address),
        "heartbeat_age": _seconds(node.age),
        "alive": bool(node.alive),
        "plugs": _count(node.plugs),
        "leases": held.count,
        "lease_age_max": None if held.ageMax is None else _seconds(held.ageMax),
        "lease_expires_in_min": None if held.expiresInMin is None else _seconds(held.expiresInMin),
        "self": bool(node.this),
    }


def clusterJSON(view: ClusterView) -> dict[str, Any]:
    """The C{nodes} answer from a cluster view (see the module's docstring)."""
    leases = _leasesByNode(view.leases())
    nodes = [nodeJSON(n, leases.get(str(n.name)[:MAX_TEXT])) for n in view.nodes()[:MAX_NODES]]
    nodes.sort(key=lambda n: n["name"])
    alive = sum(1 for n in nodes if n["alive"])
    return {
        "node": _text(view.nodeName),
        "nodes": nodes,
        "listed": len(nodes),
        "alive": alive,
        "dead": len(nodes) - alive,
        "plugs": sum(n["plugs"] for n in nodes),
        "database": plainJSON(view.database()),
        "broker": plainJSON(view.broker()),
    }


def fitCluster(doc: dict[str, Any], fits: Any) -> dict[str, Any]:
    """C{doc} with its node list halved until C{fits(doc)} (the totals still count every node listed before)."""
    while doc["nodes"] and not fits(doc):
        doc = dict(doc, nodes=doc["nodes"][: len(doc["nodes"]) // 2])
    return doc


def clusterSummary(view: ClusterView) -> dict[str, Any]:
    """The short form published in C{info} (for the doctor): totals, each node's name and liveness, and the
    database's and broker's status."""
    doc = clusterJSON(view)
    doc["nodes"] = [{"name": n["name"], "alive": n["alive"], "self": n["self"]} for n in doc["nodes"]]
    return doc
