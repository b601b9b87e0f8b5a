"""The DNS responder cannot be used as an amplifier: UDP answers are cut to the client's size with
TC set, and answers per source network are rate-limited with a slip of empty TC replies.

In memory: a fake datagram transport, a fake upstream socket fed by hand, and L{task.Clock}.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from dnslib import QTYPE, RR, TXT, DNSRecord
from twisted.internet import task
from twisted.python import usage

from tests.dns_helpers import LAN, FakeDatagramTransport, query
from vesyncd.dns import tap as dnstap
from vesyncd.dns.adapters import MAX_UDP_ANSWER, DNSDatagramProtocol
from vesyncd.dns.answers import DNSCore, DNSCounters
from vesyncd.dns.forward import Forwarder
from vesyncd.dns.ratelimit import DEFAULT_RATE, ResponseRateLimiter
from vesyncd.dns.server import makeDNSService

UPSTREAM = ("192.0.2.53", 53)


def bigQuery(qid: int = 0x1234, payload: int | None = None) -> bytes:
    """A TXT query for the name whose answer the tests make big."""
    return query("big.example.org", "TXT", qid, payload=payload)


def answerOfSize(q: bytes, size: int) -> bytes:
    """An upstream answer to C{q} of C{size} bytes less at most 62 (TXT records of 63 bytes)."""
    r = DNSRecord.parse(q).reply()
    while len(r.pack()) + 63 <= size:
        r.add_answer(RR(str(r.q.qname), QTYPE.TXT, rdata=TXT("x" * 50), ttl=30))
    return bytes(r.pack())


class FakeSocket:
    """What the forwarder's openUDP returns: a port that can be stopped."""

    def stopListening(self) -> None:
        """Nothing to close."""


class Responder:
    """A UDP adapter wired to a core and a forwarder whose one upstream is answered by hand."""

    def __init__(self, rate: float | None = None, **limits: Any) -> None:
        self.clock = task.Clock()
        limiter = ResponseRateLimiter(self.clock, rate, **limits) if rate is not None else None
        self.counters = DNSCounters()
        self.core = DNSCore(intercept=["server2.vesync.com"], allow=None, clock=self.clock,
                            answerAddress=lambda peer, local: "192.168.1.2",
                            counters=self.counters)
        self.upstreamSockets: list[Any] = []
        self.forwarder = Forwarder(self.clock, [UPSTREAM], openUDP=self.openUDP,
                                   connectTCP=None, counters=self.counters)
        self.udp = DNSDatagramProtocol(self.core, self.forwarder, None, limiter)
        self.udp.transport = FakeDatagramTransport()

    def openUDP(self, proto: Any, family: str) -> FakeSocket:
        """Give the forwarded query's socket a fake transport we can read."""
        proto.transport = FakeDatagramTransport()
        self.upstreamSockets.append(proto)
        return FakeSocket()

    def ask(self, data: bytes, peer=LAN, answerSize: int | None = None) -> list[bytes]:
        """Send C{data} from C{peer}; answer a forward with C{answerSize} bytes; what came back."""
        before = len(self.udp.transport.written)
        self.udp.datagramReceived(data, peer)
        if answerSize is not None and self.upstreamSockets:
            proto = self.upstreamSockets.pop()
            sent, addr = proto.transport.written[-1]
            proto.datagramReceived(sent[:2] + answerOfSize(data, answerSize)[2:], addr)
        return [d for d, _ in self.udp.transport.written[before:]]


# --- cut to the client's size ---------------------------------------------------------------


def test_bigForwardedAnswerWithoutEDNSCutTo512WithTC():
    """The attack: a small query without EDNS drew a 3,233-byte answer; now a TC reply no bigger
    than the query comes back, with its ID and question, and the ratio is about 1."""
    r = Responder()
    q = bigQuery()
    [out] = r.ask(q, answerSize=3233)
    assert len(out) <= 512 and len(out) <= len(q)
    parsed = DNSRecord.parse(out)
    assert parsed.header.tc == 1 and parsed.header.id == 0x1234 and parsed.header.qr == 1
    assert str(parsed.q.qname) == "big.example.org." and parsed.rr == []
    assert r.counters.truncated == 1 and r.counters.forward_replies == 1


