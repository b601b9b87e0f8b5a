"""Forwarding against fake upstream resolvers started by the test on 127.0.0.1.

Real loopback sockets carry the packets; the forwarder's timers run on a L{task.Clock}, so
timeouts are stepped, never waited for.
"""

from __future__ import annotations

import struct

from dnslib import CAA, DNSRecord, EDNS0, QTYPE, RR, SRV, TXT, A
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.trial import unittest

from tests.fakes import waitFor
from vesyncd.dns.answers import DNSCounters
from vesyncd.dns.wire import parseQuestion
from vesyncd.dns.forward import Forwarder, checkAnswer


def query(name: str, qtype: str = "A", qid: int = 0x4242, edns: bool = False) -> bytes:
    """A query packet (optionally with EDNS and the DO bit)."""
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns:
        q.add_ar(EDNS0(flags="do", udp_len=4096))
    return bytes(q.pack())


def richAnswer(q: bytes) -> bytes:
    """An answer to C{q} with record types dnslib handles poorly, including a bad CAA tag."""
    r = DNSRecord.parse(q).reply()
    name = str(r.q.qname)
    r.add_answer(RR(name, QTYPE.TXT, rdata=TXT("v=spf1 -all"), ttl=30))
    r.add_answer(RR(name, QTYPE.SRV, rdata=SRV(1, 2, 443, "x.example."), ttl=30))
    r.add_answer(RR(name, QTYPE.CAA, rdata=CAA(0, "issue", "ca.example"), ttl=30))
    r.add_answer(RR(name, QTYPE.A, rdata=A("203.0.113.9"), ttl=30))
    raw = bytes(r.pack()).replace(b"issue", b"\xff\xfesue")
    # an unknown type 65280 with opaque data, then the answer count fixed up
    raw += b"\xc0\x0c" + struct.pack("!HHIH", 65280, 1, 30, 3) + b"\x01\x02\x03"
    return raw[:6] + struct.pack("!H", 5) + raw[8:]


class FakeUpstream(DatagramProtocol):
    """A UDP resolver on loopback: records queries; C{respond} decides what to send back."""

    def __init__(self) -> None:
        self.queries: list[bytes] = []
        self.respond = lambda data, addr: [richAnswer(data)]
        self.waiting: list[defer.Deferred] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        self.queries.append(data)
        for packet in self.respond(data, addr):
            self.transport.write(packet, addr)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(data)

    def nextQuery(self) -> defer.Deferred:
        """Fires with the next query received."""
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class FakeStreamUpstream(Protocol):
    """A TCP resolver connection: answers each length-prefixed query with L{richAnswer}."""

    def connectionMade(self) -> None:
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2 and len(self.buf) >= 2 + struct.unpack("!H", self.buf[:2])[0]:
            n = struct.unpack("!H", self.buf[:2])[0]
            q, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
            self.factory.queries.append(q)
            a = richAnswer(q)
            self.transport.write(struct.pack("!H", len(a)) + a)


