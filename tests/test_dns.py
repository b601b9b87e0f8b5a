"""In-memory tests of the DNS responder's core: the rules for every kind of query, counters and
the rate-limited log.

No network and no real time: L{task.Clock}.
"""

from __future__ import annotations

import struct

import pytest
from dnslib import CAA, DNSRecord, EDNS0, QTYPE, RR, A
from twisted.internet import task
from twisted.logger import Logger, LogLevel

from tests.dns_helpers import LAN, makeCore, query
from vesyncd.dns.answers import DNSCore, DNSCounters, Outcome, RateLimitedLog
from vesyncd.dns.wire import nameToWire, parseQuestion


def handle(core: DNSCore, data: bytes, peer=LAN) -> Outcome:
    """Run C{data} through C{core}."""
    return core.handle(data, peer, None)


def reply(core: DNSCore, data: bytes, peer=LAN) -> DNSRecord:
    """Run C{data} through C{core} and parse the reply it must produce."""
    outcome = handle(core, data, peer)
    assert outcome.action == Outcome.REPLY, outcome
    return DNSRecord.parse(outcome.data)


# --- intercepted names ------------------------------------------------------------------------


def test_interceptedAnswersA_casePreserved():
    """An intercepted A query is answered with the address, TTL 60, AA, ID and 0x20 case kept."""
    core = makeCore()
    r = reply(core, query("SeRvEr2.VeSync.COM", qid=0xBEEF))
    assert r.header.id == 0xBEEF and r.header.qr == 1 and r.header.aa == 1
    assert r.header.rcode == 0 and r.header.rd == 1
    assert str(r.q.qname) == "SeRvEr2.VeSync.COM."
    assert len(r.rr) == 1
    assert str(r.rr[0].rdata) == "192.168.1.2" and r.rr[0].ttl == 60
    assert r.rr[0].rtype == QTYPE.A
    assert core.counters.answered == 1


def test_interceptedTrailingDotAndRDCopied():
    """The configured name may have a trailing dot; a query's RD=0 is echoed as RD=0."""
    core = makeCore(intercept=["Server2.Vesync.com."])
    r = reply(core, query(rd=False))
    assert r.header.rd == 0 and len(r.rr) == 1


@pytest.mark.parametrize("qtype", ["AAAA", "MX", "TXT", "HTTPS", "SOA"])
def test_interceptedOtherTypesNoData(qtype):
    """Other types for an intercepted name get NOERROR with no records."""
    r = reply(makeCore(), query(qtype=qtype))
    assert r.header.rcode == 0 and r.header.aa == 1 and r.rr == [] and r.ar == []


def test_interceptedAnyGivesA():
    """An ANY query for the intercepted name gets the A record."""
    r = reply(makeCore(), query(qtype="ANY"))
    assert [rr.rtype for rr in r.rr] == [QTYPE.A]


def test_interceptedEDNSEchoed():
    """A query with EDNS gets an OPT record back with the DO bit echoed."""
    r = reply(makeCore(), query(edns=True, do=True))
    assert len(r.rr) == 1 and len(r.ar) == 1
    opt = r.ar[0]
    assert opt.rtype == QTYPE.OPT and opt.rclass == 1232 and opt.ttl & 0x8000


def test_interceptedBadEDNSVersion():
    """EDNS version 1 gets BADVERS (extended rcode 1 in OPT) and no answer."""
    q = DNSRecord.parse(query())
    q.add_ar(EDNS0(version=1, udp_len=4096))
    r = reply(makeCore(), bytes(q.pack()))
    assert r.rr == [] and r.ar[0].ttl >> 24 == 1


def test_subdomainAndOtherNamesForwarded():
    """Only the exact name is intercepted: subdomains and other names are forwarded as is."""
    core = makeCore()
    for name in ("x.server2.vesync.com", "vesync.com", "server2.vesync.com.evil"):
        data = query(name, edns=True, do=True)
        outcome = handle(core, data)
        assert outcome.action == Outcome.FORWARD and outcome.data == data
        assert outcome.question.name == nameToWire(name)
    assert core.counters.answered == 0


