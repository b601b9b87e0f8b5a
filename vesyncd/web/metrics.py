"""
Prometheus metrics read from the hub at scrape time: nothing is counted twice.

Per-plug series carry C{plug} (the id) and C{alias} labels; daemon-wide counters come from
C{hub.stats}, the DNS responder's counters (when the DNS feature runs) and the web front end.

In a cluster, L{ClusterCollector} adds the cluster's figures with a C{node} label: per node (as this
node reads the shared database) whether it is alive, its heartbeat's age, the plugs it owns and its
leases; and this node's own counters (lease renewals and takeovers, routed commands by result) under
its own name, so the scrapes of every node add up without double counting.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from vesyncd.core.clusterview import ClusterView
from vesyncd.core.hub import Hub

#: hub.stats keys "commands_<result>" become vesyncd_commands_total{result=...}.
COMMAND_PREFIX = "commands_"
FRAME_PREFIXES = ("rejected_", "frames_")


def _countersOf(source: Any) -> dict[str, float]:
    """Numeric counters from a dict-like, a dataclass with C{asDict}, or a plain object."""
    if source is None:
        return {}
    if hasattr(source, "asDict"):
        values = source.asDict()
    elif isinstance(source, dict):
        values = source
    else:
        values = {k: v for k, v in vars(source).items() if not k.startswith("_")}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class HubCollector(Collector):
    """Reads plug state and counters from the hub (and DNS and web counters) on every scrape."""

    def __init__(self, hub: Hub, dns: Any = None, web: Any = None) -> None:
        """C{dns} is an object with C{counters}, or a function returning one (read at scrape time)."""
        self.hub = hub
        self.dns = dns
        self.web = web

    def collect(self) -> Iterable[Metric]:
        """Yield every metric family for one scrape."""
        hub = self.hub
        labels = ["plug", "alias"]
        up = GaugeMetricFamily("vesyncd_plug_up", "1 while the plug is connected.", labels=labels)
        relay = GaugeMetricFamily("vesyncd_plug_relay_on", "1 when the relay is on, 0 when off.", labels=labels)
        power = GaugeMetricFamily("vesyncd_plug_power_watts", "Power drawn at the last reading.", labels=labels)
        volts = GaugeMetricFamily("vesyncd_plug_voltage_volts", "Mains voltage at the last reading.",
                                  labels=labels)
        energy = CounterMetricFamily("vesyncd_plug_energy_watt_hours", "Energy used over the plug's life.",
                                     labels=labels)
        rssi = GaugeMetricFamily("vesyncd_plug_rssi_dbm", "Wi-Fi signal strength reported by the plug.",
                                 labels=labels)
        seen = GaugeMetricFamily("vesyncd_plug_last_seen_timestamp_seconds",
                                 "POSIX time the plug was last heard from.", labels=labels)
        for plug in hub.plugs():
            key = [plug.id, plug.alias or ""]
            up.add_metric(key, 1.0 if plug.online else 0.0)
            if plug.relay is not None:
                relay.add_metric(key, 1.0 if plug.relay else 0.0)
            if plug.power_w is not None:
                power.add_metric(key, plug.power_w)
            if plug.voltage_v is not None:
                volts.add_metric(key, plug.voltage_v)
            energy.add_metric(key, hub.energy(plug.id).lifetime_wh)
            if plug.rssi_dbm is not None:
                rssi.add_metric(key, plug.rssi_dbm)
            if plug.last_seen is not None:
                seen.add_metric(key, plug.last_seen)
        yield from (up, relay, power, volts, energy, rssi, seen)

        status = hub.status()
        stats = status["counters"]
        yield GaugeMetricFamily("vesyncd_plugs_known", "Plugs the daemon knows.", value=status["plugs_known"])
        yield GaugeMetricFamily("vesyncd_plugs_connected", "Plugs connected now.", value=status["plugs_online"])
        yield GaugeMetricFamily("vesyncd_uptime_seconds", "Seconds since the daemon started.",
                                value=status["uptime_s"])
        yield CounterMetricFamily("vesyncd_logins", "Plug logins.", value=stats.get("logins", 0))
        yield CounterMetricFamily("vesyncd_reconnects", "Logins of plugs seen before.",
                                  value=stats.get("reconnects", 0))
        yield CounterMetricFamily("vesyncd_connections", "Plug connections accepted.",
                                  value=stats.get("connections", 0))
        commands = CounterMetricFamily("vesyncd_commands", "Plug commands by result.", labels=["result"])
        for result in ("ok", "timeout", "offline", "unknown", "failed"):
            commands.add_metric([result], stats.get(COMMAND_PREFIX + result, 0))
        for key, value in sorted(stats.items()):
            if key.startswith(COMMAND_PREFIX) and key[len(COMMAND_PREFIX):] not in (
                    "ok", "timeout", "offline", "unknown", "failed"):
                commands.add_metric([key[len(COMMAND_PREFIX):]], value)
        yield commands
        frames = CounterMetricFamily("vesyncd_frames_rejected", "Plug frames refused, by reason.",
                                     labels=["reason"])
        for key, value in sorted(stats.items()):
            for prefix in FRAME_PREFIXES:
                if key.startswith(prefix):
                    frames.add_metric([key[len(prefix):] if prefix == "rejected_" else key], value)
        yield frames

        source = self.dns() if callable(self.dns) else self.dns
        dns = _countersOf(getattr(source, "counters", None)) if source is not None else {}
        if dns:
            family = CounterMetricFamily("vesyncd_dns_events", "DNS responder outcomes (answered, forwarded, "
                                         "refused, malformed, ...).", labels=["event"])
            for key, value in sorted(dns.items()):
                if key != "pending":
                    family.add_metric([key], value)
            yield family
            if "pending" in dns:
                yield GaugeMetricFamily("vesyncd_dns_pending", "DNS queries forwarded and not yet answered.",
                                        value=dns["pending"])

        if self.web is not None:
            yield GaugeMetricFamily("vesyncd_http_event_streams", "Open server-sent event streams.",
                                    value=len(self.web.streams.streams))
            yield GaugeMetricFamily("vesyncd_http_sessions", "Live browser sessions.",
                                    value=len(self.web.auth.sessions))
            yield CounterMetricFamily("vesyncd_http_auth_failures", "HTTP requests with a wrong token.",
                                      value=self.web.auth.failures)
            limits = self.web.limits
            yield GaugeMetricFamily("vesyncd_http_connections", "HTTP connections open now.", value=limits.open)
            yield GaugeMetricFamily("vesyncd_http_connections_limit", "HTTP connections allowed at once.",
                                    value=limits.maxTotal)
            refused = CounterMetricFamily("vesyncd_http_connections_refused",
                                          "HTTP connections closed at once by the caps, by cap.", labels=["reason"])
            for reason in ("total", "per_host"):
                refused.add_metric([reason], limits.refused[reason])
            yield refused
            yield CounterMetricFamily("vesyncd_http_request_timeouts",
                                      "HTTP connections cut because no whole request arrived in time.",
                                      value=limits.headTimeouts)


def _number(value: Any) -> float | None:
    """C{value} as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _one(name: str, helpText: str, node: str, value: float) -> CounterMetricFamily:
    """A counter family with one sample labelled C{node}."""
    family = CounterMetricFamily(name, helpText, labels=["node"])
    family.add_metric([node], value)
    return family


