"""
The DNS message codec of vesyncd's responder: names, the question, the framing of records,
and the few replies built by hand.

The parsing is our own, deliberately small and strict: the header, the single question (no
compression pointers: nothing precedes it that could be pointed at), then a walk over the
remaining records that checks only their framing (names with bounded, backward-only pointers;
lengths within the packet) and notes the EDNS OPT record.  Record data is never interpreted,
so the parser bugs of general-purpose libraries (dnslib's RecursionError on long pointer
chains, UnicodeDecodeError on a CAA tag) cannot be reached from here.

L{truncateResponse} cuts an answer down to what a UDP client can take, with the TC bit set.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

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
#: The UDP payload every client can take without EDNS (RFC 1035).
CLASSIC_UDP_PAYLOAD = 512

HEADER = struct.Struct("!HHHHHH")
_TYPECLASS = struct.Struct("!HH")
_RRFIXED = struct.Struct("!HHIH")


class WireError(ValueError):
    """A DNS message whose framing vesyncd cannot accept; the message says what is wrong."""


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
    """What L{walkRecords} learned: EDNS presence, its version, DO bit and advertised UDP payload
    size, and the end offset."""

    edns: bool = False
    ednsVersion: int = 0
    ednsDO: bool = False
    ednsPayload: int = 0
    end: int = 0

    def udpPayload(self) -> int:
        """The largest UDP answer the sender said it takes: 512 without EDNS, never less."""
        return max(CLASSIC_UDP_PAYLOAD, self.ednsPayload) if self.edns else CLASSIC_UDP_PAYLOAD


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
                shape.ednsPayload = rclass
    shape.end = pos
    return shape


def makeHeader(query: bytes, rcode: int, flags: int = 0, qd: int = 0, an: int = 0,
               ar: int = 0) -> bytes:
    """A response header for C{query}: its ID, opcode and RD bit, QR and RA set, C{rcode}."""
    qflags = (query[2] << 8) | query[3]
    flags |= QR | RA | (qflags & (OPCODE_MASK | RD)) | (rcode & 0xF)
    return query[:2] + HEADER.pack(0, flags, qd, an, 0, ar)[2:]


def errorResponse(query: bytes, rcode: int, question: Question | None = None) -> bytes:
    """A reply to C{query} carrying only C{rcode} (and the question, copied, when known)."""
    if question is None:
        return makeHeader(query, rcode)
    return makeHeader(query, rcode, qd=1) + query[12:question.end]


def optRecord(do: bool, extRcode: int = 0) -> bytes:
    """Our OPT pseudo-record: root owner, L{EDNS_PAYLOAD}, version 0, DO echoed, no options."""
    return b"\0" + struct.pack("!HHBBHH", TYPE_OPT, EDNS_PAYLOAD, extRcode, 0,
                               0x8000 if do else 0, 0)



def truncateResponse(response: bytes, limit: int, query: bytes, question: Question | None,
                     edns: bool, do: bool = False) -> bytes:
    """C{response} if it fits in C{limit} bytes, else a TC reply that tells the client to retry
    over TCP.

    The TC reply keeps the response's ID, flags and rcode and carries the query's question (if
    known) and,
    when the query had EDNS, our OPT record; every record is dropped (RFC 2181 section 9 lets a
    client ignore a truncated answer's records anyway), so it is never larger than the query
    plus an OPT record, whatever the upstream sent.
    """
    if len(response) <= limit:
        return response
    flags = ((response[2] << 8) | response[3]) | TC
    opt = optRecord(do) if edns else b""
    asked = query[12:question.end] if question is not None else b""
    return (response[:2] + HEADER.pack(0, flags, 1 if asked else 0, 0, 0, 1 if opt else 0)[2:]
            + asked + opt)