def test_answerThatFitsIsUntouched():
    """A forwarded answer within 512 bytes is relayed byte for byte (no TC)."""
    r = Responder()
    q = bigQuery()
    [out] = r.ask(q, answerSize=400)
    assert len(out) > 300 and DNSRecord.parse(out).header.tc == 0
    assert out[2:] == answerOfSize(q, 400)[2:]
    assert r.counters.truncated == 0


@pytest.mark.parametrize("payload, size, cut", [
    (4096, 1100, False),   # within the advertised size and our cap
    (4096, 3233, True),    # over our cap of 1232, whatever the client says
    (700, 1100, True),     # over the client's advertised size
    (100, 480, False),     # an advertised size below 512 counts as 512
])
def test_ednsClientGetsItsSizeUpToTheCap(payload, size, cut):
    """With EDNS the client's advertised size counts, capped at 1232; a cut answer keeps OPT."""
    r = Responder()
    [out] = r.ask(bigQuery(payload=payload), answerSize=size)
    parsed = DNSRecord.parse(out)
    assert bool(parsed.header.tc) is cut
    assert len(out) <= min(max(payload, 512), MAX_UDP_ANSWER)
    if cut:
        assert parsed.rr == [] and [a.rtype for a in parsed.ar] == [QTYPE.OPT]


def test_interceptedNameUnchanged():
    """The plugs' own answer is small and never cut."""
    r = Responder()
    [out] = r.ask(query())
    parsed = DNSRecord.parse(out)
    assert parsed.header.tc == 0 and str(parsed.rr[0].rdata) == "192.168.1.2"


# --- response-rate limiting -----------------------------------------------------------------


def test_floodFromOneNetworkLimitedWithSlip():
    """Over 10 answers/s from one /24, half the extra answers are empty TC replies and half are
    dropped; the limited queries are not even forwarded upstream."""
    r = Responder(10, slip=2)
    q = query()
    replies = [out for i in range(30) for out in r.ask(q, peer=(f"192.168.1.{50 + i % 3}", 5000))]
    full = [d for d in replies if DNSRecord.parse(d).header.tc == 0]
    slipped = [d for d in replies if DNSRecord.parse(d).header.tc == 1]
    assert (len(full), len(slipped)) == (10, 10)
    assert all(len(d) <= len(q) for d in slipped)
    assert all(DNSRecord.parse(d).header.id == 0x1234 for d in slipped)
    assert (r.counters.rate_limited, r.counters.rate_slipped) == (20, 10)
    # Another network is not affected; a second later the first has its budget again.
    assert len(r.ask(q, peer=("192.168.2.9", 5000))) == 1
    r.clock.advance(1.0)
    assert DNSRecord.parse(r.ask(q)[0]).header.tc == 0
    for i in range(30):
        r.ask(query(f"n{i}.example.org"), answerSize=100)
    assert r.counters.forwarded == 9  # one second's budget, less the answer just spent


def test_slipReplyForForwardedQueryHasQuestion():
    """The TC reply that replaces a limited forwarded answer carries the query's question."""
    r = Responder(1, slip=1)
    r.ask(bigQuery(), answerSize=100)
    [out] = r.ask(bigQuery(qid=7))
    parsed = DNSRecord.parse(out)
    assert parsed.header.tc == 1 and parsed.header.id == 7 and parsed.header.rcode == 0
    assert str(parsed.q.qname) == "big.example.org."


def test_slipZeroDropsEveryLimitedAnswer():
    """With slip 0 nothing is sent over the rate."""
    r = Responder(5, slip=0)
    answers = [r.ask(query()) for _ in range(20)]
    assert sum(len(a) for a in answers) == 5 and r.counters.rate_slipped == 0


def test_rateZeroTurnsLimitingOff():
    """A rate of 0 answers everything."""
    r = Responder(0)
    assert r.udp.limiter is None
    assert sum(len(r.ask(query())) for _ in range(1000)) == 1000


def test_defaultsNeverHinderAHomeNetwork():
    """Fifty plugs booting in the same second, each asking twice, and a few phones are all
    answered in full under the default rate."""
    r = Responder(DEFAULT_RATE)
    assert DEFAULT_RATE >= 100
    outs = [out for i in range(50) for _ in range(2)
            for out in r.ask(query(), peer=(f"192.168.1.{100 + i}", 1))]
    assert len(outs) == 100 and all(DNSRecord.parse(d).header.tc == 0 for d in outs)
    assert r.counters.rate_limited == 0


