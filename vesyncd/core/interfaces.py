"""
The seams between vesyncd's network-free core and everything around it.

Data flows one way: a plug connection decodes frames and hands typed messages to the core
(L{vesyncd.core.hub.Hub}); the core emits L{vesyncd.core.hub.Event}s that front ends (control port, PB,
MQTT, HTTP) subscribe to; commands go from a front end to the core, and from the core to the
plug through L{IPlugConnection}.  No front end talks to another, and none reaches into a protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from typing import Sequence

    from twisted.internet.defer import Deferred

    from vesyncd.core.model import EnergySummary, PlugState


class IPlugConnection(Interface):
    """What the core needs from one plug's network connection."""

    peer = Attribute("The plug's address as text, e.g. '192.168.1.23:50123', for logs and state.")

    def send(payload: bytes) -> None:
        """Send one compact JSON message to the plug (the connection encrypts it if it must)."""

    def disconnect(reason: str) -> None:
        """Close the connection; C{reason} is logged.  Closing twice is harmless."""


class IEnergyLedger(Interface):
    """Where energy reports go and where today's and lifetime figures come from."""

    def record(plugId: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Account one C{/report} received at POSIX time C{at}."""

    def summary(plugId: str, now: float) -> "EnergySummary":
        """Today's and lifetime watt-hours for a plug (zeros for an unknown plug)."""

    def lifetime(plugId: str) -> float:
        """A plug's lifetime watt-hours alone (zero for an unknown plug): L{summary} without working
        out today, for reading every plug at once."""

    def history(plugId: str, period: str, value: str) -> "Deferred[dict]":
        """Energy buckets of one period, in the configured time zone.

        C{period} is C{"day"} (C{value} C{"YYYY-MM-DD"}, one bucket per hour), C{"month"}
        (C{"YYYY-MM"}, per day) or C{"year"} (C{"YYYY"}, per month).  Fires with
        C{{"plug", "period", "value", "unit", "timezone", "buckets": [{"start": ISO 8601 with
        offset, "label", "wh"}], "total_wh"}}; every bucket of the period is present (zero when
        nothing was used).  Fails with C{ValueError} for a malformed period or value.
        """

    def hourly(plugId: str, startTs: float, endTs: float) -> "Deferred[list[tuple[float, float]]]":
        """The plug's hourly rows C{(hourStart, wh)} whose UTC hour starts in C{[startTs, endTs)}, oldest
        first; hours with nothing recorded have no row.  C{hourStart} is POSIX seconds, a multiple of 3600."""

    def hourlyMany(plugIds: "Sequence[str]", startTs: float, endTs: float) -> "Deferred[dict[str, list]]":
        """L{hourly} of many plugs in one read: plug id -> rows (plugs without a row are left out)."""

    def forget(plugId: str) -> None:
        """Drop what is kept for a plug that the user forgot."""


class ISessionOwner(Interface):
    """What a plug session (L{vesyncd.core.session.PlugSession}) may ask of the registry that owns it."""

    clock = Attribute("The injected IReactorTime every timer and timestamp comes from.")

    def count(counter: str) -> None:
        """Add one to a daemon-wide counter (shown by C{info} and the metrics)."""

    def plugEvent(kind: str, plug: "PlugState", at: float, **data: Any) -> None:
        """Tell subscribers that something happened to C{plug} (nothing for a plug held for approval)."""

    def relayChanged(plug: "PlugState", relay: "bool | None", cause: str, at: float) -> None:
        """The plug reported its relay; note and announce it if it changed."""

    def reported(plug: "PlugState", peer: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Account an energy C{/report} from C{peer}, unless it claims more than could have been used."""

    def snapshot(plug: "PlugState") -> "PlugState":
        """A copy of a plug's state for a command's result."""

    def sessionEnded(session: Any, why: str, replaced: bool) -> None:
        """The session's connection is gone; unless C{replaced}, its plug is offline."""


class IClusterSeam(Interface):
    """What the hub asks of the cluster it is a node of (C{--node}; a single node has none).

    The hub stays network-free: it says which plugs log in and leave here, and hands commands for
    plugs connected to another node to L{route}; the cluster (L{vesyncd.cluster}) keeps the leases
    and talks to the broker, and calls the hub back (L{vesyncd.core.hub.Hub.adopted},
    L{vesyncd.core.hub.Hub.dropLocal}, L{vesyncd.core.hub.Hub.remoteEvent}, ...).
    """

    nodeName = Attribute("This node's name.")

    def claimed(plugId: str) -> None:
        """A plug logged in here: take its lease (a new connection always wins) and tell the node
        that held it to drop its stale session.  Unless this node already held the lease, the hub
        holds the plug's reports until the cluster calls C{hub.adopted(plugId, stored)} with the
        plug's stored row (so energy another node counted is not counted twice)."""

    def released(plugId: str) -> None:
        """The plug's connection here ended (not replaced): give up its lease if this node holds it."""

    def route(node: str, plugId: str, kind: str, cause: str) -> "Deferred":
        """Carry out a command (C{on}, C{off}, C{toggle}, C{refresh}) on the node that holds the plug;
        fires with its confirmed L{PlugState} or fails with the error that node's hub raised."""

    def forward(node: str, plugId: str, change: str, value: Any) -> None:
        """Apply a change made here (C{alias}, C{power_on}, C{forget}, C{clear_conflict}) on the node
        that holds the plug too, so its state and store agree (fire and forget, logged on failure)."""
