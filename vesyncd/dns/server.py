"""
vesyncd's DNS responder: answers C{server2.vesync.com} with this host's address, forwards the rest.

Plugs resolve C{server2.vesync.com} at boot and connect to it on TCP 17273; pointing the LAN's
DNS (or just the plugs' DHCP-supplied resolver) at vesyncd makes them connect here instead.

This module holds the public entry point L{makeDNSService} and L{DNSService}, which binds the
UDP and TCP listeners (L{vesyncd.dns.adapters}) in C{privilegedStartService} (so C{twistd
-u/-g} can drop privileges afterwards) and turns bind failures into one-line
L{DNSStartupError}s.  Where the responder stands (its addresses, its upstreams) is found by
L{vesyncd.dns.discovery}.  See C{docs/dns.md}.
"""

from __future__ import annotations

import errno
import ipaddress

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from vesyncd.service import StartupError
from vesyncd.dns.adapters import MAX_UDP_QUERY, DNSDatagramProtocol, DNSStreamFactory
from vesyncd.dns.answers import DEFAULT_ALLOW, DNSCore, DNSCounters, parseNetworks
from vesyncd.dns.discovery import (
    AnswerAddressFinder, asIPv4, parseUpstream, systemUpstreams,
)
from vesyncd.dns.forward import Forwarder
from vesyncd.dns.nodes import NodeAddresses, NodeSpreader
from vesyncd.dns.ratelimit import DEFAULT_RATE, DEFAULT_SLIP, ResponseRateLimiter
from vesyncd.dns.wire import nameToWire, wireToText

__all__ = [
    "DEFAULT_ALLOW", "DNSCounters", "DNSService", "DNSStartupError", "explainBindError",
    "makeDNSService",
]

log = Logger()


class DNSStartupError(StartupError):
    """The DNS responder could not start; C{str()} is one line saying why and what to do."""


def explainBindError(error: CannotListenError, proto: str, interface: str, port: int) -> str:
    """One line saying why binding failed and what to do about it."""
    where = f"{interface or '0.0.0.0'}:{port}/{proto}"
    code = getattr(error.socketError, "errno", None)
    if code == errno.EADDRINUSE:
        holder = ""
        if port == 53:
            holder = (" (usually systemd-resolved on 127.0.0.53, or a dnsmasq from"
                      " libvirt/NetworkManager)")
        return (f"DNS port {where} is already in use{holder}: bind vesyncd's DNS to the LAN"
                f" address with --dns-interface ADDRESS, use another --dns-port, or disable the"
                f" other server (docs/dns.md)")
    if code in (errno.EACCES, errno.EPERM):
        return (f"no permission to bind DNS port {where}: run as root, grant the capability"
                f" (setcap cap_net_bind_service=+ep on the Python binary, or"
                f" AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit), start with"
                f" twistd -u USER -g GROUP to drop privileges after binding, or use"
                f" --dns-port above 1023")
    if code == errno.EADDRNOTAVAIL:
        return (f"cannot bind DNS to {where}: {interface} is not an address of this host"
                f" (check --dns-interface)")
    return f"cannot bind DNS to {where}: {error.socketError}"


class DNSService(Service):
    """The DNS responder as a Twisted service: UDP and TCP listeners on one port.

    C{udpPort}/C{tcpPort} are the listening ports once started (C{udpPort.getHost().port} is
    the real port when 0 was asked for); C{counters} are the running totals.
    """

    name = "dns"

    def __init__(self, reactor, core: DNSCore, forwarder: Forwarder, port: int = 53,
                 interface: str = "", limiter: ResponseRateLimiter | None = None) -> None:
        self.reactor = reactor
        self.core = core
        self.forwarder = forwarder
        self.limiter = limiter
        self.counters: DNSCounters = core.counters
        self.port = port
        self.interface = interface
        self.udpPort: IListeningPort | None = None
        self.tcpPort: IListeningPort | None = None
        self.tcpFactory = DNSStreamFactory(core, forwarder, reactor)

    def _bind(self) -> None:
        local = self.interface if self.interface not in ("", "0.0.0.0", "::") else None
        for tries in range(32 if self.port == 0 else 1):
            # A new protocol each try: a stopped port lets go of its protocol only later.
            udp = DNSDatagramProtocol(self.core, self.forwarder, local, self.limiter)
            try:
                self.udpPort = self.reactor.listenUDP(self.port, udp, interface=self.interface,
                                                      maxPacketSize=MAX_UDP_QUERY)
            except CannotListenError as e:
                raise DNSStartupError(explainBindError(e, "udp", self.interface, self.port)) from e
            port = self.udpPort.getHost().port
            try:
                self.tcpPort = self.reactor.listenTCP(port, self.tcpFactory, backlog=64,
                                                      interface=self.interface)
                break
            except CannotListenError as e:
                self.udpPort.stopListening()
                self.udpPort = None
                inUse = getattr(e.socketError, "errno", None) == errno.EADDRINUSE
                if self.port == 0 and inUse and tries < 31:
                    continue  # the kernel's free UDP port is taken for TCP: pick another
                raise DNSStartupError(explainBindError(e, "tcp", self.interface, port)) from e
        host = self.udpPort.getHost()
        log.info("DNS: answering {names} on {host}:{port} (udp+tcp), forwarding to {upstreams}",
                 names=", ".join(sorted(map(wireToText, self.core.intercept))),
                 host=host.host, port=host.port,
                 upstreams=", ".join(f"{h}:{p}" for h, p in self.forwarder.upstreams) or "nobody")
        if not self.forwarder.upstreams:
            log.warn("DNS: no upstream resolver: names other than the intercepted ones get"
                     " SERVFAIL (set --dns-upstream)")

    def privilegedStartService(self) -> None:
        """Bind the listeners (before twistd drops privileges); raise L{DNSStartupError}."""
        if self.udpPort is None:
            self._bind()
        super().privilegedStartService()

    def startService(self) -> None:
        """Bind the listeners if not done yet; raise L{DNSStartupError} if that fails."""
        if self.udpPort is None:
            self._bind()
        super().startService()

    def stopService(self):
        """Close the listeners and TCP clients and cancel pending forwards."""
        super().stopService()
        self.forwarder.stop()
        for conn in list(self.tcpFactory.connections):
            conn.transport.abortConnection()
        waits = []
        for port in (self.udpPort, self.tcpPort):
            if port is not None:
                waits.append(port.stopListening())
        self.udpPort = self.tcpPort = None
        return gatherResults([w for w in waits if isinstance(w, Deferred)])