def test_cachedReplyUsesNewID():
    """A repeated query (fast-path cache) still gets its own ID back."""
    core = makeCore()
    reply(core, query(qid=1))
    r = reply(core, query(qid=2))
    assert r.header.id == 2 and str(r.rr[0].rdata) == "192.168.1.2"
    assert core.counters.answered == 2


def test_noAddressServfail():
    """When no address of this host can be found the A query gets SERVFAIL, never 0.0.0.0."""
    core = makeCore(address=None)
    r = reply(core, query())
    assert r.header.rcode == 2 and r.rr == []
    assert reply(core, query(qtype="AAAA")).header.rcode == 0


# --- rules for bad or unwanted input ---------------------------------------------------------


def test_responsesDropped():
    """Messages with QR=1 are never answered (no reflection loops)."""
    r = DNSRecord.parse(query())
    r.header.qr = 1
    core = makeCore()
    assert handle(core, r.pack()).action == Outcome.DROP
    assert handle(core, r.pack(), peer=("8.8.8.8", 53)).action == Outcome.DROP
    assert core.counters.dropped == 2


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_otherOpcodesNotImp(opcode):
    """Opcodes other than QUERY get NOTIMP with the opcode echoed."""
    r = DNSRecord.parse(query())
    r.header.opcode = opcode
    out = reply(makeCore(), r.pack())
    assert out.header.rcode == 4 and out.header.opcode == opcode and out.header.id == 0x1234


def test_refusedOutsideAllow():
    """Public sources get REFUSED (not an open resolver); private ranges and loopback are served."""
    core = makeCore()
    for peer in ("8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"):
        assert reply(core, query(), (peer, 5353)).header.rcode == 5
    for peer in ("10.1.2.3", "172.20.0.1", "127.0.0.1", "::1", "fe80::1", "fd00::5",
                 "::ffff:192.168.0.9", "100.64.1.1", "169.254.3.3"):
        assert reply(core, query(), (peer, 5353)).header.rcode == 0, peer
    assert core.counters.refused == 3


def test_customAllow():
    """An explicit allow list replaces the defaults."""
    core = makeCore(allow=["192.168.1.0/24"])
    assert reply(core, query(), ("192.168.1.9", 1)).header.rcode == 0
    assert reply(core, query(), ("10.0.0.1", 1)).header.rcode == 5


@pytest.mark.parametrize("qd", [0, 2])
def test_questionCountFormerr(qd):
    """A question count other than 1 gets FORMERR."""
    data = bytearray(query())
    data[4:6] = struct.pack("!H", qd)
    if qd == 2:
        data += data[12:]
    core = makeCore()
    r = reply(core, bytes(data))
    assert r.header.rcode == 1 and r.header.id == 0x1234
    assert core.counters.malformed == 1


@pytest.mark.parametrize("cut", [12, 13, 20, 31, 33])
def test_truncatedFormerr(cut):
    """A packet truncated inside its question gets FORMERR with the ID echoed."""
    out = handle(makeCore(), query()[:cut])
    assert out.action == Outcome.REPLY
    assert out.data[:2] == b"\x12\x34" and out.data[3] & 0xF == 1


