"""Wiring of the DNS responder into the daemon: its options and its service."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.python import usage

optFlags = [
    ["no-dns", None, "Do not answer DNS (redirect the plugs some other way)."],
]

optParameters = [
    ["dns-port", None, 53, "UDP and TCP port of the DNS responder.", int],
    ["dns-interface", None, "127.0.0.1",
     "Address the DNS responder binds: your LAN address for plugs to use it ('' for all IPv4)."],
    ["address", None, None,
     "IPv4 address answered for intercepted names (default: this host's address toward the asker)."],
]

optRepeatable = [
    ["dns-upstream", "Upstream resolver IP[:PORT] for other names (repeatable; default: /etc/resolv.conf)."],
    ["dns-intercept", "A name answered with this host's address (repeatable; default server2.vesync.com)."],
    ["dns-allow", "A network (CIDR) allowed to query (repeatable; default loopback and private ranges)."],
]


def postOptions(config: Any) -> None:
    """Check the DNS options, so a typo stops start-up with a line naming it."""
    from vesyncd.dns.server import parseUpstream

    if not 0 <= config["dns-port"] < 65536:
        raise usage.UsageError(f"--dns-port {config['dns-port']} is not a port number")
    for name in ("dns-interface", "address"):
        value = config[name]
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise usage.UsageError(f"--{name} {value!r} is not an IP address") from None
    try:
        config["dns-upstream-parsed"] = [parseUpstream(u) for u in config["dns-upstream"]] or None
    except ValueError as e:
        raise usage.UsageError(f"--dns-upstream: {e}") from None
    for cidr in config["dns-allow"]:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise usage.UsageError(f"--dns-allow {cidr!r} is not a network (e.g. 192.168.1.0/24)") from None


def makeServices(parent: Any, hub: Any, config: Any, reactor: Any, context: Any) -> None:
    """Add the DNS responder unless --no-dns; its counters go into C{context.dns}."""
    from vesyncd.dns.server import makeDNSService, primaryLANAddress

    context.dns = None
    # The address plugs should use for this host: what provisioning hands them by default.
    context.info["address"] = config["address"] or primaryLANAddress()
    context.info["dns_listen"] = None
    if config["no-dns"]:
        return

    service = makeDNSService(
        reactor,
        port=config["dns-port"],
        interface=config["dns-interface"],
        address=config["address"],
        upstreams=config["dns-upstream-parsed"],
        intercept=config["dns-intercept"] or ["server2.vesync.com"],
        allow=config["dns-allow"] or None,
    )
    service.setServiceParent(parent)
    context.dns = service
    context.info["dns"] = lambda: service.counters.asDict()

    def listening() -> list[Any] | None:
        port = service.udpPort
        return None if port is None else [port.getHost().host, port.getHost().port]

    # Where the responder answers, so `vesyncctl doctor` asks the right port.
    context.info["dns_listen"] = listening
