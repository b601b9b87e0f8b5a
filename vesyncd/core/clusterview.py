"""
The cluster's read-only seam for the front ends: L{ClusterView} and the values it gives, L{NodeInfo} and
L{LeaseInfo}.

It lives in the network-free core so that the control plane, the web front end and the DNS responder can
name these types without importing the cluster package (docs/architecture.md);
L{vesyncd.cluster.nodes.NodeDirectory} provides it.  Every call is synchronous and answers from what the
node last read from the shared database (each heartbeat), so none waits for the database.

What other nodes wrote in the shared database is hostile input: names and addresses may be any length and
hold any character, so a front end cuts and escapes them before showing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


@dataclass(frozen=True)
class NodeInfo:
    """One node as last read from the database (see L{ClusterView.nodes})."""

    #: The node's name (C{--node}).
    name: str
    #: The address it advertises for plugs (DNS answers), e.g. C{"192.168.1.10"}, or None.
    address: str | None
    #: Its plug listener as C{host:port}, or None.
    plug_address: str | None
    #: POSIX time the node started, and of its latest heartbeat.
    started: float
    heartbeat: float
    #: Seconds since its latest heartbeat, when the table was read.
    age: float
    #: True while its heartbeat is younger than three heartbeat intervals.
    alive: bool
    #: Plugs it holds a lease for (live or lapsed, not yet taken over).
    plugs: int
    #: True for the node this daemon is.
    this: bool

    def toJSON(self) -> dict[str, Any]:
        """The node as JSON (C{status()}'s C{nodes})."""
        return {"name": self.name, "address": self.address, "plug_address": self.plug_address,
                "started": self.started, "heartbeat": self.heartbeat, "age_s": round(self.age, 3),
                "alive": self.alive, "plugs": self.plugs, "this": self.this}


@dataclass(frozen=True)
class LeaseInfo:
    """One plug's lease as last read: the plug's id, the node holding it, when it lapses (POSIX time, the
    holder's latest heartbeat counted), since when it is held (POSIX time), and its age in seconds (so the
    reading's time is C{since + age})."""

    plug: str
    node: str
    expires: float
    since: float
    age: float

    def toJSON(self) -> dict[str, Any]:
        """The lease as JSON."""
        return {"plug": self.plug, "node": self.node, "expires": self.expires, "since": self.since,
                "age_s": round(self.age, 3)}


class ClusterView(Interface):
    """What front ends, metrics and the DNS responder may read about the cluster (all synchronous,
    from the values read every heartbeat; C{refresh} reads them now)."""

    nodeName = Attribute("This node's name (C{--node}), a str.")

    def nodes() -> list[NodeInfo]:
        """Every node with a row in the database (this one included), by name, with its heartbeat age,
        liveness and number of leases."""

    def liveAddresses() -> list[str]:
        """The advertised addresses (C{NodeInfo.address}) of the live nodes, by node name, without
        duplicates; this node's own is always among them when it has one (for DNS answers)."""

    def leases(node: str | None = None) -> list[LeaseInfo]:
        """The plug leases (of one node, if given), by plug id."""

    def ownerOf(plugId: str) -> str | None:
        """The node holding the plug's lease, or None."""

    def status() -> dict[str, Any]:
        """C{{"node", "nodes": [NodeInfo.toJSON()...], "leases_held", "read_age_s", "heartbeat_failures"}} for
        C{info} and the doctor; C{read_age_s} is None before the first successful read."""

    def counters() -> dict[str, int]:
        """This node's cluster counters, flat, for C{/metrics}: C{heartbeat_failures}, C{duplicate_name};
        lease C{claims}, C{taken_over}, C{releases}, C{renewals}, C{lost}, C{lapsed}, C{failures}; link
        C{requests_sent}, C{requests_served}, C{timeouts}, C{dropped}, ...; C{routed}, C{routed_failed},
        C{resyncs}."""

    def database() -> dict[str, Any]:
        """How this node reaches the shared database, judged by how fresh its last read is:
        C{{"read_age_s": seconds or None (never read), "heartbeat_failures": int, "reachable": bool}}, plus
        C{"error"} (one sentence) when not reachable, that is when no read succeeded within the node
        timeout (three heartbeat intervals)."""

    def broker() -> dict[str, Any] | None:
        """C{{"connected": bool}}: whether this node's own connection to the MQTT broker is up now; None
        when the view is not told (no broker link)."""

    def refresh() -> Deferred:
        """Read the nodes and leases now; fires with L{nodes}."""
