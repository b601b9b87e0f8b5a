"""
The network-free half of vesyncd's DNS responder: bytes in, a decision out.

L{DNSCore.handle} takes one query exactly as it arrived (a UDP payload, or one TCP message
without its length prefix), the peer's address and the local address it was sent to, and
returns an L{Outcome}: a reply to send, a query to forward upstream, or a drop.  It never
raises: anything unexpected is counted (C{counters.errors}) and dropped.  The wire format is
read and written by L{vesyncd.dns.wire}.

Intercepted names (exact match, ASCII case-insensitive) get an authoritative answer built by
hand; the query name's case is copied back byte for byte (0x20 randomisation).  Replies for the
intercepted fast path are cached keyed on the query minus its ID, so a repeated query costs
one dictionary look-up.

In a cluster (C{spreader} given, L{vesyncd.dns.nodes}) an intercepted name is answered with every live
node's address, ordered for the asker by rendezvous hashing, with the shorter C{nodeTTL}; with no live
node known the answer is this host's own address as on a single node.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, fields
from typing import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vesyncd.dns.nodes import NodeSpreader
from vesyncd.dns.wire import (
    AA, CLASS_ANY, CLASS_IN, HEADER, OPCODE_MASK, QR, RCODE_FORMERR, RCODE_NOERROR,
    RCODE_NOTIMP, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_ANY, MessageShape, Question,
    WireError, errorResponse, makeHeader, nameToWire, optRecord, parseQuestion, walkRecords,
)

log = Logger()

#: Fast-path reply cache entries before it is emptied.
CACHE_SIZE = 2048
#: Peer-permission cache entries before it is emptied.
PEER_CACHE_SIZE = 4096

DEFAULT_ALLOW: tuple[str, ...] = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "100.64.0.0/10", "::1/128", "fc00::/7", "fe80::/10",
)


@dataclass
class DNSCounters:
    """Running totals of the DNS responder, readable at any time (also as C{counters["name"]}).

    C{answered}: intercepted names answered; C{forwarded}: queries sent upstream;
    C{forward_replies}: upstream answers relayed to clients; C{refused}: queries from outside
    the allow list; C{malformed}: unparseable input (FORMERR sent or dropped); C{notimp}: opcodes
    other than QUERY; C{dropped}: messages ignored without reply (responses, runts, duplicates);
    C{servfail}: SERVFAIL replies; C{upstream_failures}: forwarded queries no upstream answered
    in time; C{upstream_timeouts}: single upstream attempts that timed out or failed;
    C{spoofed}: upstream packets dropped for a wrong source, ID or question; C{overload}:
    queries refused because too many forwards were pending; C{tcp_*}: TCP connection events;
    C{errors}: internal errors caught (should stay 0); C{pending}: forwards in flight now;
    C{truncated}: UDP answers cut to the client's size with TC set; C{rate_limited}: UDP answers
    not sent because their source was over its response rate; C{rate_slipped}: of those, the
    ones answered with an empty TC reply instead (so a real client retries over TCP).
    """

    queries: int = 0
    answered: int = 0
    forwarded: int = 0
    forward_replies: int = 0
    refused: int = 0
    malformed: int = 0
    notimp: int = 0
    dropped: int = 0
    servfail: int = 0
    upstream_failures: int = 0
    upstream_timeouts: int = 0
    spoofed: int = 0
    overload: int = 0
    duplicates: int = 0
    tcp_connections: int = 0
    tcp_idle_closed: int = 0
    tcp_oversize_closed: int = 0
    errors: int = 0
    pending: int = 0
    truncated: int = 0
    rate_limited: int = 0
    rate_slipped: int = 0

    def __getitem__(self, name: str) -> int:
        """Return the counter C{name}, so the object reads like a dict."""
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def asDict(self) -> dict[str, int]:
        """Return a snapshot of every counter as a plain dict (for status pages and metrics)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class RateLimitedLog:
    """Emit at most C{burst} warnings per C{period} seconds; count and later report the rest.

    Used for anything a remote peer can trigger (malformed packets, refused sources), so a
    flood cannot fill the disk.
    """

    def __init__(self, clock: IReactorTime, logger: Logger = log, burst: int = 20,
                 period: float = 60.0) -> None:
        self._clock = clock
        self._log = logger
        self._burst = burst
        self._period = period
        self._windowStart = -1e18
        self._emitted = 0
        self.suppressed = 0

    def warn(self, fmt: str, **kw: object) -> bool:
        """Log C{fmt} unless this window's budget is spent; return whether it was logged."""
        now = self._clock.seconds()
        if now - self._windowStart >= self._period:
            if self.suppressed:
                self._log.warn("DNS: {count} similar messages suppressed in the last {period:.0f} s",
                               count=self.suppressed, period=now - self._windowStart)
            self._windowStart = now
            self._emitted = 0
            self.suppressed = 0
        if self._emitted >= self._burst:
            self.suppressed += 1
            return False
        self._emitted += 1
        self._log.warn(fmt, **kw)
        return True


