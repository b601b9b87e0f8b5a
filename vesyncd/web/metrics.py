"""
Prometheus metrics read from the hub at scrape time: nothing is counted twice.

Per-plug series carry C{plug} (the id) and C{alias} labels; daemon-wide counters come from
C{hub.stats}, the DNS responder's counters (when the DNS feature runs) and the web front end.

A scrape has two halves (L{Metrics}): reading, on the reactor thread, copies the figures as plain
values; making the text from them can then run in a worker thread, so plugs are answered
meanwhile.  The web front end reads in turns (L{Metrics.readInTurns}): the plugs' figures
L{READ_PER_TURN} plugs per reactor turn, as reading all 10,000 in one turn held every plug up
~12 ms.  The per-plug series (7 per plug: 60,000 lines at 10,000 plugs) are written as text
here (L{plugSeries}) rather than through prometheus_client's families, which build a tuple and a
label dict per sample: 450 ms of CPU at 10,000 plugs, and collector passes that held the
interpreter lock (and so every plug) for up to 27 ms in the rendering thread.  The text is the
same as prometheus_client writes, byte for byte (tests/test_web_metrics.py compares them); the
daemon-wide families still go through prometheus_client.

In a cluster, L{ClusterCollector} adds the cluster's figures with a C{node} label: per node (as this
node reads the shared database) whether it is alive, its heartbeat's age, the plugs it owns and its
leases; and this node's own counters (lease renewals and takeovers, routed commands by result) under
its own name, so the scrapes of every node add up without double counting.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from vesyncd.core.clusterview import ClusterView
from vesyncd.core.hub import Hub
from vesyncd.core.turns import chunksInTurns

#: Plugs whose figures are read per reactor turn by L{HubCollector.readInTurns}.
READ_PER_TURN = 1_000

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


#: The per-plug families: name as written (counters with C{_total}), type, help, and the index of
#: the value in a L{Hub.readings} row (None values are left out).
PLUG_FAMILIES: tuple[tuple[str, str, str, int], ...] = (
    ("vesyncd_plug_up", "gauge", "1 while the plug is connected.", 2),
    ("vesyncd_plug_relay_on", "gauge", "1 when the relay is on, 0 when off.", 3),
    ("vesyncd_plug_power_watts", "gauge", "Power drawn at the last reading.", 4),
    ("vesyncd_plug_voltage_volts", "gauge", "Mains voltage at the last reading.", 5),
    ("vesyncd_plug_energy_watt_hours_total", "counter", "Energy used over the plug's life.", 6),
    ("vesyncd_plug_rssi_dbm", "gauge", "Wi-Fi signal strength reported by the plug.", 7),
    ("vesyncd_plug_last_seen_timestamp_seconds", "gauge", "POSIX time the plug was last heard from.", 8),
)


def labelValue(text: str) -> str:
    """A label value escaped for the text format: backslash, newline and double quote."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def plugSeries(plugs: list[tuple[Any, ...]]) -> str:
    """The text of the L{PLUG_FAMILIES} for L{Hub.readings} rows (labels C{alias}, C{plug} in the
    order prometheus_client sorts them; booleans as 1.0 and 0.0)."""
    labels = [f'{{alias="{labelValue(row[1] or "")}",plug="{labelValue(row[0])}"}} ' for row in plugs]
    lines: list[str] = []
    for name, kind, helpText, index in PLUG_FAMILIES:
        lines.append(f"# HELP {name} {helpText}\n# TYPE {name} {kind}\n")
        for label, row in zip(labels, plugs):
            value = row[index]
            if value is not None:
                lines.append(f"{name}{label}{floatToGoString(float(value))}\n")
    return "".join(lines)


