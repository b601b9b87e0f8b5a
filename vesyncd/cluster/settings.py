"""
The cluster's options: C{--node NAME} and the lease and heartbeat timings, checked once into a
frozen L{ClusterSettings} (C{config["cluster-settings"]}, None on a single node).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from twisted.python import usage

#: A node name: a letter or digit, then up to 31 letters, digits, '.', '_' or '-' (it is an MQTT topic level).
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def validNodeName(name: Any) -> bool:
    """True for a usable node name (see L{NODE_NAME})."""
    return isinstance(name, str) and NODE_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class ClusterSettings:
    """This node's name and the timings of leases, heartbeats and routed commands."""

    #: This node's name, unique among the nodes sharing the database.
    node: str
    #: Seconds a plug lease lasts after its node's latest heartbeat (each heartbeat renews every lease of
    #: the node at once).
    lease: float = 15.0
    #: Seconds between this node's heartbeats (its row in C{nodes}, and the read of the others).
    heartbeat: float = 5.0
    #: Seconds a routed command may take beyond the plug's own command timeout (broker round trip).
    routeMargin: float = 2.0

    def __post_init__(self) -> None:
        if not validNodeName(self.node):
            raise ValueError(f"--node {str(self.node)[:40]!r}: 1-32 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
        for name, option in (("lease", "--node-lease"), ("heartbeat", "--node-heartbeat")):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < 3600:
                raise ValueError(f"{option} ({value!r}) must be a number of seconds between 0 and 3600")
        if self.lease < 1.5:
            raise ValueError(f"--node-lease ({self.lease:g}) must be at least 1.5 seconds")
        if self.heartbeat > self.lease / 2:
            raise ValueError(f"--node-heartbeat ({self.heartbeat:g}) must be at most half of --node-lease "
                             f"({self.lease:g}): heartbeats renew the leases, and one may be missed")

    @property
    def renewEvery(self) -> float:
        """Seconds between passes comparing this node's leases with its connected plugs: a third of the lease."""
        return self.lease / 3.0

    @property
    def nodeTimeout(self) -> float:
        """Seconds after its last heartbeat a node is taken for dead: three heartbeats."""
        return 3.0 * self.heartbeat


class ClusterOptions:
    """The cluster's options, part of the daemon's L{vesyncd.tap.Options}."""

    optParameters = [
        ["node", None, None,
         "Run as this node of a cluster (needs --mqtt and a database shared by the nodes): plugs are "
         "leased to the node they connect to, commands and events cross nodes over the broker."],
        ["node-lease", None, 15.0, "Seconds a plug's lease lasts after its node's latest heartbeat (with --node).",
         float],
        ["node-heartbeat", None, 5.0, "Seconds between a node's heartbeats in the database (with --node).", float],
    ]


def checkOptions(config: Any) -> None:
    """Build C{config["cluster-settings"]} from C{--node} (None without it); L{usage.UsageError} says what to fix."""
    config["cluster-settings"] = None
    node = config.get("node")
    if not node:
        return
    if not config.get("mqtt"):
        raise usage.UsageError("--node needs --mqtt: the nodes of a cluster route commands and events over "
                               "an MQTT broker (e.g. --mqtt mqtt://broker.lan)")
    try:
        config["cluster-settings"] = ClusterSettings(str(node), lease=float(config.get("node-lease") or 15.0),
                                                     heartbeat=float(config.get("node-heartbeat") or 5.0))
    except ValueError as e:
        raise usage.UsageError(str(e)) from None
