"""A closed plug connection is freed at once, by reference counting alone.

With thousands of plugs connected the cyclic collector's full passes are minutes apart, so a
connection kept alive by a reference cycle holds its memory (and, after it is finally freed,
leaves holes in the allocator's arenas) long after the plug reconnected.  These tests run real
TCP connections on loopback with the cyclic collector switched off.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet import defer, endpoints, reactor
from twisted.trial import unittest

from vesyncd.core import hub as h
from vesyncd.plugs import server as ws
from vesyncd.sim.plug import maskedFrame, upgradeRequest
from vesyncd.sim.runner import Simulator
from tests.fakes import waitFor


class RecordingFactory(ws.PlugServerFactory):
    """Keeps a weak reference to every protocol it builds."""

    def __init__(self, hub: h.Hub) -> None:
        super().__init__(hub, reactor=reactor)
        self.built: list[weakref.ref] = []

    def buildProtocol(self, addr: Any) -> ws.PlugServerProtocol:
        proto = super().buildProtocol(addr)
        self.built.append(weakref.ref(proto))
        return proto


class ClosedConnectionsFreed(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        if gc.isenabled():
            gc.collect()
            gc.disable()
            self.addCleanup(gc.enable)
        self.hub = h.Hub(reactor)
        self.factory = RecordingFactory(self.hub)
        self.port = yield endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(self.factory)
        self.addCleanup(self.port.stopListening)

    @defer.inlineCallbacks
    def churn(self, firmware: str) -> Any:
        sim = Simulator(reactor, "127.0.0.1", self.port.getHost().port, 3, firmware=firmware, seed=firmware)
        sim.start()
        self.addCleanup(sim.stop)
        ids = [p.id for p in sim.plugs]
        yield defer.ensureDeferred(waitFor(lambda: all(self.hub.isOnline(i) for i in ids), what="logins"))
        sessions = [weakref.ref(p().session) for p in self.factory.built if p() is not None]
        self.assertEqual(len(sessions), 3)
        sim.stop()
        yield defer.ensureDeferred(waitFor(lambda: not any(self.hub.isOnline(i) for i in ids), what="offline"))
        yield defer.ensureDeferred(waitFor(lambda: all(p() is None for p in self.factory.built),
                                           timeout=2.0, what="protocols freed without the cyclic GC"))
        self.assertEqual([s() for s in sessions], [None] * 3)

    def test_plain_connections_freed(self) -> Any:
        """Firmware 1.x plugs that disconnect leave no protocol or session behind."""
        return self.churn("1.89")

    def test_aes_connections_freed(self) -> Any:
        """Firmware 2.x (AES) plugs that disconnect leave no protocol or session behind."""
        return self.churn("2.123")

    @defer.inlineCallbacks
    def test_connections_the_server_closes_are_freed(self) -> Any:
        """Connections the server drops (a bad handshake, a bad login) are freed as well."""
        from twisted.internet.protocol import ClientFactory, Protocol

        closed: list[int] = []

        class Hostile(Protocol):
            def __init__(self, payload: bytes) -> None:
                self.payload = payload

            def connectionMade(self) -> None:
                self.transport.write(self.payload)

            def connectionLost(self, reason: Any = None) -> None:
                closed.append(1)

        port = self.port.getHost().port
        badLogin = upgradeRequest("127.0.0.1", port) + maskedFrame(b'{"uri":"/nonsense"', False, mask=b"\x01\x02\x03\x04")
        for payload in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", badLogin):
            factory = ClientFactory.forProtocol(lambda p=payload: Hostile(p))
            reactor.connectTCP("127.0.0.1", port, factory)
        yield defer.ensureDeferred(waitFor(lambda: len(closed) == 2, what="the server to close both"))
        yield defer.ensureDeferred(waitFor(lambda: all(p() is None for p in self.factory.built),
                                           timeout=2.0, what="protocols freed without the cyclic GC"))
        self.assertEqual(len(self.factory.built), 2)