def makeDNSService(reactor, *, port: int = 53, interface: str = "", address: str | None = None,
                   upstreams: list[tuple[str, int]] | None = None,
                   intercept: list[str] = ["server2.vesync.com"],  # noqa: B006 (never mutated)
                   allow: list[str] | None = None, ttl: int = 60,
                   attemptTimeout: float = 2.0, totalTimeout: float = 5.0,
                   maxPending: int = 512, rateLimit: float = DEFAULT_RATE,
                   rateSlip: int = DEFAULT_SLIP,
                   nodeAddresses: NodeAddresses | None = None) -> DNSService:
    """Build the DNS responder service (not started); raise C{ValueError} on bad options.

    C{address}: the IPv4 address given for intercepted names (default: per query, the address
    of this host facing the querier).  C{upstreams}: resolvers for every other name (default:
    /etc/resolv.conf minus this host's own addresses).  C{allow}: CIDRs that may query
    (default: loopback, link-local and private ranges).  C{rateLimit}: UDP answers per second
    per source /24 or /56 (0: no limit); C{rateSlip}: every this-many-th limited answer is an
    empty TC reply (0: none).  C{nodeAddresses}: in a cluster, returns the live nodes' plug addresses;
    intercepted names are then answered with all of them, ordered per asker (L{vesyncd.dns.nodes}).
    """
    if address is not None:
        ip = asIPv4(address)
        if ip is None or ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"--address {address!r} is not a usable IPv4 address")
        address = str(ip)
    if interface not in ("", None):
        try:
            ipaddress.ip_address(interface.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"--dns-interface {interface!r} is not an IP address") from None
    if not 0 <= port < 65536:
        raise ValueError(f"--dns-port {port} is out of range")
    for name in intercept:
        nameToWire(name)
    if allow is not None:
        parseNetworks(allow)
    if rateLimit < 0:
        raise ValueError(f"--dns-rate-limit {rateLimit} is negative (0 turns limiting off)")
    if rateSlip < 0:
        raise ValueError(f"--dns-rate-slip {rateSlip} is negative (0 drops every limited answer)")
    if upstreams is None:
        upstreams = systemUpstreams(port, interface or "")
    else:
        upstreams = [parseUpstream(u) if isinstance(u, str) else (u[0], int(u[1]))
                     for u in upstreams]
    counters = DNSCounters()
    core = DNSCore(intercept=intercept, allow=allow, clock=reactor, ttl=ttl, counters=counters,
                   answerAddress=AnswerAddressFinder(reactor, address),
                   spreader=None if nodeAddresses is None else NodeSpreader(nodeAddresses))

    def openUDP(protocol: DatagramProtocol, family: str):
        return reactor.listenUDP(0, protocol, interface=family, maxPacketSize=65535)

    def connectTCP(host: str, port: int, factory, timeout: float):
        return reactor.connectTCP(host, port, factory, timeout=timeout)

    forwarder = Forwarder(reactor, upstreams, openUDP=openUDP, connectTCP=connectTCP,
                          counters=counters, attemptTimeout=attemptTimeout,
                          totalTimeout=totalTimeout, maxPending=maxPending)
    limiter = ResponseRateLimiter(reactor, rateLimit, slip=rateSlip)
    return DNSService(reactor, core, forwarder, port=port, interface=interface or "",
                      limiter=limiter)

