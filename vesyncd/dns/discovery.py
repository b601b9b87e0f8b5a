"""
Where vesyncd's DNS responder stands: this host's addresses, the address to answer intercepted
names with, and the upstream resolvers for every other name.

 - L{AnswerAddressFinder} picks, per query, the address of this host facing the querier;
 - L{localAddresses}, L{primaryLANAddress} and L{sourceAddressFor} read this host's addresses
   (from /proc on Linux, and the routing table through an unsent UDP connect());
 - L{parseUpstream} and L{systemUpstreams} turn C{--dns-upstream} or /etc/resolv.conf into
   (address, port) pairs, leaving out the responder itself.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Iterable

from twisted.internet.interfaces import IReactorTime

from vesyncd.addresses import splitHostPort

__all__ = [
    "AnswerAddressFinder", "asIPv4", "localAddresses", "parseUpstream", "primaryLANAddress",
    "sourceAddressFor", "systemUpstreams",
]

#: An address on the far side of the default route, used only in connect() (nothing is sent).
_ROUTE_PROBE = "198.51.100.1"


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
                 route: Callable[[str], str | None] = sourceAddressFor,
                 primary: Callable[[], str | None] = primaryLANAddress) -> None:
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
        here = asIPv4(local)
        if here is not None and not here.is_unspecified:
            return str(here)
        there = asIPv4(peer)
        if there is not None:
            routed = asIPv4(self._route(str(there)))
            if routed is not None and not routed.is_unspecified:
                return str(routed)
        primary = asIPv4(self._primary())
        if primary is not None and not primary.is_unspecified:
            return str(primary)
        if there is not None and there.is_loopback:
            return "127.0.0.1"
        return None


def asIPv4(text: str | None) -> ipaddress.IPv4Address | None:
    """C{text} as an IPv4 address (unwrapping ::ffff:a.b.c.d), or None if it is not one."""
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
