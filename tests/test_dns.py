"""In-memory tests of the DNS responder: the core's rules, the adapters, start-up errors.

No network and no real time: L{task.Clock}, fake datagram transports and L{StringTransport}.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest
from dnslib import CAA, DNSRecord, EDNS0, QTYPE, RR, A
from twisted.internet import task
from twisted.internet.error import CannotListenError
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel

from vesyncd.dns.adapters import DNSDatagramProtocol, DNSStreamFactory
from vesyncd.dns.answers import DNSCore, DNSCounters, Outcome, RateLimitedLog
from vesyncd.dns.discovery import AnswerAddressFinder, parseUpstream, systemUpstreams
from vesyncd.dns.forward import Forwarder
from vesyncd.dns.server import DNSStartupError, makeDNSService
from vesyncd.dns.wire import nameToWire, parseQuestion

LAN = ("192.168.1.50", 40000)


def makeCore(address: str | None = "192.168.1.2", **kw) -> DNSCore:
    """A core answering with C{address}, with a fake clock."""
    kw.setdefault("intercept", ["server2.vesync.com"])
    kw.setdefault("allow", None)
    return DNSCore(answerAddress=lambda peer, local: address, clock=task.Clock(), **kw)


def query(name: str = "server2.vesync.com", qtype: str = "A", qid: int = 0x1234,
          edns: bool = False, do: bool = False, rd: bool = True) -> bytes:
    """A query packet built with dnslib."""
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    if edns:
        q.add_ar(EDNS0(flags="do" if do else "", udp_len=4096))
    return bytes(q.pack())


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


# --- answer address ---------------------------------------------------------------------------


def test_answerAddressChoice():
    """Fixed address wins; else the specific local address; else the route to the peer; else LAN."""
    clock = task.Clock()
    assert AnswerAddressFinder(clock, "10.0.0.7")("192.168.1.5", "192.168.1.1") == "10.0.0.7"
    finder = AnswerAddressFinder(clock, None, route=lambda peer: "192.168.1.1",
                                 primary=lambda: "192.168.9.9")
    assert finder("192.168.1.5", "192.168.3.3") == "192.168.3.3"
    assert finder("192.168.1.5", "0.0.0.0") == "192.168.1.1"
    assert finder("192.168.1.5", None) == "192.168.1.1"
    assert finder("fd00::1", None) == "192.168.9.9"
    assert finder("::ffff:192.168.1.6", "::ffff:192.168.1.1") == "192.168.1.1"


def test_answerAddressFallbacks():
    """With no route and no LAN address, loopback peers get 127.0.0.1, others nothing."""
    finder = AnswerAddressFinder(task.Clock(), None, route=lambda peer: None, primary=lambda: None)
    assert finder("127.0.0.1", None) == "127.0.0.1"
    assert finder("192.168.1.5", None) is None
    finder = AnswerAddressFinder(task.Clock(), None, route=lambda p: "0.0.0.0", primary=lambda: None)
    assert finder("192.168.1.5", "0.0.0.0") is None


def test_answerAddressCachedWithExpiry():
    """The route look-up is cached per peer and redone after the cache TTL."""
    calls = []
    clock = task.Clock()
    finder = AnswerAddressFinder(clock, None, ttl=300,
                                 route=lambda p: calls.append(p) or "10.0.0.1", primary=lambda: None)
    finder("10.0.0.5", None)
    finder("10.0.0.5", None)
    assert calls == ["10.0.0.5"]
    clock.advance(301)
    finder("10.0.0.5", None)
    assert len(calls) == 2


# --- option helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("192.168.1.1", ("192.168.1.1", 53)),
    ("192.168.1.1:5353", ("192.168.1.1", 5353)),
    ("fd00::1", ("fd00::1", 53)),
    ("[fd00::1]:5353", ("fd00::1", 5353)),
    ("[::1]", ("::1", 53)),
])
def test_parseUpstream(text, expected):
    """HOST[:PORT] and [V6]:PORT parse to (address, port) with 53 as the default port."""
    assert parseUpstream(text) == expected


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:0", "1.2.3.4:x", "[::1", "[::1]x",
                                  "0.0.0.0", "1.2.3.4:70000"])
def test_parseUpstreamErrors(text):
    """Names, bad ports and unspecified addresses are rejected with ValueError."""
    with pytest.raises(ValueError):
        parseUpstream(text)


def test_systemUpstreams(tmp_path):
    """resolv.conf nameservers are used, minus this host's own addresses when on port 53."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nnameserver 127.0.0.1\nnameserver 192.0.2.53 # x\nsearch lan\n"
                    "nameserver fd00::53\nnameserver bogus\n")
    assert systemUpstreams(53, "", [str(conf)]) == [("192.0.2.53", 53), ("fd00::53", 53)]
    assert systemUpstreams(5353, "", [str(conf)])[0] == ("127.0.0.1", 53)
    assert systemUpstreams(53, "192.168.1.1", [str(conf)])[0] == ("127.0.0.1", 53)
    only = tmp_path / "stub.conf"
    only.write_text("nameserver 127.0.0.1\n")
    assert systemUpstreams(53, "", [str(only), str(conf)]) == [("192.0.2.53", 53),
                                                              ("fd00::53", 53)]
    assert systemUpstreams(53, "", [str(tmp_path / "missing")]) == []


