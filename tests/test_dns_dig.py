"""Loopback tests with the real ``dig`` against the real service on 127.0.0.1 and a free port.

A fake upstream (UDP and TCP) on 127.0.0.1 stands in for the LAN's resolver; nothing leaves
the host.  Skipped when dig is not installed.
"""

from __future__ import annotations

import shutil
import struct

from dnslib import DNSRecord, QTYPE, RR, A
from twisted.internet import defer, reactor, utils
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.trial import unittest

from vesyncd.dns.server import makeDNSService

DIG = shutil.which("dig")


def upstreamAnswer(q: bytes) -> bytes:
    """The fake upstream's answer: 198.51.100.7 for any A question; for a name starting with
    C{big}, 60 such records (about 1,000 bytes) whatever size the query allows."""
    r = DNSRecord.parse(q).reply()
    name = str(r.q.qname)
    for i in range(60 if name.startswith("big") else 1):
        r.add_answer(RR(name, QTYPE.A, rdata=A(f"198.51.100.{7 + i}"), ttl=77))
    return bytes(r.pack())


class UDPUpstream(DatagramProtocol):
    """Answers every datagram with L{upstreamAnswer}."""

    def datagramReceived(self, data, addr):
        self.transport.write(upstreamAnswer(data), addr)


class TCPUpstream(Protocol):
    """Answers every length-prefixed query with L{upstreamAnswer}."""

    buf = b""

    def dataReceived(self, data):
        self.buf += data
        while len(self.buf) >= 2 and len(self.buf) >= 2 + struct.unpack("!H", self.buf[:2])[0]:
            n = struct.unpack("!H", self.buf[:2])[0]
            q, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
            a = upstreamAnswer(q)
            self.transport.write(struct.pack("!H", len(a)) + a)


def listenBoth(test: unittest.TestCase, udp: DatagramProtocol, tcp: Factory,
               tries: int = 50) -> int:
    """Listen with C{tcp} and C{udp} on one free port of 127.0.0.1 and return it.

    TCP is bound first on a port the kernel picks, then UDP on the same number; when another
    process holds that UDP port, the TCP port is let go and a new one tried.  Each listener is
    closed by C{test}'s cleanup as soon as it is bound, so nothing leaks on any path.
    """
    for _ in range(tries):
        tcpPort = reactor.listenTCP(0, tcp, interface="127.0.0.1")
        test.addCleanup(tcpPort.stopListening)
        number = tcpPort.getHost().port
        try:
            udpPort = reactor.listenUDP(number, udp, interface="127.0.0.1")
        except CannotListenError:
            continue  # the cleanup closes this TCP port; the next try takes another
        test.addCleanup(udpPort.stopListening)
        return number
    raise RuntimeError(f"no port free for both TCP and UDP in {tries} tries")


class DigTests(unittest.TestCase):
    """dig against makeDNSService bound to 127.0.0.1 on a free port."""

    timeout = 60
    if DIG is None:
        skip = "dig not installed (apt-get install bind9-dnsutils)"

    @defer.inlineCallbacks
    def setUp(self):
        upPort = listenBoth(self, UDPUpstream(), Factory.forProtocol(TCPUpstream))
        self.service = makeDNSService(reactor, port=0, interface="127.0.0.1",
                                      upstreams=[("127.0.0.1", upPort)])
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.udpPort.getHost().port
        self.assertEqual(self.service.tcpPort.getHost().port, self.port)
        yield None

    @defer.inlineCallbacks
    def dig(self, *args: str) -> defer.Deferred:
        """Run dig against the service; return its output text."""
        out, err, code = yield utils.getProcessOutputAndValue(
            DIG, ["@127.0.0.1", "-p", str(self.port), "+tries=1", "+time=5", *args],
            env={"PATH": "/usr/bin:/bin"})
        self.assertEqual(code, 0, err)
        return out.decode()

    @defer.inlineCallbacks
    def test_interceptedA(self):
        """A for the intercepted name, with the query's mixed case kept, from 127.0.0.1."""
        out = yield self.dig("SeRvEr2.VeSync.CoM", "A")
        self.assertIn("status: NOERROR", out)
        self.assertIn("flags: qr aa", out)
        self.assertRegex(out, r"SeRvEr2\.VeSync\.CoM\.\s+60\s+IN\s+A\s+127\.0\.0\.1")

    @defer.inlineCallbacks
    def test_interceptedAAAAEmpty(self):
        """AAAA for the intercepted name: NOERROR and no answer."""
        out = yield self.dig("server2.vesync.com", "AAAA")
        self.assertIn("status: NOERROR", out)
        self.assertIn("ANSWER: 0", out)

    @defer.inlineCallbacks
    def test_forwarded(self):
        """Another name is answered by the (fake) upstream."""
        out = yield self.dig("www.example.org", "A")
        self.assertIn("status: NOERROR", out)
        self.assertRegex(out, r"www\.example\.org\.\s+77\s+IN\s+A\s+198\.51\.100\.7")
        self.assertEqual(self.service.counters.forwarded, 1)

    @defer.inlineCallbacks
    def test_tcp(self):
        """Over TCP: the intercepted name answered, another forwarded over TCP."""
        out = yield self.dig("+tcp", "server2.vesync.com", "A")
        self.assertRegex(out, r"server2\.vesync\.com\.\s+60\s+IN\s+A\s+127\.0\.0\.1")
        out = yield self.dig("+tcp", "tcp.example.org", "A")
        self.assertRegex(out, r"tcp\.example\.org\.\s+77\s+IN\s+A\s+198\.51\.100\.7")
        self.assertEqual(self.service.counters.tcp_connections, 2)

    @defer.inlineCallbacks
    def test_bigAnswerTruncatedThenWholeOverTCP(self):
        """Without EDNS a 1,000-byte answer comes back truncated; dig retries over TCP and gets
        all 60 records, as any real client does."""
        out = yield self.dig("+noedns", "+ignore", "big.example.org", "A")
        self.assertRegex(out, r"flags: qr[a-z ]* tc[a-z ]*; QUERY: 1, ANSWER: 0")
        self.assertIn("MSG SIZE  rcvd: 33", out)
        out = yield self.dig("+noedns", "big.example.org", "A")
        self.assertIn("ANSWER: 60", out)
        self.assertEqual(self.service.counters.truncated, 2)
