"""
vesyncd's DNS responder: answers C{server2.vesync.com} with this host's address, forwards the rest.

Plugs resolve C{server2.vesync.com} at boot and connect to it on TCP 17273; pointing the LAN's
DNS (or just the plugs' DHCP-supplied resolver) at vesyncd makes them connect here instead.

This module holds the thin network layer and the public entry point L{makeDNSService}:

 - L{DNSDatagramProtocol} and L{DNSStreamProtocol}/L{DNSStreamFactory}, the UDP and TCP
   adapters around the network-free L{vesyncd.dns.answers.DNSCore} (decisions) and
   L{vesyncd.dns.forward.Forwarder} (upstream relaying);
 - L{DNSService}, which binds both listeners in C{privilegedStartService} (so C{twistd -u/-g}
   can drop privileges afterwards) and turns bind failures into one-line L{DNSStartupError}s;
 - helpers for option handling: L{parseUpstream}, L{systemUpstreams}, L{localAddresses},
   L{primaryLANAddress}, L{sourceAddressFor}.

See C{docs/dns.md}.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Iterable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.addresses import splitHostPort
from vesyncd.service import StartupError
from vesyncd.dns.answers import (
    DEFAULT_ALLOW, RCODE_SERVFAIL, DNSCore, DNSCounters, Outcome, errorResponse, nameToWire,
    parseNetworks, wireToText,
)
from vesyncd.dns.forward import MAX_TCP_MESSAGE, Forwarder

__all__ = [
    "DEFAULT_ALLOW", "AnswerAddressFinder", "DNSCounters", "DNSService", "DNSStartupError",
    "explainBindError", "localAddresses", "makeDNSService", "parseUpstream",
    "primaryLANAddress", "sourceAddressFor", "systemUpstreams",
]

log = Logger()

#: Largest query accepted over TCP; a longer announced length closes the connection.
MAX_TCP_QUERY = 16384
#: A TCP client that sends no complete query for this long is disconnected.
TCP_IDLE_TIMEOUT = 10.0
#: Concurrent TCP clients; more are closed at once.
MAX_TCP_CONNECTIONS = 128
#: Forwards one TCP connection may have in flight; more get SERVFAIL.
MAX_TCP_INFLIGHT = 16
#: UDP receive buffer of the listener (queries are small; a longer one arrives truncated).
MAX_UDP_QUERY = 4096
#: An address on the far side of the default route, used only in connect() (nothing is sent).
_ROUTE_PROBE = "198.51.100.1"


class DNSStartupError(StartupError):
    """The DNS responder could not start; C{str()} is one line saying why and what to do."""


# --- addresses of this host ---------------------------------------------------------------------


def sourceAddressFor(peer: str) -> str | None:
    """The local address this host would use to reach C{peer}, found without sending anything.

    Uses connect() on a UDP socket, which only consults the routing table.  None if there is
    no route.
    """
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((peer, 53))
            return s.getsockname()[0]
    except OSError:
        return None


def localAddresses() -> set[str]:
    """Every IPv4 and IPv6 address configured on this host (from /proc on Linux)."""
    found: set[str] = {"127.0.0.1", "::1"}
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
        for prev, line in zip(lines, lines[1:]):
            if "/32 host LOCAL" in line:
                found.add(prev.split()[-1])
    except OSError:
        try:
            found.update(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                found.add(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError, IndexError):
        pass
    return found


def primaryLANAddress() -> str | None:
    """This host's main IPv4 address: the one used for the default route, else any non-loopback.

    None when the host has no IPv4 address besides loopback.
    """
    address = sourceAddressFor(_ROUTE_PROBE)
    if address and not ipaddress.ip_address(address).is_loopback:
        return address
    for candidate in sorted(localAddresses()):
        ip = ipaddress.ip_address(candidate)
        if ip.version == 4 and not ip.is_loopback and not ip.is_unspecified:
            return candidate
    return None


class AnswerAddressFinder:
    """Chooses the A record for an intercepted name, per query; never an unspecified address.

    C{fixed} if configured; else the local address the query was sent to (known for TCP and for
    a listener bound to one address); else the address this host uses to reach the querier;
    else the primary LAN IPv4; else, for loopback queriers, 127.0.0.1.  Results are cached for
    C{ttl} seconds per peer.
    """

    def __init__(self, clock: IReactorTime, fixed: str | None = None, ttl: float = 300.0,
                 route=sourceAddressFor, primary=primaryLANAddress) -> None:
        self.clock = clock
        self.fixed = fixed
        self.ttl = ttl
        self._route = route
        self._primary = primary
        self._cache: dict[tuple[str, str | None], tuple[float, str | None]] = {}

    def __call__(self, peer: str, local: str | None) -> str | None:
        """The IPv4 address to answer a query from C{peer} that arrived at C{local}."""
        if self.fixed is not None:
            return self.fixed
        key = (peer, local)
        now = self.clock.seconds()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        address = self._find(peer, local)
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, address)
        return address

    def _find(self, peer: str, local: str | None) -> str | None:
        here = _v4(local)
        if here is not None and not here.is_unspecified:
            return str(here)
        there = _v4(peer)
        if there is not None:
            routed = _v4(self._route(str(there)))
            if routed is not None and not routed.is_unspecified:
                return str(routed)
        primary = _v4(self._primary())
        if primary is not None and not primary.is_unspecified:
            return str(primary)
        if there is not None and there.is_loopback:
            return "127.0.0.1"
        return None


def _v4(text: str | None) -> ipaddress.IPv4Address | None:
    """C{text} as an IPv4 address (unwrapping ::ffff:a.b.c.d), or None."""
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped
    return ip


# --- upstreams ------------------------------------------------------------------------------------


def parseUpstream(text: str) -> tuple[str, int]:
    """Parse C{HOST}, C{HOST:PORT}, C{V6}, or C{[V6]:PORT} into (address, port); port 53 default.

    HOST must be an IP address (a resolver cannot be named by a name it would resolve).
    Raise C{ValueError} with a readable message otherwise.
    """
    try:
        host, port = splitHostPort(text, 53)
    except ValueError as e:
        raise ValueError(f"upstream {e}") from None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"upstream {text!r}: {host!r} is not an IP address") from None
    if ip.is_unspecified:
        raise ValueError(f"upstream {text!r}: unspecified address")
    return str(ip), port


def systemUpstreams(port: int = 53, interface: str = "",
                    paths: Iterable[str] = ("/etc/resolv.conf",
                                            "/run/systemd/resolve/resolv.conf")) -> list[tuple[str, int]]:
    """The nameservers of /etc/resolv.conf, minus any that would be this responder itself.

    A nameserver is skipped when it is an address this responder listens on (any local address
    if C{interface} is the wildcard) and C{port} is 53.  If /etc/resolv.conf leaves nothing,
    systemd-resolved's real upstream list is tried next.
    """
    own = localAddresses() if interface in ("", "0.0.0.0", "::") else {interface}
    own = {str(ipaddress.ip_address(a.split("%", 1)[0])) for a in own}
    for path in paths:
        found: list[tuple[str, int]] = []
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    host, _ = parseUpstream(words[1].split("%", 1)[0])
                except ValueError:
                    continue
                if port == 53 and host in own:
                    continue
                if (host, 53) not in found:
                    found.append((host, 53))
        if found:
            return found
    return []


# --- protocol adapters ----------------------------------------------------------------------------


class DNSDatagramProtocol(DatagramProtocol):
    """UDP adapter: each datagram goes to the core; replies and forwards go back to the sender."""

    def __init__(self, core: DNSCore, forwarder: Forwarder, local: str | None = None) -> None:
        self.core = core
        self.forwarder = forwarder
        self.local = local

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        """Handle one query; never raises."""
        outcome = self.core.handle(data, addr, self.local)
        action = outcome.action
        if action == "reply":
            self._send(outcome.data, addr)
        elif action == "forward":
            try:
                self.forwarder.forward(outcome.data, outcome.question,
                                       lambda response: self._send(response, addr),
                                       client=addr)
            except Exception as e:
                self.core.counters.errors += 1
                log.failure("DNS: forwarding failed", Failure(e))

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.transport.write(data, addr)
        except Exception as e:  # e.g. ENOBUFS, or the peer vanished
            self.core.badInput.warn("DNS: cannot reply to {peer}: {error}", peer=addr, error=e)


class DNSStreamProtocol(Protocol):
    """TCP adapter: 2-byte length-prefixed queries, pipelining allowed, with bounds.

    A connection is closed when it announces a query longer than L{MAX_TCP_QUERY} (or of zero
    length), or when no complete query arrives within the idle timeout.  At most
    L{MAX_TCP_INFLIGHT} forwards may be in flight per connection.
    """

    def __init__(self, factory: "DNSStreamFactory") -> None:
        self.factory = factory
        self.buf = b""
        self.inflight = 0
        self.idle = None
        self.closed = False

    def connectionMade(self) -> None:
        """Count the connection and start the idle timer (or refuse if over the limit)."""
        f = self.factory
        f.core.counters.tcp_connections += 1
        f.connections.add(self)
        if len(f.connections) > f.maxConnections:
            self.factory.core.badInput.warn("DNS: too many TCP clients; closing {peer}",
                                            peer=self._peer())
            self.transport.abortConnection()
            return
        self._touch()

    def _peer(self) -> tuple[str, int]:
        p = self.transport.getPeer()
        return (getattr(p, "host", "?"), getattr(p, "port", 0))

    def _touch(self) -> None:
        if self.idle is not None and self.idle.active():
            self.idle.reset(self.factory.idleTimeout)
        else:
            self.idle = self.factory.clock.callLater(self.factory.idleTimeout, self._idleOut)

    def _idleOut(self) -> None:
        self.idle = None
        if self.inflight:
            self._touch()
            return
        self.factory.core.counters.tcp_idle_closed += 1
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """Split the stream into queries and handle each; never raises."""
        self.buf += data
        while len(self.buf) >= 2 and not self.closed:
            size = (self.buf[0] << 8) | self.buf[1]
            if size == 0 or size > self.factory.maxQuery:
                self.factory.core.counters.tcp_oversize_closed += 1
                self.factory.core.counters.malformed += 1
                self.factory.core.badInput.warn(
                    "DNS: TCP client {peer} announced a {size}-byte query; closing",
                    peer=self._peer(), size=size)
                self.closed = True
                self.transport.abortConnection()
                return
            if len(self.buf) < 2 + size:
                return
            message, self.buf = self.buf[2:2 + size], self.buf[2 + size:]
            self._touch()
            self._handle(message)

    def _handle(self, message: bytes) -> None:
        f = self.factory
        host = self.transport.getHost()
        peer = self._peer()
        outcome = f.core.handle(message, peer, getattr(host, "host", None))
        if outcome.action == Outcome.REPLY:
            self.send(outcome.data)
        elif outcome.action == Outcome.FORWARD:
            if self.inflight >= MAX_TCP_INFLIGHT:
                f.core.counters.overload += 1
                self.send(errorResponse(message, RCODE_SERVFAIL, outcome.question))
                return
            self.inflight += 1

            def reply(response: bytes) -> None:
                self.inflight -= 1
                self.send(response)
            try:
                f.forwarder.forward(outcome.data, outcome.question, reply, tcp=True)
            except Exception as e:
                f.core.counters.errors += 1
                log.failure("DNS: forwarding failed", Failure(e))

    def send(self, response: bytes) -> None:
        """Write one length-prefixed response if the connection is still open."""
        if self.closed or len(response) > MAX_TCP_MESSAGE:
            return
        self.transport.write(struct.pack("!H", len(response)) + response)
        self._touch()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """Forget the connection and its timer."""
        self.closed = True
        self.factory.connections.discard(self)
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = None


class DNSStreamFactory(Factory):
    """Builds L{DNSStreamProtocol}s and holds what they share (core, forwarder, limits)."""

    def __init__(self, core: DNSCore, forwarder: Forwarder, clock: IReactorTime,
                 idleTimeout: float = TCP_IDLE_TIMEOUT, maxQuery: int = MAX_TCP_QUERY,
                 maxConnections: int = MAX_TCP_CONNECTIONS) -> None:
        self.core = core
        self.forwarder = forwarder
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.maxQuery = maxQuery
        self.maxConnections = maxConnections
        self.connections: set[DNSStreamProtocol] = set()

    def buildProtocol(self, addr: object) -> DNSStreamProtocol:
        """A new connection's protocol."""
        return DNSStreamProtocol(self)