@pytest.mark.parametrize("data", [b"", b"\x12", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_runtsDropped(data):
    """Fewer than 12 bytes (no readable header) are dropped and counted."""
    core = makeCore()
    assert handle(core, data).action == Outcome.DROP
    assert core.counters.malformed == 1


def test_pointerInQuestionFormerr():
    """A compression pointer in the question (pointing back into itself) gets FORMERR."""
    data = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x01a\xc0\x0c\x00\x01\x00\x01"
    assert reply(makeCore(), data).header.rcode == 1


def test_pointerLoopInAdditionalFormerr():
    """A pointer loop in a later section gets FORMERR (bounded work, no recursion)."""
    base = query("example.com")
    data = bytearray(base)
    data[10:12] = b"\x00\x01"
    loopAt = len(data)
    data += b"\x01x" + struct.pack("!H", 0xC000 | loopAt) + b"\x00\x01\x00\x01\0\0\0\0\0\0"
    r = reply(makeCore(), bytes(data))
    assert r.header.rcode == 1


def test_longPointerChainFormerr():
    """A long backward pointer chain (RecursionError in dnslib) gets FORMERR, no exception."""
    data = bytearray(query("example.com"))
    data[10:12] = b"\x00\x02"
    hops = 3000
    rdata_at = len(data) + 11
    chain = bytearray(b"\x00")
    for k in range(hops):
        target = rdata_at if k == 0 else rdata_at + 1 + 2 * (k - 1)
        chain += struct.pack("!H", 0xC000 | target)
    data += b"\x00" + struct.pack("!HHIH", 10, 1, 0, len(chain)) + chain
    data += struct.pack("!H", 0xC000 | (rdata_at + 1 + 2 * (hops - 1)))
    data += struct.pack("!HHIH", 1, 1, 0, 0)
    with pytest.raises(RecursionError):
        DNSRecord.parse(bytes(data))
    core = makeCore()
    assert reply(core, bytes(data)).header.rcode == 1
    assert core.counters.errors == 0 and core.counters.malformed == 1


def test_badCAATagStillForwarded():
    """A record dnslib cannot decode (CAA with a non-UTF-8 tag) is framing-valid: forwarded."""
    q = DNSRecord.parse(query("example.com"))
    q.add_answer(RR("example.com", QTYPE.CAA, rdata=CAA(0, "issue", "ca.example")))
    data = q.pack().replace(b"issue", b"\xff\xfesue")
    with pytest.raises(Exception):
        DNSRecord.parse(data)
    outcome = handle(makeCore(), data)
    assert outcome.action == Outcome.FORWARD and outcome.data == data


def test_recordRunningPastEndFormerr():
    """A record whose RDLENGTH runs past the packet gets FORMERR."""
    q = DNSRecord.parse(query("example.com"))
    q.add_ar(RR("example.com", QTYPE.A, rdata=A("1.2.3.4")))
    assert reply(makeCore(), q.pack()[:-2]).header.rcode == 1


def test_duplicateOPTFormerr():
    """Two OPT records get FORMERR."""
    q = DNSRecord.parse(query(edns=True))
    q.add_ar(EDNS0())
    assert reply(makeCore(), q.pack()).header.rcode == 1


def test_internalErrorNeverEscapes():
    """Even an exception from an injected helper is caught, counted and turned into a drop."""
    def broken(peer, local):
        raise RuntimeError("boom")
    core = DNSCore(intercept=["server2.vesync.com"], allow=None, answerAddress=broken,
                   clock=task.Clock())
    assert handle(core, query()).action == Outcome.DROP
    assert core.counters.errors == 1


def test_parseQuestionLowercases():
    """parseQuestion returns the lower-cased wire name and the end offset."""
    q = parseQuestion(query("A.B"))
    assert q.name == b"\x01a\x01b\x00" and q.qtype == 1 and q.end == 12 + 5 + 4
    assert q.text() == "a.b."


# --- counters and logging ---------------------------------------------------------------------


def test_countersReadable():
    """Counters read as attributes, by key, and as a dict snapshot."""
    c = DNSCounters()
    c.answered += 2
    d = c.asDict()
    assert c["answered"] == 2 and d["answered"] == 2
    for name in ("answered", "forwarded", "refused", "malformed", "upstream_failures"):
        assert name in d
    with pytest.raises(KeyError):
        c["nope"]


def test_rateLimitedLog():
    """At most C{burst} warnings per period; the number suppressed is reported next period."""
    events = []
    logger = Logger(observer=events.append)
    clock = task.Clock()
    limiter = RateLimitedLog(clock, logger, burst=3, period=60)
    results = [limiter.warn("bad {n}", n=i) for i in range(10)]
    assert results == [True] * 3 + [False] * 7 and len(events) == 3
    clock.advance(61)
    assert limiter.warn("bad again")
    assert len(events) == 5 and events[3]["count"] == 7
    assert events[0]["log_level"] == LogLevel.warn


def test_badInputLoggedWithPeer():
    """A malformed query is logged with the peer address."""
    events = []
    core = DNSCore(intercept=["server2.vesync.com"], allow=None, clock=task.Clock(),
                   answerAddress=lambda p, l: "10.0.0.1", logger=Logger(observer=events.append))
    handle(core, b"\x00\x01\x01\x00\x00\x02" + b"\0" * 6, ("10.9.9.9", 1234))
    assert events and events[0]["peer"] == "10.9.9.9:1234"