class HubCollector:
    """Reads plug state and counters from the hub (and DNS and web counters) on every scrape."""

    def __init__(self, hub: Hub, dns: Any = None, web: Any = None) -> None:
        """C{dns} is an object with C{counters}, or a function returning one (read at scrape time)."""
        self.hub = hub
        self.dns = dns
        self.web = web

    def read(self) -> Callable[[], bytes]:
        """The scrape's figures as plain values, read now (reactor thread); the returned function
        makes the text from them, in any thread."""
        return self._withDaemon(self.hub.readings())

    def readInTurns(self, clock: IReactorTime, perTurn: int = READ_PER_TURN) -> Deferred:
        """As L{read}, the plugs' figures C{perTurn} plugs per reactor turn (the first at once; at
        most C{perTurn} plugs all in this turn); fires with the function making the text.  A plug
        forgotten meanwhile is left out, one added meanwhile waits for the next scrape."""
        rows: list[tuple[Any, ...]] = []
        reading = chunksInTurns(clock, self.hub.plugsInPlace(), perTurn,
                                lambda plugs: rows.extend(self.hub.readingsOf(plugs)))
        return reading.addCallback(lambda _: self._withDaemon(rows))

    def _withDaemon(self, plugs: list[tuple[Any, ...]]) -> Callable[[], bytes]:
        """With the plugs' rows, read the daemon-wide figures now; return the function making the text."""
        status = self.hub.status()
        source = self.dns() if callable(self.dns) else self.dns
        dns = _countersOf(getattr(source, "counters", None)) if source is not None else {}
        web = None
        if self.web is not None:
            limits = self.web.limits
            web = {"streams": len(self.web.streams.streams), "sessions": len(self.web.auth.sessions),
                   "failures": self.web.auth.failures, "open": limits.open, "limit": limits.maxTotal,
                   "refused": {reason: limits.refused[reason] for reason in ("total", "per_host")},
                   "timeouts": limits.headTimeouts}

        def render() -> bytes:
            daemon = generate_latest(Read(lambda: self._families(status, dns, web)))
            return plugSeries(plugs).encode("utf-8") + daemon

        return render

    @staticmethod
    def _families(status: dict[str, Any], dns: dict[str, float], web: dict[str, Any] | None) -> Iterable[Metric]:
        """The daemon-wide families of figures L{read} took (no access to the hub)."""
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

        if web is not None:
            yield GaugeMetricFamily("vesyncd_http_event_streams", "Open server-sent event streams.",
                                    value=web["streams"])
            yield GaugeMetricFamily("vesyncd_http_sessions", "Live browser sessions.", value=web["sessions"])
            yield CounterMetricFamily("vesyncd_http_auth_failures", "HTTP requests with a wrong token.",
                                      value=web["failures"])
            yield GaugeMetricFamily("vesyncd_http_connections", "HTTP connections open now.", value=web["open"])
            yield GaugeMetricFamily("vesyncd_http_connections_limit", "HTTP connections allowed at once.",
                                    value=web["limit"])
            refused = CounterMetricFamily("vesyncd_http_connections_refused",
                                          "HTTP connections closed at once by the caps, by cap.", labels=["reason"])
            for reason in ("total", "per_host"):
                refused.add_metric([reason], web["refused"][reason])
            yield refused
            yield CounterMetricFamily("vesyncd_http_request_timeouts",
                                      "HTTP connections cut because no whole request arrived in time.",
                                      value=web["timeouts"])


class Read(Collector):
    """A collector over figures already read: C{collect} builds the families (any thread)."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self.build = build

    def collect(self) -> Iterable[Metric]:
        """The families built from the figures read."""
        return self.build()


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


class Metrics:
    """What /metrics shows: vesyncd's collectors, in the order registered (no process or platform
    metrics).  L{read} (reactor thread) takes every figure; the function it returns makes the text
    in any thread."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = list(collectors)

    def register(self, collector: Any) -> None:
        """Add a collector: one with a C{read()} returning a function that makes its text (like
        L{HubCollector}), or a prometheus_client C{Collector}, collected whole at scrape time (keep
        those small)."""
        self.collectors.append(collector)

    def read(self) -> Callable[[], bytes]:
        """Every figure as it is now (reactor thread); the returned function makes the exposition
        text from them, in any thread."""
        parts = [self._readOne(collector) for collector in self.collectors]
        return lambda: b"".join(part() for part in parts)

    def readInTurns(self, clock: IReactorTime) -> Deferred:
        """As L{read}, each collector with a C{readInTurns(clock)} (L{HubCollector}) read over several
        reactor turns, the others at once in their turn; fires with the function making the text, or
        fails as the first collector failing to read."""
        async def readAll() -> Callable[[], bytes]:
            parts: list[Callable[[], bytes]] = []
            for collector in self.collectors:
                inTurns = getattr(collector, "readInTurns", None)
                parts.append(await inTurns(clock) if inTurns is not None else self._readOne(collector))
            return lambda: b"".join(part() for part in parts)

        return Deferred.fromCoroutine(readAll())

    @staticmethod
    def _readOne(collector: Any) -> Callable[[], bytes]:
        """One collector's figures, read now: its C{read()}, or its families collected whole."""
        read = getattr(collector, "read", None)
        if read is not None:
            return read()
        families = list(collector.collect())
        return lambda: generate_latest(Read(lambda: families))


def registryFor(hub: Hub, dns: Any = None, web: Any = None) -> Metrics:
    """vesyncd's metrics: the hub's collector (no process or platform metrics)."""
    return Metrics(HubCollector(hub, dns, web))
