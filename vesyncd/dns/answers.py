"""
The network-free half of vesyncd's DNS responder: bytes in, a decision out.

L{DNSCore.handle} takes one query exactly as it arrived (a UDP payload, or one TCP message
without its length prefix), the peer's address and the local address it was sent to, and
returns an L{Outcome}: a reply to send, a query to forward upstream, or a drop.  It never
raises: anything unexpected is counted (C{counters.errors}) and dropped.

The wire parsing here is our own, deliberately small and strict: the header, the single
question (no compression pointers: nothing precedes it that could be pointed at), then a walk
over the remaining records that checks only their framing (names with bounded, backward-only
pointers; lengths within the packet) and notes the EDNS OPT record.  Record data is never
interpreted, so the parser bugs of general-purpose libraries (dnslib's RecursionError on long
pointer chains, UnicodeDecodeError on a CAA tag) cannot be reached from here.

Intercepted names (exact match, ASCII case-insensitive) get an authoritative answer built by
hand; the query name's case is copied back byte for byte (0x20 randomisation).  Replies for the
intercepted fast path are cached keyed on the query minus its ID, so a repeated query costs
one dictionary look-up.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

# Header flag bits and codes (RFC 1035, 6891).
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
OPCODE_MASK = 0x7800
RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL = 0, 1, 2
RCODE_NXDOMAIN, RCODE_NOTIMP, RCODE_REFUSED = 3, 4, 5
TYPE_A, TYPE_OPT, TYPE_ANY = 1, 41, 255
CLASS_IN, CLASS_ANY = 1, 255

#: Our advertised EDNS UDP payload size (the DNS flag day 2020 value).
EDNS_PAYLOAD = 1232
#: Pointer hops followed in one name before it counts as a loop.
MAX_POINTER_HOPS = 32
#: Fast-path reply cache entries before it is emptied.
CACHE_SIZE = 2048
#: Peer-permission cache entries before it is emptied.
PEER_CACHE_SIZE = 4096

DEFAULT_ALLOW: tuple[str, ...] = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "100.64.0.0/10", "::1/128", "fc00::/7", "fe80::/10",
)

_HEADER = struct.Struct("!HHHHHH")
_TYPECLASS = struct.Struct("!HH")
_RRFIXED = struct.Struct("!HHIH")


class WireError(ValueError):
    """A DNS message whose framing vesyncd cannot accept; the message says what is wrong."""


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
    C{errors}: internal errors caught (should stay 0); C{pending}: forwards in flight now.
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


@dataclass(frozen=True)
class Question:
    """The one question of a query: lower-cased wire name, type, class, and where it ends."""

    name: bytes        # wire format, ASCII lower-cased, e.g. b"\\x07server2\\x06vesync\\x03com\\x00"
    qtype: int
    qclass: int
    end: int           # offset just past the question in the message

    @property
    def key(self) -> tuple[bytes, int, int]:
        """The tuple compared when matching an upstream answer to its query."""
        return (self.name, self.qtype, self.qclass)

    def text(self) -> str:
        """The name as dotted text (for logs), with odd bytes escaped."""
        return wireToText(self.name)


def wireToText(wire: bytes) -> str:
    """Render an uncompressed wire-format name as dotted text, escaping non-printable bytes."""
    out, pos = [], 0
    while pos < len(wire) and wire[pos]:
        n = wire[pos]
        label = wire[pos + 1:pos + 1 + n]
        out.append("".join(chr(b) if 0x21 <= b < 0x7F and b not in b".\\" else "\\%03d" % b
                           for b in label))
        pos += n + 1
    return ".".join(out) + "."


def nameToWire(name: str) -> bytes:
    """Convert a dotted ASCII name to lower-cased wire format; raise C{ValueError} if invalid."""
    name = name.strip().rstrip(".").lower()
    if not name:
        raise ValueError("empty DNS name")
    try:
        labels = [label.encode("ascii") for label in name.split(".")]
    except UnicodeEncodeError:
        raise ValueError(f"DNS name {name!r} is not ASCII (use its xn-- form)") from None
    if any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"DNS name {name!r} has an empty or over-long label")
    wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    if len(wire) > 255:
        raise ValueError(f"DNS name {name!r} is longer than 255 bytes")
    return wire


def parseQuestion(data: bytes, pointers: bool = False) -> Question:
    """Parse the single question that follows the 12-byte header of C{data}.

    The name is returned lower-cased.  A compression pointer is a L{WireError} unless
    C{pointers} (used for upstream answers, where it is legal if odd).
    """
    name, pos = readName(data, 12, pointers)
    if pos + 4 > len(data):
        raise WireError("question truncated")
    qtype, qclass = _TYPECLASS.unpack_from(data, pos)
    return Question(name.lower(), qtype, qclass, pos + 4)


def readName(data: bytes, pos: int, pointers: bool = True) -> tuple[bytes, int]:
    """Read a (possibly compressed) name at C{pos}; return its wire form and the offset after it.

    Pointers must point backwards and at most L{MAX_POINTER_HOPS} are followed; the expanded
    name may not exceed 255 bytes.  Anything else raises L{WireError}.
    """
    parts = []
    total = 0
    end = -1
    hops = 0
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("name runs past the end")
        n = data[pos]
        if n == 0:
            parts.append(b"\0")
            total += 1
            if total > 255:
                raise WireError("name longer than 255 bytes")
            return b"".join(parts), (pos + 1 if end < 0 else end)
        if n < 64:
            if pos + 1 + n > size:
                raise WireError("label runs past the end")
            parts.append(data[pos:pos + 1 + n])
            total += n + 1
            if total > 255:
                raise WireError("name longer than 255 bytes")
            pos += n + 1
        elif n >= 0xC0:
            if not pointers:
                raise WireError("compression pointer in the question")
            if pos + 2 > size:
                raise WireError("pointer runs past the end")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if target >= pos:
                raise WireError("forward or self compression pointer")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise WireError("compression pointer chain too long")
            if end < 0:
                end = pos + 2
            pos = target
        else:
            raise WireError("reserved label type")


def skipName(data: bytes, pos: int) -> int:
    """Validate the name at C{pos} (as L{readName}) and return the offset after it."""
    return readName(data, pos, True)[1]


@dataclass
class MessageShape:
    """What L{walkRecords} learned: EDNS presence, its version and DO bit, and the end offset."""

    edns: bool = False
    ednsVersion: int = 0
    ednsDO: bool = False
    end: int = 0


def walkRecords(data: bytes, pos: int, counts: Sequence[int]) -> MessageShape:
    """Check the framing of the answer, authority and additional sections starting at C{pos}.

    C{counts} are the three record counts from the header.  Raise L{WireError} on a record that
    runs past the end, a bad name, an OPT record outside the additional section, not owned by
    the root, or present twice.  Bytes after the last record are tolerated.
    """
    shape = MessageShape()
    size = len(data)
    for section, count in enumerate(counts):
        for _ in range(count):
            owner = pos
            pos = skipName(data, pos)
            if pos + 10 > size:
                raise WireError("resource record truncated")
            rtype, rclass, ttl, rdlen = _RRFIXED.unpack_from(data, pos)
            pos += 10 + rdlen
            if pos > size:
                raise WireError("record data runs past the end")
            if rtype == TYPE_OPT:
                if section != 2 or shape.edns or data[owner] != 0:
                    raise WireError("misplaced or repeated OPT record")
                shape.edns = True
                shape.ednsVersion = (ttl >> 16) & 0xFF
                shape.ednsDO = bool(ttl & 0x8000)
    shape.end = pos
    return shape


def makeHeader(query: bytes, rcode: int, flags: int = 0, qd: int = 0, an: int = 0,
               ar: int = 0) -> bytes:
    """A response header for C{query}: its ID, opcode and RD bit, QR and RA set, C{rcode}."""
    qflags = (query[2] << 8) | query[3]
    flags |= QR | RA | (qflags & (OPCODE_MASK | RD)) | (rcode & 0xF)
    return query[:2] + _HEADER.pack(0, flags, qd, an, 0, ar)[2:]


def errorResponse(query: bytes, rcode: int, question: Question | None = None) -> bytes:
    """A reply to C{query} carrying only C{rcode} (and the question, copied, when known)."""
    if question is None:
        return makeHeader(query, rcode)
    return makeHeader(query, rcode, qd=1) + query[12:question.end]


def optRecord(do: bool, extRcode: int = 0) -> bytes:
    """Our OPT pseudo-record: root owner, L{EDNS_PAYLOAD}, version 0, DO echoed, no options."""
    return b"\0" + struct.pack("!HHBBHH", TYPE_OPT, EDNS_PAYLOAD, extRcode, 0,
                               0x8000 if do else 0, 0)


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


_DROP = Outcome(Outcome.DROP)

#: Given (peer host, local host or None), the IPv4 address to answer with, or None.
AnswerAddress = Callable[[str, "str | None"], "str | None"]


class DNSCore:
    """The decision logic: one query in, one L{Outcome} out, never an exception.

    Rules, in order: messages shorter than a header or with QR set are dropped; sources outside
    C{allow} get REFUSED; opcodes other than QUERY get NOTIMP; a question count other than one
    or broken framing gets FORMERR; an intercepted name is answered here (A with the address
    from C{answerAddress}, every other type NOERROR without data, EDNS echoed, BADVERS for
    EDNS versions above 0); anything else is returned as C{FORWARD}.
    """

    def __init__(self, *, intercept: Iterable[str], allow: Iterable[str] | None,
                 answerAddress: AnswerAddress, clock: IReactorTime, ttl: int = 60,
                 counters: DNSCounters | None = None, logger: Logger = log) -> None:
        self.intercept = frozenset(nameToWire(n) for n in intercept)
        self.allow = parseNetworks(DEFAULT_ALLOW if allow is None else allow)
        self.answerAddress = answerAddress
        self.ttl = ttl
        self.counters = counters if counters is not None else DNSCounters()
        self.badInput = RateLimitedLog(clock, logger)
        self._peerAllowed: dict[str, bool] = {}
        self._cache: dict[tuple[bytes, str], bytes] = {}

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

    def _decide(self, data: bytes, host: str, peer: tuple[str, int], address: str | None,
                key: bytes) -> Outcome:
        if len(data) < 12:
            self.counters.malformed += 1
            self.badInput.warn("DNS: runt packet ({size} bytes) from {peer}",
                               size=len(data), peer=_peerText(peer))
            return _DROP
        _id, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
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
            return Outcome(Outcome.FORWARD, data, question)
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
        return Outcome(Outcome.REPLY, reply, question)

    def _intercepted(self, data: bytes, question: Question, shape: MessageShape,
                     address: str | None) -> bytes | None:
        """The authoritative reply for an intercepted name, or None if no address is known."""
        opt = b""
        if shape.edns:
            if shape.ednsVersion != 0:  # BADVERS: extended rcode 16 = 1 << 4 | 0
                return (makeHeader(data, 0, AA, qd=1, ar=1) + data[12:question.end]
                        + optRecord(shape.ednsDO, extRcode=1))
            opt = optRecord(shape.ednsDO)
        answers = b""
        if question.qtype in (TYPE_A, TYPE_ANY) and question.qclass in (CLASS_IN, CLASS_ANY):
            if address is None:
                return None
            answers = (b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, self.ttl, 4)
                       + ipaddress.IPv4Address(address).packed)
        return (makeHeader(data, RCODE_NOERROR, AA, qd=1, an=1 if answers else 0,
                           ar=1 if opt else 0)
                + data[12:question.end] + answers + opt)


def _peerText(peer: tuple[str, int] | object) -> str:
    """C{host:port} (or C{[v6]:port}) for a log line."""
    try:
        host, port = peer[0], peer[1]  # type: ignore[index]
    except Exception:
        return str(peer)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