def parseNetworks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse CIDRs (or bare addresses); raise C{ValueError} naming the first bad entry."""
    nets = []
    for text in cidrs:
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR network: {text!r}") from None
    return nets


@dataclass
class Outcome:
    """What to do with one query: C{REPLY} with C{data}, C{FORWARD} C{data}, or C{DROP}."""

    REPLY = "reply"
    FORWARD = "forward"
    DROP = "drop"

    action: str
    data: bytes = b""
    question: Question | None = None
    #: The query's EDNS and framing, when it was parsed (not on the cached fast path).
    shape: MessageShape | None = None


_DROP = Outcome(Outcome.DROP)

#: Given (peer host, local host or None), the IPv4 address to answer with, or None.
AnswerAddress = Callable[[str, "str | None"], "str | None"]

#: Seconds an answer listing a cluster's nodes may be cached: short, so a plug that lost its node and asks
#: again soon after does not get a stale list from a cache in between.
NODE_TTL = 10


class DNSCore:
    """The decision logic: one query in, one L{Outcome} out, never an exception.

    Rules, in order: messages shorter than a header or with QR set are dropped; sources outside
    C{allow} get REFUSED; opcodes other than QUERY get NOTIMP; a question count other than one
    or broken framing gets FORMERR; an intercepted name is answered here (A with the address
    from C{answerAddress}, every other type NOERROR without data, EDNS echoed, BADVERS for
    EDNS versions above 0); anything else is returned as C{FORWARD}.

    With a C{spreader}, the A answer for an intercepted name is the live nodes' addresses in the
    spreader's order for the asker (C{nodeTTL} seconds), or this host's address when none is live.
    """

    def __init__(self, *, intercept: Iterable[str], allow: Iterable[str] | None,
                 answerAddress: AnswerAddress, clock: IReactorTime, ttl: int = 60,
                 counters: DNSCounters | None = None, logger: Logger = log,
                 spreader: NodeSpreader | None = None, nodeTTL: int = NODE_TTL) -> None:
        self.intercept = frozenset(nameToWire(n) for n in intercept)
        self.allow = parseNetworks(DEFAULT_ALLOW if allow is None else allow)
        self.answerAddress = answerAddress
        self.spreader = spreader
        self.ttl = ttl
        self.nodeTTL = min(nodeTTL, ttl)
        self.counters = counters if counters is not None else DNSCounters()
        self.badInput = RateLimitedLog(clock, logger)
        self._peerAllowed: dict[str, bool] = {}
        self._cache: dict[tuple[bytes, str | tuple[str, ...] | None], bytes] = {}

    def allowed(self, host: str) -> bool:
        """Whether a query from C{host} may be answered (cached per address)."""
        ok = self._peerAllowed.get(host)
        if ok is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                ok = False
            else:
                if getattr(ip, "ipv4_mapped", None) is not None:
                    ip = ip.ipv4_mapped
                ok = any(ip in net for net in self.allow)
            if len(self._peerAllowed) >= PEER_CACHE_SIZE:
                self._peerAllowed.clear()
            self._peerAllowed[host] = ok
        return ok

    def handle(self, data: bytes, peer: tuple[str, int], local: str | None = None) -> Outcome:
        """Decide what to do with the query C{data} from C{peer} sent to C{local}; never raise."""
        self.counters.queries += 1
        try:
            if type(data) is not bytes:
                data = bytes(data)
            host = peer[0]
            ok = self._peerAllowed.get(host)
            if ok is None:
                ok = self.allowed(host)
            if ok:
                key = data[2:]
                address: str | tuple[str, ...] | None = None
                if self.spreader is not None:
                    address = self.spreader.order(host) or None
                if address is None:
                    address = self.answerAddress(host, local)
                cached = self._cache.get((key, address))
                if cached is not None:
                    self.counters.answered += 1
                    return Outcome(Outcome.REPLY, data[:2] + cached)
                return self._decide(data, host, peer, address, key)
            return self._refuse(data, peer)
        except Exception as e:  # a bug, never bad input: keep serving, count and say so
            self.counters.errors += 1
            self.badInput.warn("DNS: internal error on a query from {peer}: {error!r}",
                               peer=_peerText(peer), error=e)
            return _DROP

    def _refuse(self, data: bytes, peer: tuple[str, int]) -> Outcome:
        if len(data) < 12 or data[2] & 0x80:
            self.counters.dropped += 1
            return _DROP
        self.counters.refused += 1
        self.badInput.warn("DNS: refused a query from {peer} (outside the allowed networks)",
                           peer=_peerText(peer))
        return Outcome(Outcome.REPLY, errorResponse(data, RCODE_REFUSED))

    def _malformed(self, data: bytes, peer: tuple[str, int], reason: str,
                   question: Question | None = None) -> Outcome:
        self.counters.malformed += 1
        self.badInput.warn("DNS: malformed query from {peer}: {reason}",
                           peer=_peerText(peer), reason=reason)
        return Outcome(Outcome.REPLY, errorResponse(data, RCODE_FORMERR, question))

    def _decide(self, data: bytes, host: str, peer: tuple[str, int],
                address: str | tuple[str, ...] | None, key: bytes) -> Outcome:
        if len(data) < 12:
            self.counters.malformed += 1
            self.badInput.warn("DNS: runt packet ({size} bytes) from {peer}",
                               size=len(data), peer=_peerText(peer))
            return _DROP
        _id, flags, qd, an, ns, ar = HEADER.unpack_from(data)
        if flags & QR:
            self.counters.dropped += 1
            return _DROP
        if flags & OPCODE_MASK:
            self.counters.notimp += 1
            return Outcome(Outcome.REPLY, errorResponse(data, RCODE_NOTIMP))
        if qd != 1:
            return self._malformed(data, peer, f"{qd} questions")
        try:
            question = parseQuestion(data)
        except WireError as e:
            return self._malformed(data, peer, str(e))
        try:
            shape = walkRecords(data, question.end, (an, ns, ar))
        except WireError as e:
            return self._malformed(data, peer, str(e), question)
        if question.name not in self.intercept:
            return Outcome(Outcome.FORWARD, data, question, shape)
        reply = self._intercepted(data, question, shape, address)
        if reply is None:
            self.counters.servfail += 1
            self.badInput.warn("DNS: no address of this host to answer {name} for {peer}",
                               name=question.text(), peer=_peerText(peer))
            return Outcome(Outcome.REPLY, errorResponse(data, RCODE_SERVFAIL, question))
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[(key, address)] = reply[2:]  # type: ignore[index]
        self.counters.answered += 1
        return Outcome(Outcome.REPLY, reply, question, shape)

    def _intercepted(self, data: bytes, question: Question, shape: MessageShape,
                     address: str | tuple[str, ...] | None) -> bytes | None:
        """The authoritative reply for an intercepted name, or None if no address is known (a tuple
        of addresses, the cluster's nodes, gives one A record each, in that order)."""
        opt = b""
        if shape.edns:
            if shape.ednsVersion != 0:  # BADVERS: extended rcode 16 = 1 << 4 | 0
                return (makeHeader(data, 0, AA, qd=1, ar=1) + data[12:question.end]
                        + optRecord(shape.ednsDO, extRcode=1))
            opt = optRecord(shape.ednsDO)
        answers = b""
        count = 0
        if question.qtype in (TYPE_A, TYPE_ANY) and question.qclass in (CLASS_IN, CLASS_ANY):
            if address is None:
                return None
            if isinstance(address, tuple):
                head = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, self.nodeTTL, 4)
                answers = b"".join(head + ipaddress.IPv4Address(a).packed for a in address)
                count = len(address)
            else:
                answers = (b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, self.ttl, 4)
                           + ipaddress.IPv4Address(address).packed)
                count = 1
        return (makeHeader(data, RCODE_NOERROR, AA, qd=1, an=count,
                           ar=1 if opt else 0)
                + data[12:question.end] + answers + opt)


def _peerText(peer: tuple[str, int] | object) -> str:
    """C{host:port} (or C{[v6]:port}) for a log line."""
    try:
        host, port = peer[0], peer[1]  # type: ignore[index]
    except Exception:
        return str(peer)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
