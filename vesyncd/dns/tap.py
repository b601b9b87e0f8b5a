"""The DNS responder's part of the daemon: its options, their checks, and its service."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Callable

from twisted.python import usage

from vesyncd.dns.ratelimit import DEFAULT_RATE, DEFAULT_SLIP
from vesyncd.service import DaemonInfo

if TYPE_CHECKING:
    from vesyncd.dns.server import DNSService

#: Options that may be given several times; each collects into a list.
REPEATABLE = ("dns-upstream", "dns-intercept", "dns-allow")


class DNSOptions:
    """The DNS responder's options, part of the daemon's L{vesyncd.tap.Options}."""

    optFlags = [
        ["no-dns", None, "Do not answer DNS (redirect the plugs some other way)."],
    ]

    optParameters = [
        ["dns-port", None, 53, "UDP and TCP port of the DNS responder.", int],
        ["dns-interface", None, "127.0.0.1",
         "Address the DNS responder binds: your LAN address for plugs to use it ('' for all IPv4)."],
        ["address", None, None,
         "IPv4 address answered for intercepted names (default: this host's address toward the asker)."],
        ["dns-rate-limit", None, DEFAULT_RATE,
         "UDP answers per second to one source network (/24 or /56); 0 for no limit.", int],
        ["dns-rate-slip", None, DEFAULT_SLIP,
         "Over the rate, every Nth answer is an empty truncated one (the client retries over TCP);"
         " 0 drops them all.", int],
    ]

    def opt_dns_upstream(self, value: str) -> None:
        """Upstream resolver IP[:PORT] for other names (repeatable; default: /etc/resolv.conf)."""
        self.setdefault("dns-upstream", []).append(value)  # type: ignore[attr-defined]

    def opt_dns_intercept(self, value: str) -> None:
        """A name answered with this host's address (repeatable; default server2.vesync.com)."""
        self.setdefault("dns-intercept", []).append(value)  # type: ignore[attr-defined]

    def opt_dns_allow(self, value: str) -> None:
        """A network (CIDR) allowed to query (repeatable; default loopback and private ranges)."""
        self.setdefault("dns-allow", []).append(value)  # type: ignore[attr-defined]


def checkOptions(config: Any) -> None:
    """Check the DNS options, so a typo stops start-up with a line naming it."""
    from vesyncd.dns.discovery import parseUpstream

    if not 0 <= config["dns-port"] < 65536:
        raise usage.UsageError(f"--dns-port {config['dns-port']} is not a port number")
    for name in ("dns-interface", "address"):
        value = config[name]
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise usage.UsageError(f"--{name} {value!r} is not an IP address") from None
    for name in ("dns-rate-limit", "dns-rate-slip"):
        if config[name] < 0:
            raise usage.UsageError(f"--{name} {config[name]} is negative (0 turns it off)")
    try:
        config["dns-upstream-parsed"] = [parseUpstream(u) for u in config["dns-upstream"]] or None
    except ValueError as e:
        raise usage.UsageError(f"--dns-upstream: {e}") from None
    for cidr in config["dns-allow"]:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise usage.UsageError(f"--dns-allow {cidr!r} is not a network (e.g. 192.168.1.0/24)") from None


def makeServices(parent: Any, config: Any, reactor: Any, info: DaemonInfo,
                 nodeAddresses: Callable[[], list[str]] | None = None) -> DNSService | None:
    """Add the DNS responder to C{parent} unless --no-dns, and return it.

    C{nodeAddresses} (in a cluster: the live nodes' plug addresses, e.g. C{ClusterView.liveAddresses})
    makes intercepted names answer with every live node, ordered per asker (docs/scaling.md); while it
    returns nothing, the answer is this host's address as on a single node.

    Publishes in C{info.facts} the address plugs should use for this host (what provisioning hands
    them by default), where the responder answers, and its counters.
    """
    from vesyncd.dns.discovery import primaryLANAddress
    from vesyncd.dns.server import makeDNSService

    info.facts["address"] = config["address"] or primaryLANAddress()
    info.facts["dns_listen"] = None
    if config["no-dns"]:
        return None

    service = makeDNSService(
        reactor,
        port=config["dns-port"],
        interface=config["dns-interface"],
        address=config["address"],
        upstreams=config["dns-upstream-parsed"],
        intercept=config["dns-intercept"] or ["server2.vesync.com"],
        allow=config["dns-allow"] or None,
        rateLimit=config["dns-rate-limit"],
        rateSlip=config["dns-rate-slip"],
        nodeAddresses=nodeAddresses,
    )
    service.setServiceParent(parent)
    info.facts["dns"] = lambda: service.counters.asDict()

    def listening() -> list[Any] | None:
        port = service.udpPort
        return None if port is None else [port.getHost().host, port.getHost().port]

    # Where the responder answers, so `vesyncctl doctor` asks the right port.
    info.facts["dns_listen"] = listening
    return service