#: Nodes given series at most (label cardinality stays bounded whatever the shared table holds).
MAX_NODE_SERIES = 64


class ClusterCollector(Collector):
    """The cluster's figures from its L{ClusterView}, read at scrape time.

    Per node (at most L{MAX_NODE_SERIES}, names cut to 64 characters: the rows come from the shared
    database): C{vesyncd_cluster_node_up}, C{vesyncd_cluster_node_heartbeat_age_seconds},
    C{vesyncd_cluster_node_plugs} (plugs owned) and C{vesyncd_cluster_node_leases}; a value that is not a
    finite number is left out.  This node's counters (the view's C{counters()}) as
    C{vesyncd_cluster_events_total{node, event}}, and by name C{vesyncd_cluster_lease_renewals_total},
    C{..._lease_takeovers_total}, C{..._routed_commands_total} and C{..._routed_command_failures_total},
    each labelled with this node's name.
    """

    def __init__(self, view: ClusterView) -> None:
        self.view = view

    def collect(self) -> Iterable[Metric]:
        """Yield the cluster's metric families for one scrape."""
        view = self.view
        me = str(view.nodeName)[:64]
        labels = ["node"]
        up = GaugeMetricFamily("vesyncd_cluster_node_up", "1 while the node's heartbeat is fresh.", labels=labels)
        age = GaugeMetricFamily("vesyncd_cluster_node_heartbeat_age_seconds", "Seconds since the node's last "
                                "heartbeat in the database.", labels=labels)
        plugs = GaugeMetricFamily("vesyncd_cluster_node_plugs", "Plugs whose lease the node holds.", labels=labels)
        leases = GaugeMetricFamily("vesyncd_cluster_node_leases", "Leases the node holds.", labels=labels)
        held: dict[str, int] = {}
        for lease in view.leases():
            held[lease.node] = held.get(lease.node, 0) + 1
        for node in view.nodes()[:MAX_NODE_SERIES]:
            name = [str(node.name)[:64]]
            up.add_metric(name, 1.0 if node.alive else 0.0)
            for family, value in ((age, node.age), (plugs, node.plugs), (leases, held.get(node.name, 0))):
                number = _number(value)
                if number is not None:
                    family.add_metric(name, number)
        yield from (up, age, plugs, leases)

        counters = _countersOf(view.counters())
        failures = _number(view.status().get("heartbeat_failures"))
        if failures is not None:
            counters.setdefault("heartbeat_failures", failures)
        events = CounterMetricFamily("vesyncd_cluster_events", "This node's cluster counters (lease renewals, "
                                     "takeovers, routed commands, ...).", labels=["node", "event"])
        for key, value in sorted(counters.items())[:MAX_NODE_SERIES]:
            events.add_metric([me, key[:64]], value)
        yield events
        for name, helpText, key in (
                ("vesyncd_cluster_lease_renewals", "Lease renewals this node made.", "renewals"),
                ("vesyncd_cluster_lease_takeovers", "Leases this node took over from a node that died.", "taken_over"),
                ("vesyncd_cluster_routed_commands", "Commands this node routed to another node's plug.", "routed"),
                ("vesyncd_cluster_routed_command_failures", "Routed commands that failed (the other node "
                 "refused, timed out or was gone).", "routed_failed")):
            if key in counters:
                yield _one(name, helpText, me, counters[key])


def registryFor(hub: Hub, dns: Any = None, web: Any = None) -> CollectorRegistry:
    """A registry holding only vesyncd's collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, dns, web))
    return registry