@pytest.mark.parametrize("kw", [{"address": "0.0.0.0"}, {"address": "nope"},
                                {"address": "fd00::1"}, {"interface": "eth0"},
                                {"allow": ["10.0.0.0/33"]}, {"intercept": ["a..b"]},
                                {"upstreams": ["dns.google"]}, {"port": 70000}])
def test_makeDNSServiceValidates(kw):
    """Bad options are rejected with ValueError before anything is bound."""
    with pytest.raises(ValueError):
        makeDNSService(task.Clock(), **{"upstreams": [], **kw})


# --- UDP and TCP adapters ---------------------------------------------------------------------


class FakeDatagramTransport:
    """Records datagrams written, as (data, addr)."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


def adapters(address: str = "192.168.1.2"):
    """A core, a forwarder with no upstreams, and both adapters on a fake clock."""
    clock = task.Clock()
    counters = DNSCounters()
    core = DNSCore(intercept=["server2.vesync.com"], allow=None, clock=clock,
                   answerAddress=lambda p, l: address, counters=counters)
    forwarder = Forwarder(clock, [], openUDP=None, connectTCP=None, counters=counters)
    udp = DNSDatagramProtocol(core, forwarder)
    udp.transport = FakeDatagramTransport()
    factory = DNSStreamFactory(core, forwarder, clock)
    return clock, core, udp, factory


def test_udpAdapterRepliesToSender():
    """A datagram's reply goes to its sender; a forward with no upstream gets SERVFAIL."""
    _, core, udp, _ = adapters()
    udp.datagramReceived(query(), LAN)
    udp.datagramReceived(query("example.com"), LAN)
    udp.datagramReceived(b"junk", LAN)
    assert [addr for _, addr in udp.transport.written] == [LAN, LAN]
    assert DNSRecord.parse(udp.transport.written[0][0]).rr[0].rdata == A("192.168.1.2")
    assert DNSRecord.parse(udp.transport.written[1][0]).header.rcode == 2
    assert core.counters.upstream_failures == 1


def tcpConnection(factory, peer=("192.168.1.50", 5000)):
    """A connected TCP protocol over a StringTransport."""
    proto = factory.buildProtocol(None)
    transport = StringTransport(hostAddress=None, peerAddress=None)
    from twisted.internet.address import IPv4Address
    transport.hostAddr = IPv4Address("TCP", "192.168.1.2", 53)
    transport.peerAddr = IPv4Address("TCP", *peer)
    proto.makeConnection(transport)
    return proto, transport


def frames(data: bytes) -> list[bytes]:
    """Split length-prefixed TCP output into messages."""
    out = []
    while data:
        n = struct.unpack("!H", data[:2])[0]
        out.append(data[2:2 + n])
        data = data[2 + n:]
    return out


def test_tcpPipelinedAndSplit():
    """Queries split across segments and pipelined in one are each answered in order."""
    _, _, _, factory = adapters()
    proto, transport = tcpConnection(factory)
    stream = b"".join(struct.pack("!H", len(q)) + q
                      for q in (query(qid=1), query(qtype="AAAA", qid=2)))
    for i in range(0, len(stream), 7):
        proto.dataReceived(stream[i:i + 7])
    replies = [DNSRecord.parse(m) for m in frames(transport.value())]
    assert [r.header.id for r in replies] == [1, 2]
    assert len(replies[0].rr) == 1 and replies[1].rr == []


@pytest.mark.parametrize("size", [0, 16385, 65535])
def test_tcpHugeOrZeroLengthCloses(size):
    """An announced length of 0 or above the limit closes the connection without reading on."""
    _, core, _, factory = adapters()
    proto, transport = tcpConnection(factory)
    proto.dataReceived(struct.pack("!H", size) + b"x" * 100)
    assert transport.disconnecting and transport.value() == b""
    assert core.counters.tcp_oversize_closed == 1