# --- the service ----------------------------------------------------------------------------------


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
                 interface: str = "") -> None:
        self.reactor = reactor
        self.core = core
        self.forwarder = forwarder
        self.counters: DNSCounters = core.counters
        self.port = port
        self.interface = interface
        self.udpPort: IListeningPort | None = None
        self.tcpPort: IListeningPort | None = None
        self.tcpFactory = DNSStreamFactory(core, forwarder, reactor)

    def _bind(self) -> None:
        local = self.interface if self.interface not in ("", "0.0.0.0", "::") else None
        udp = DNSDatagramProtocol(self.core, self.forwarder, local)
        for tries in range(8 if self.port == 0 else 1):
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
                if self.port == 0 and inUse and tries < 7:
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
                   maxPending: int = 512) -> DNSService:
    """Build the DNS responder service (not started); raise C{ValueError} on bad options.

    C{address}: the IPv4 address given for intercepted names (default: per query, the address
    of this host facing the querier).  C{upstreams}: resolvers for every other name (default:
    /etc/resolv.conf minus this host's own addresses).  C{allow}: CIDRs that may query
    (default: loopback, link-local and private ranges).
    """
    if address is not None:
        ip = _v4(address)
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
    if upstreams is None:
        upstreams = systemUpstreams(port, interface or "")
    else:
        upstreams = [parseUpstream(u) if isinstance(u, str) else (u[0], int(u[1]))
                     for u in upstreams]
    counters = DNSCounters()
    core = DNSCore(intercept=intercept, allow=allow, clock=reactor, ttl=ttl, counters=counters,
                   answerAddress=AnswerAddressFinder(reactor, address))

    def openUDP(protocol: DatagramProtocol, family: str):
        return reactor.listenUDP(0, protocol, interface=family, maxPacketSize=65535)

    def connectTCP(host: str, port: int, factory, timeout: float):
        return reactor.connectTCP(host, port, factory, timeout=timeout)

    forwarder = Forwarder(reactor, upstreams, openUDP=openUDP, connectTCP=connectTCP,
                          counters=counters, attemptTimeout=attemptTimeout,
                          totalTimeout=totalTimeout, maxPending=maxPending)
    return DNSService(reactor, core, forwarder, port=port, interface=interface or "")

