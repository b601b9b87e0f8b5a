"""In-memory tests of the DNS responder's network side: the UDP and TCP adapters and the
service's start-up (bind errors, free-port retries).

No network and no real time: L{task.Clock}, a fake datagram transport and L{StringTransport}.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest
from dnslib import DNSRecord, A
from twisted.internet import task
from twisted.internet.error import CannotListenError
from twisted.internet.testing import StringTransport

from tests.dns_helpers import LAN, FakeDatagramTransport, query
from vesyncd.dns.adapters import DNSDatagramProtocol, DNSStreamFactory
from vesyncd.dns.answers import DNSCore, DNSCounters
from vesyncd.dns.forward import Forwarder
from vesyncd.dns.server import DNSStartupError, makeDNSService


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