def test_networksAreSlash24AndSlash56():
    """IPv4 sources are grouped by /24, IPv6 by /56, IPv4-mapped IPv6 as IPv4."""
    limiter = ResponseRateLimiter(task.Clock(), 1)
    assert limiter.sourceNetwork("192.168.1.77") == "192.168.1.0/24"
    assert limiter.sourceNetwork("::ffff:192.168.1.77") == "192.168.1.0/24"
    assert limiter.sourceNetwork("fd00:0:0:1::1") == limiter.sourceNetwork("fd00:0:0:ff::2")
    assert limiter.sourceNetwork("fd00:0:0:100::1") != limiter.sourceNetwork("fd00:0:0:ff::2")
    assert limiter.check("fd00:0:0:1::1") == ResponseRateLimiter.SEND
    assert limiter.check("fd00:0:0:ff::2") != ResponseRateLimiter.SEND
    assert limiter.check("fd00:0:0:100::1") == ResponseRateLimiter.SEND


def test_sourceTableBounded():
    """Forged sources from many networks never grow the table past its bound."""
    limiter = ResponseRateLimiter(task.Clock(), 5, maxSources=100)
    for i in range(5000):
        limiter.check(f"10.{i // 256 % 256}.{i % 256}.1")
    assert limiter.sources() == 100


def test_bucketRefillsAtTheRate():
    """Half a second after the budget is spent, half a second's worth is back."""
    clock = task.Clock()
    limiter = ResponseRateLimiter(clock, 10, slip=0)
    assert [limiter.check("10.0.0.1") for _ in range(11)].count(ResponseRateLimiter.SEND) == 10
    clock.advance(0.5)
    assert [limiter.check("10.0.0.1") for _ in range(10)].count(ResponseRateLimiter.SEND) == 5


# --- options --------------------------------------------------------------------------------


def test_makeDNSServiceRejectsNegativeRates():
    """Negative limits are refused with ValueError before anything binds."""
    with pytest.raises(ValueError):
        makeDNSService(task.Clock(), upstreams=[], rateLimit=-1)
    with pytest.raises(ValueError):
        makeDNSService(task.Clock(), upstreams=[], rateSlip=-1)
    service = makeDNSService(task.Clock(), upstreams=[], rateLimit=7, rateSlip=3)
    assert (service.limiter.rate, service.limiter.slip) == (7, 3)


def dnsConfig(**kw: Any) -> dict[str, Any]:
    """The DNS part of a parsed daemon config, with defaults."""
    config: dict[str, Any] = {"dns-port": 53, "dns-interface": "127.0.0.1", "address": None,
                              "dns-upstream": [], "dns-allow": [], "dns-rate-limit": 100,
                              "dns-rate-slip": 2}
    config.update(kw)
    return config


@pytest.mark.parametrize("name", ["dns-rate-limit", "dns-rate-slip"])
def test_optionsRejectNegative(name):
    """--dns-rate-limit and --dns-rate-slip below 0 stop start-up with a line naming them."""
    dnstap.checkOptions(dnsConfig())
    with pytest.raises(usage.UsageError, match=f"--{name}"):
        dnstap.checkOptions(dnsConfig(**{name: -1}))


def test_optionDefaults():
    """The options exist with the documented defaults (100 answers/s, slip 2)."""
    params = {p[0]: p[2] for p in dnstap.DNSOptions.optParameters}
    assert params["dns-rate-limit"] == 100 and params["dns-rate-slip"] == 2


@settings(max_examples=200, deadline=None)
@given(records=st.integers(0, 80), payload=st.one_of(st.none(), st.integers(0, 65535)),
       name=st.from_regex(r"[a-z]{1,20}(\.[a-z]{1,20}){0,3}", fullmatch=True))
def test_anyUDPAnswerFitsTheClient(records, payload, name):
    """Whatever the upstream's answer size and the client's EDNS size, the UDP answer fits
    512 bytes (or the advertised size, at most 1232) and is either the upstream's own or TC."""
    r = Responder()
    q = query(name, payload=payload)
    [out] = r.ask(q, answerSize=40 + 63 * records)
    limit = min(max(payload or 0, 512), MAX_UDP_ANSWER) if payload is not None else 512
    parsed = DNSRecord.parse(out)
    assert len(out) <= limit
    assert parsed.header.id == 0x1234 and str(parsed.q.qname).rstrip(".") == name
    assert parsed.header.tc == 1 or out[2:] == answerOfSize(q, 40 + 63 * records)[2:]