class ForwardTests(unittest.TestCase):
    """Forwarding rules, checked end to end over loopback sockets."""

    timeout = 20

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.counters = DNSCounters()
        self.upstreams = [self.startUpstream(), self.startUpstream()]

    def startUpstream(self) -> tuple[FakeUpstream, int]:
        proto = FakeUpstream()
        port = reactor.listenUDP(0, proto, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return proto, port.getHost().port

    def forwarder(self, upstreams=None, **kw) -> Forwarder:
        """A forwarder using real loopback sockets and the fake clock."""
        ups = [("127.0.0.1", p) for _, p in self.upstreams] if upstreams is None else upstreams

        def openUDP(proto, family):
            port = reactor.listenUDP(0, proto, interface="127.0.0.1", maxPacketSize=65535)
            self.ports.append(port)
            return port

        def connectTCP(host, port, factory, timeout):
            return reactor.connectTCP(host, port, factory, timeout=timeout)
        self.ports: list = []
        fw = Forwarder(self.clock, ups, openUDP=openUDP, connectTCP=connectTCP,
                       counters=self.counters, **kw)
        self.addCleanup(fw.stop)
        return fw

    def forward(self, fw: Forwarder, q: bytes, tcp: bool = False, client=None) -> defer.Deferred:
        """Forward C{q}; the Deferred fires with the reply bytes."""
        d = defer.Deferred()
        fw.forward(q, parseQuestion(q), d.callback, tcp=tcp, client=client)
        return d

    @defer.inlineCallbacks
    def test_passthroughWithIDRewrite(self):
        """Query bytes reach upstream unchanged but for a new ID; the answer returns unchanged
        but for the client's ID, with every record type (TXT, SRV, bad CAA, type 65280)."""
        fw = self.forwarder()
        q = query("Example.COM", "ANY", edns=True)
        answer = yield self.forward(fw, q)
        seen = self.upstreams[0][0].queries[0]
        self.assertEqual(seen[2:], q[2:])
        self.assertNotEqual(seen[:2], q[:2])
        self.assertEqual(answer[:2], q[:2])
        self.assertEqual(answer[2:], richAnswer(seen)[2:])
        self.assertEqual(self.counters.forwarded, 1)
        self.assertEqual(self.counters.forward_replies, 1)
        self.assertEqual(fw.pending, {})
        self.assertEqual(self.counters.pending, 0)

    @defer.inlineCallbacks
    def test_freshIDsAndPorts(self):
        """Each forwarded query gets its own random ID and its own source port."""
        fw = self.forwarder()
        up = self.upstreams[0][0]
        sources = []
        up.respond = lambda data, addr: sources.append(addr) or [richAnswer(data)]
        for i in range(4):
            yield self.forward(fw, query(f"n{i}.example", qid=7))
        self.assertEqual(len({q[:2] for q in up.queries}), 4)
        self.assertEqual(len({port for _, port in sources}), 4)

    @defer.inlineCallbacks
    def test_spoofedAnswersDropped(self):
        """Answers with a wrong ID, from a wrong source port or for another question are dropped;
        the genuine one is relayed."""
        fw = self.forwarder()
        up = self.upstreams[0][0]
        other = FakeUpstream()
        otherPort = reactor.listenUDP(0, other, interface="127.0.0.1")
        self.addCleanup(otherPort.stopListening)

        def respond(data, addr):
            good = richAnswer(data)
            wrongID = bytes([data[0] ^ 0xFF, data[1]]) + good[2:]
            wrongQ = richAnswer(bytes(data[:2]) + query("evil.example")[2:])
            other.transport.write(good, addr)  # right ID, wrong source port
            return [wrongID, wrongQ]
        up.respond = respond
        q = query("example.com")
        d = self.forward(fw, q)
        yield up.nextQuery()
        yield waitFor(lambda: self.counters.spoofed == 3)
        self.assertFalse(d.called)
        up.respond = lambda data, addr: [richAnswer(data)]
        up.transport.write(richAnswer(up.queries[0]), ("127.0.0.1", self.ports[0].getHost().port))
        answer = yield d
        self.assertEqual(answer[:2], q[:2])

    @defer.inlineCallbacks
    def test_timeoutNextUpstreamThenServfail(self):
        """A silent upstream is left after 2 s for the next; after 5 s in all, SERVFAIL."""
        for up, _ in self.upstreams:
            up.respond = lambda data, addr: []
        fw = self.forwarder()
        q = query("slow.example")
        d = self.forward(fw, q)
        yield self.upstreams[0][0].nextQuery()
        second = self.upstreams[1][0].nextQuery()
        self.clock.advance(2.0)
        yield second
        self.assertEqual(self.counters.upstream_timeouts, 1)
        self.clock.advance(2.0)
        yield waitFor(lambda: len(self.upstreams[0][0].queries) == 2)
        self.assertFalse(d.called)
        self.clock.advance(1.0)
        answer = yield d
        r = DNSRecord.parse(answer)
        self.assertEqual((r.header.rcode, r.header.id), (2, 0x4242))
        self.assertEqual(str(r.q.qname), "slow.example.")
        self.assertEqual(self.counters.upstream_failures, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_lateAnswerFromFirstUpstreamAccepted(self):
        """After moving on, a late answer from the first upstream is still accepted."""
        first, second = self.upstreams[0][0], self.upstreams[1][0]
        held = []
        first.respond = lambda data, addr: held.append((data, addr)) or []
        second.respond = lambda data, addr: []
        fw = self.forwarder()
        d = self.forward(fw, query("late.example"))
        yield first.nextQuery()
        waiting = second.nextQuery()
        self.clock.advance(2.0)
        yield waiting
        data, addr = held[0]
        first.transport.write(richAnswer(data), addr)
        answer = yield d
        self.assertEqual(answer[2:], richAnswer(data)[2:])

    @defer.inlineCallbacks
    def test_tcpForwardedOverTCP(self):
        """A query that came over TCP is forwarded over TCP, with the ID rewritten and restored."""
        factory = Factory.forProtocol(FakeStreamUpstream)
        factory.queries = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        fw = self.forwarder([("127.0.0.1", port.getHost().port)])
        q = query("tcp.example", "TXT", edns=True)
        answer = yield self.forward(fw, q, tcp=True)
        self.assertEqual(len(factory.queries), 1)
        self.assertEqual(factory.queries[0][2:], q[2:])
        self.assertEqual(answer[:2], q[:2])
        self.assertEqual(self.upstreams[0][0].queries, [])
        self.assertEqual(answer[2:], richAnswer(factory.queries[0])[2:])

    @defer.inlineCallbacks
    def test_tcpRefusedEverywhereServfail(self):
        """TCP upstreams that refuse connections lead to SERVFAIL without waiting for the deadline."""
        closed = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        portNumber = closed.getHost().port
        yield closed.stopListening()
        fw = self.forwarder([("127.0.0.1", portNumber)])
        answer = yield self.forward(fw, query("refused.example"), tcp=True)
        self.assertEqual(DNSRecord.parse(answer).header.rcode, 2)

    def test_pendingBoundServfailAtOnce(self):
        """Beyond maxPending forwards in flight, queries get SERVFAIL at once."""
        for up, _ in self.upstreams:
            up.respond = lambda data, addr: []
        fw = self.forwarder(maxPending=2)
        got = []
        for i in range(3):
            q = query(f"p{i}.example")
            fw.forward(q, parseQuestion(q), got.append)
        self.assertEqual(len(got), 1)
        self.assertEqual(DNSRecord.parse(got[0]).header.rcode, 2)
        self.assertEqual(self.counters.overload, 1)
        self.assertEqual(self.counters.pending, 2)

    def test_noUpstreamsServfail(self):
        """With no upstream configured, forwarded names get SERVFAIL at once."""
        fw = self.forwarder([])
        got = []
        q = query("x.example")
        fw.forward(q, parseQuestion(q), got.append)
        self.assertEqual(DNSRecord.parse(got[0]).header.rcode, 2)

    def test_retransmitCoalesced(self):
        """A client's retransmission (same address, ID, question) while pending is not resent."""
        for up, _ in self.upstreams:
            up.respond = lambda data, addr: []
        fw = self.forwarder()
        q = query("dup.example")
        got = []
        fw.forward(q, parseQuestion(q), got.append, client=("10.0.0.5", 999))
        fw.forward(q, parseQuestion(q), got.append, client=("10.0.0.5", 999))
        self.assertEqual((self.counters.forwarded, self.counters.duplicates), (1, 1))


def test_checkAnswerRules():
    """checkAnswer wants QR, a known ID and the same question (name case-insensitively)."""
    q = query("Example.com")
    question = parseQuestion(q)
    good = richAnswer(q)
    assert checkAnswer(good, {0x4242}, question)
    assert checkAnswer(richAnswer(query("EXAMPLE.COM")), {0x4242}, question)
    assert not checkAnswer(good, {0x4243}, question)
    assert not checkAnswer(q, {0x4242}, question)  # QR=0
    assert not checkAnswer(richAnswer(query("example.com", "AAAA")), {0x4242}, question)
    assert not checkAnswer(good[:20], {0x4242}, question)
    assert not checkAnswer(b"", {0x4242}, question)