def test_tcpIdleTimeout():
    """A client that stalls mid-query is disconnected after the idle timeout; activity resets it."""
    clock, core, _, factory = adapters()
    proto, transport = tcpConnection(factory)
    q = query()
    proto.dataReceived(struct.pack("!H", len(q)) + q)
    clock.advance(9)
    proto.dataReceived(struct.pack("!H", len(q)) + q)
    clock.advance(9)
    proto.dataReceived(struct.pack("!H", len(q)) + q[:5])  # a trickle does not reset the timer
    assert not transport.disconnecting
    clock.advance(1.5)
    assert transport.disconnecting and core.counters.tcp_idle_closed == 1
    proto.connectionLost(None)
    assert not clock.getDelayedCalls()


def test_tcpConnectionLimit():
    """Connections beyond the limit are closed at once."""
    _, _, _, factory = adapters()
    factory.maxConnections = 1
    _, t1 = tcpConnection(factory)
    _, t2 = tcpConnection(factory)
    assert not t1.disconnecting and t2.disconnecting


# --- start-up errors --------------------------------------------------------------------------


class FailingReactor(task.Clock):
    """A reactor whose listenUDP fails with a given errno."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def listenUDP(self, port, proto, interface="", maxPacketSize=8192):
        raise CannotListenError(interface, port, OSError(self.code, "x"))


def test_startupErrorInUse():
    """Port in use: one line naming systemd-resolved and the --dns-interface/--dns-port fix."""
    svc = makeDNSService(FailingReactor(errno.EADDRINUSE), upstreams=[])
    with pytest.raises(DNSStartupError) as e:
        svc.privilegedStartService()
    msg = str(e.value)
    assert "already in use" in msg and "systemd-resolved" in msg and "127.0.0.53" in msg
    assert "--dns-interface" in msg and "--dns-port" in msg and "\n" not in msg


def test_startupErrorPermission():
    """No permission: one line naming root, CAP_NET_BIND_SERVICE and twistd -u/-g."""
    svc = makeDNSService(FailingReactor(errno.EACCES), upstreams=[])
    with pytest.raises(DNSStartupError) as e:
        svc.startService()
    msg = str(e.value)
    assert "root" in msg and "CAP_NET_BIND_SERVICE" in msg.upper() and "twistd -u" in msg


def test_startupErrorNotLocal():
    """An --dns-interface that is not this host's address is explained."""
    svc = makeDNSService(FailingReactor(errno.EADDRNOTAVAIL), interface="192.0.2.99",
                         upstreams=[])
    with pytest.raises(DNSStartupError, match="not an address of this host"):
        svc.startService()


class BusyPortsReactor(task.Clock):
    """A reactor where the first C{busy} TCP binds find the port taken, as on a busy machine."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy
        self.nextPort = 40000
        self.udpPorts: list[Any] = []

    def listenUDP(self, port, proto, interface="", maxPacketSize=8192):
        """Bind a fake UDP port (a new number when asked for 0), connecting C{proto} as Twisted does."""
        self.nextPort += 1
        bound = FakeListeningPort(self.nextPort if port == 0 else port)
        proto.makeConnection(bound)  # asserts the protocol was never connected before
        self.udpPorts.append(bound)
        return bound

    def listenTCP(self, port, factory, backlog=50, interface=""):
        """Fail with EADDRINUSE C{busy} times, then bind."""
        if self.busy:
            self.busy -= 1
            raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, "in use"))
        return FakeListeningPort(port)


class FakeListeningPort:
    """A listening port that records whether it was stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = False

    def getHost(self):
        """The bound address."""
        from twisted.internet.address import IPv4Address
        return IPv4Address("UDP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        """Mark the port stopped."""
        self.stopped = True


def test_freePortRetriedWhenTCPNumberTaken():
    """With port 0, a UDP port whose number is taken for TCP is let go and another tried, each
    with a fresh protocol, until both bind on one number."""
    reactor = BusyPortsReactor(busy=5)
    svc = makeDNSService(reactor, port=0, interface="127.0.0.1", upstreams=[])
    svc.startService()
    assert svc.udpPort.getHost().port == svc.tcpPort.getHost().port == 40006
    assert [p.stopped for p in reactor.udpPorts] == [True] * 5 + [False]


def test_fixedPortTakenForTCPReleasesUDP():
    """With a fixed port, a TCP bind failure is a startup error and the UDP port is let go."""
    reactor = BusyPortsReactor(busy=1)
    svc = makeDNSService(reactor, port=5353, interface="127.0.0.1", upstreams=[])
    with pytest.raises(DNSStartupError, match="already in use"):
        svc.startService()
    assert [p.stopped for p in reactor.udpPorts] == [True] and svc.udpPort is None
