"""Hostile peers against the real daemon on loopback (short versions of bench/hardening), and WebSocket conformance."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from bench.hardening import conformance
from bench.hardening.common import raiseFileLimit
from vesyncd.core import hub as h
from vesyncd import tap
from vesyncd.sim import plug as sim
from vesyncd.plugs import limits
from vesyncd.plugs import server as ws
from vesyncd.sim.runner import Simulator
from tests.fakes import waitFor

LOGIN = sim.maskedFrame(json.dumps({"id": "attacker-plug", "firmVersion": "1.89"}).encode(), False)
KA = sim.maskedFrame(b'{"uri":"/ka","rssi":-40}', False)


class RawPeer(protocol.Protocol):
    """A hostile client: writes what it is given, keeps what it receives, notes when it is closed."""

    def __init__(self, first: bytes = b"", closeAfterWrite: bool = False) -> None:
        self.first = first
        self.closeAfterWrite = closeAfterWrite
        self.received = b""
        self.closed = False
        self.closedAt: float | None = None
        self.openedAt = reactor.seconds()

    def connectionMade(self) -> None:
        if self.first:
            self.transport.write(self.first)
        if self.closeAfterWrite:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self.closedAt = reactor.seconds()


class AbuseTests(unittest.TestCase):
    """The daemon from makeService on 127.0.0.1:0 with a few real simulated plugs and hostile peers."""

    timeout = 60

    def setUp(self) -> Any:
        raiseFileLimit()
        options = tap.Options()
        options.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", self.mktemp(),
                              "--refresh-interval", "0", "--no-dns", "--no-http"])
        self.service = tap.makeService(options)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.hub: h.Hub = self.service.hub
        self.factory: ws.PlugServerFactory = self.service.plugListener.factory
        self.port = self.service.plugListener.port.getHost().port
        self.peers: list[RawPeer] = []

    def startSim(self, count: int) -> Simulator:
        """Connect C{count} simulated plugs; they disconnect at cleanup."""
        s = Simulator(reactor, "127.0.0.1", self.port, count, seed="abuse", speed=1.0)
        s.start()
        self.addCleanup(s.stop)
        return s

    @defer.inlineCallbacks
    def peer(self, first: bytes = b"", closeAfterWrite: bool = False) -> Any:
        """Open one raw hostile connection; it is aborted at cleanup if still open."""
        p = RawPeer(first, closeAfterWrite)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), p)
        self.peers.append(p)
        self.addCleanup(lambda: None if p.closed else p.transport.abortConnection())
        return p

    @defer.inlineCallbacks
    def test_hostile_handshakes_closed_while_plugs_keep_working(self) -> Any:
        """Slow, oversized and garbage handshakes are all closed without a 101 while real plugs stay online and switch."""
        self.factory.handshakeTimeout = 0.5
        plugs = self.startSim(5)
        yield defer.ensureDeferred(waitFor(lambda: all(self.hub.isOnline(p.id) for p in plugs.plugs), what="logins"))
        request = sim.upgradeRequest("server2.vesync.com", 17273)
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 200) for i in range(50))
        slow = yield defer.gatherResults([self.peer(request[:5]) for _ in range(30)])
        big = yield defer.gatherResults([self.peer(b"GET /gnws HTTP/1.1\r\nHost: x\r\n" + pad) for _ in range(30)])
        junk = yield defer.gatherResults([self.peer(os.urandom(300), closeAfterWrite=True) for _ in range(50)])
        yield defer.ensureDeferred(waitFor(lambda: all(p.closed for p in slow + big + junk), timeout=5,
                                           what="hostile connections closed"))
        for p in slow + big:
            self.assertNotIn(b"101", p.received[:20])
        self.assertEqual(self.hub.stats["rejected_handshake"], 30)
        self.assertEqual(self.hub.stats["rejected_handshake_timeout"], 30)
        self.assertTrue(all(self.hub.isOnline(p.id) for p in plugs.plugs))
        result = yield self.hub.switch(plugs.plugs[0].id, False)
        self.assertIs(result.relay, False)

    @defer.inlineCallbacks
    def test_flooding_plug_rate_limited_and_closed_others_unaffected(self) -> Any:
        """A plug sending 400 frames at once gets at most a burst of answers and is closed; other plugs still switch."""
        plugs = self.startSim(3)
        yield defer.ensureDeferred(waitFor(lambda: all(self.hub.isOnline(p.id) for p in plugs.plugs), what="logins"))
        flooder = yield self.peer(sim.upgradeRequest("127.0.0.1", self.port) + LOGIN + KA * 400)
        yield defer.ensureDeferred(waitFor(lambda: flooder.closed, timeout=5, what="flooder closed"))
        self.assertLessEqual(flooder.received.count(b'"uri":"/kr"'), limits.FRAME_BURST + 2)
        self.assertEqual(self.hub.stats["rejected_flood"], 1)
        self.assertFalse(self.hub.isOnline("attacker-plug"))
        results = yield defer.gatherResults([self.hub.switch(p.id, None) for p in plugs.plugs])
        self.assertEqual(len(results), 3)

    @defer.inlineCallbacks
    def test_plug_that_stops_reading_cannot_grow_memory(self) -> Any:
        """A plug that never reads is dropped once MAX_QUEUED_BYTES wait beyond a full write buffer."""
        built: list[ws.PlugServerProtocol] = []
        buildProtocol = self.factory.buildProtocol
        self.factory.buildProtocol = lambda addr: built.append(buildProtocol(addr)) or built[-1]  # type: ignore
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.port))
        self.addCleanup(s.close)
        s.sendall(sim.upgradeRequest("127.0.0.1", self.port) + LOGIN)
        yield defer.ensureDeferred(waitFor(lambda: self.hub.isOnline("attacker-plug"), what="login"))
        (proto,) = built
        session = proto.session
        assert session is not None
        chunk = b'{"uri":"/x","pad":"' + b"a" * 65000 + b'"}'
        peak = 0
        for _ in range(400):  # at most ~26 MB offered; the bound must cut it off long before
            if proto.closing:
                break
            session.connection.send(chunk)
            transport = proto.transport
            peak = max(peak, transport._tempDataLen + len(transport.dataBuffer) - transport.offset)
            yield task.deferLater(reactor, 0.001, lambda: None)
        yield defer.ensureDeferred(waitFor(lambda: not self.hub.isOnline("attacker-plug"), what="drop"))
        self.assertEqual(self.hub.stats["rejected_write_buffer"], 1)
        self.assertLess(peak, 64 * 1024 + limits.MAX_QUEUED_BYTES + 2 * len(chunk))


@pytest.mark.skipif(conformance.available() is not None,
                    reason=f"Python 2.7 / autobahntestsuite not available: {conformance.available()}")
def test_autobahn_conformance_cases_1_to_7_and_10() -> None:
    """The Autobahn|Testsuite fuzzing client finds no FAILED, UNCLEAN or WRONG CODE case on the production options."""
    result = conformance.run("production", timeout=120)
    assert result["cases"] > 200
    assert result["bad"] == [], result["bad"]
