"""Property tests: whatever bytes arrive, the responder answers or drops, and never raises."""

from __future__ import annotations

import struct

from dnslib import CAA, DNSRecord, EDNS0, QTYPE, RR, A, TXT
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from vesyncd.dns.adapters import DNSStreamFactory
from vesyncd.dns.answers import DNSCore, Outcome
from vesyncd.dns.forward import Forwarder, checkAnswer
from vesyncd.dns.wire import parseQuestion

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def seeds() -> list[bytes]:
    """Valid packets to mutate: plain, EDNS, with records of several types, a response."""
    out = []
    for name, qtype in (("server2.vesync.com", "A"), ("SERVER2.vesync.com", "AAAA"),
                        ("example.com", "TXT"), ("a.b.c.example", "CAA")):
        q = DNSRecord.question(name, qtype)
        out.append(bytes(q.pack()))
        q.add_ar(EDNS0(flags="do", udp_len=1232))
        out.append(bytes(q.pack()))
        r = q.reply()
        r.add_answer(RR(name, QTYPE.A, rdata=A("10.0.0.1")))
        r.add_answer(RR(name, QTYPE.TXT, rdata=TXT("hello")))
        r.add_answer(RR(name, QTYPE.CAA, rdata=CAA(0, "issue", "ca")))
        out.append(bytes(r.pack()))
    return out


SEEDS = seeds()


def newCore() -> DNSCore:
    """A fresh core answering 192.168.1.2 for server2.vesync.com, on a fake clock."""
    return DNSCore(intercept=["server2.vesync.com"], allow=None, clock=task.Clock(),
                   answerAddress=lambda peer, local: "192.168.1.2")


CORE = newCore()


def check(outcome: Outcome, data: bytes) -> None:
    """The outcome is a well-formed reply to C{data}, a forward of C{data}, or a drop."""
    assert outcome.action in (Outcome.REPLY, Outcome.FORWARD, Outcome.DROP)
    if outcome.action == Outcome.REPLY:
        assert len(outcome.data) >= 12 and outcome.data[:2] == data[:2]
        assert outcome.data[2] & 0x80
    elif outcome.action == Outcome.FORWARD:
        assert outcome.data == data and outcome.question is not None


@st.composite
def mutated(draw) -> bytes:
    """A seed packet with bit flips, byte overwrites, truncation, splices or pointers added."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "byte", "cut", "splice", "pointer", "count"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[i] = draw(st.sampled_from([0, 0x3F, 0x40, 0xC0, 0xFF, draw(st.integers(0, 255))]))
        elif op == "cut":
            del data[i:]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            j = draw(st.integers(0, len(other)))
            data[i:] = other[j:]
        elif op == "pointer":
            data[i:i + 2] = struct.pack("!H", 0xC000 | draw(st.integers(0, 0x3FFF)))
        elif op == "count" and len(data) >= 12:
            k = draw(st.sampled_from([4, 6, 8, 10]))
            data[k:k + 2] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    return bytes(data)


@SETTINGS
@given(st.binary(max_size=600), st.sampled_from(["192.168.1.9", "8.8.8.8", "::1"]))
def test_arbitraryBytes(data, host):
    """Arbitrary bytes from any source: a reply, a forward or a drop; never an exception."""
    core = CORE
    before = core.counters.errors
    check(core.handle(data, (host, 5353), None), data)
    assert core.counters.errors == before


@SETTINGS
@given(mutated())
def test_mutatedPackets(data):
    """Mutated valid packets: a reply, a forward or a drop; never an exception."""
    before = CORE.counters.errors
    check(CORE.handle(data, ("10.0.0.3", 5353), "10.0.0.1"), data)
    assert CORE.counters.errors == before


@SETTINGS
@given(mutated())
def test_checkAnswerNeverRaises(data):
    """An upstream packet of any shape is either our answer or not; checking never raises."""
    question = parseQuestion(SEEDS[0])
    assert checkAnswer(data, {0, 1, data[0] << 8 | data[1] if len(data) > 1 else 0},
                       question) in (True, False)


@SETTINGS
@given(st.lists(mutated(), max_size=4), st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_tcpStreamNeverRaises(messages, cuts):
    """A TCP stream of length-prefixed junk cut into arbitrary segments never raises."""
    clock = task.Clock()
    core = newCore()
    factory = DNSStreamFactory(core, Forwarder(clock, [], openUDP=None, connectTCP=None,
                                               counters=core.counters), clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "192.168.1.2", 53),
                                peerAddress=IPv4Address("TCP", "192.168.1.9", 4000))
    proto.makeConnection(transport)
    stream = b"".join(struct.pack("!H", len(m) & 0xFFFF) + m for m in messages)
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        proto.dataReceived(stream[pos:pos + step])
        pos += step
        i += 1
    assert core.counters.errors == 0
    proto.connectionLost(None)
