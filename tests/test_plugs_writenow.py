"""writeNow over real loopback TCP (and TLS): straight to the socket when nothing waits, in order always."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from control_helpers import selfSignedPEM
from vesyncd.plugs.writenow import writeNow
from tests.fakes import waitFor


class _Writer(protocol.Protocol):
    """Runs the test's C{act(transport)} as soon as it is connected."""

    def connectionMade(self) -> None:
        self.factory.connected.callback(self.transport)


class _Reader(protocol.Protocol):
    """Collects every byte it receives."""

    def connectionMade(self) -> None:
        self.received = bytearray()
        self.factory.reader = self

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class WriteNowTests(unittest.TestCase):
    """A server transport on 127.0.0.1 written with writeNow, a plain reader at the other end."""

    @inlineCallbacks
    def connect(self, server: str = "tcp:0:interface=127.0.0.1", client: str = "tcp:127.0.0.1:{port}") -> Any:
        """Listen, connect a reader; (server transport, reader)."""
        serverFactory = protocol.Factory.forProtocol(_Writer)
        serverFactory.connected = Deferred()
        port = yield endpoints.serverFromString(reactor, server).listen(serverFactory)
        self.addCleanup(port.stopListening)
        clientFactory = protocol.Factory.forProtocol(_Reader)
        clientProto = yield endpoints.clientFromString(reactor, client.format(port=port.getHost().port)).connect(
            clientFactory)
        self.addCleanup(clientProto.transport.loseConnection)
        transport = yield serverFactory.connected
        self.addCleanup(transport.loseConnection)
        return transport, clientProto

    @inlineCallbacks
    def test_idleSocketWrittenAtOnce(self) -> Any:
        """With nothing buffered the frame leaves in the call: nothing is buffered after it and the
        reactor is not asked to watch the socket for writability; the reader gets the bytes."""
        transport, reader = yield self.connect()
        writeNow(transport, b"\x81\x0b{\"uri\":\"/kr\"}")
        self.assertEqual((transport._tempDataLen, transport.dataBuffer), (0, b""))
        self.assertNotIn(transport, reactor.getWriters())
        yield waitFor(lambda: bytes(reader.received) == b"\x81\x0b{\"uri\":\"/kr\"}", what="the frame")

    @inlineCallbacks
    def test_bufferedDataStaysFirst(self) -> Any:
        """Behind bytes already buffered by C{write}, a frame is buffered after them, never sent before."""
        transport, reader = yield self.connect()
        transport.write(b"first,")
        writeNow(transport, b"second")
        self.assertEqual(transport._tempDataLen, len(b"first,second"))
        self.assertIn(transport, reactor.getWriters())
        yield waitFor(lambda: bytes(reader.received) == b"first,second", what="both writes")

    @inlineCallbacks
    def test_partialSendKeepsTheRestInOrder(self) -> Any:
        """What the kernel does not take at once is buffered, and later frames queue behind it: a
        reader gets every byte of a payload far larger than the socket buffer, then the next frame."""
        transport, reader = yield self.connect()
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(256)) * 16384  # 4 MiB
        writeNow(transport, big)
        self.assertGreater(transport._tempDataLen, 0, "the kernel took all of 4 MiB at once")
        self.assertLess(transport._tempDataLen, len(big), "nothing went straight to the socket")
        writeNow(transport, b"tail")
        yield waitFor(lambda: len(reader.received) == len(big) + 4, what="every byte", timeout=30)
        self.assertEqual(bytes(reader.received), big + b"tail")

    @inlineCallbacks
    def test_closingAndClosedAsWrite(self) -> Any:
        """While closing, a frame goes through C{write}, which still flushes it before the close (as
        Twisted does); once closed, a frame is dropped and nothing raises."""
        transport, reader = yield self.connect()
        transport.loseConnection()
        writeNow(transport, b"late")
        self.assertEqual(transport._tempDataLen, 4)
        yield waitFor(lambda: not transport.connected, what="the close")
        writeNow(transport, b"later")
        yield waitFor(lambda: bytes(reader.received) == b"late", what="the flushed frame")

    @inlineCallbacks
    def test_tlsGoesThroughWrite(self) -> Any:
        """A TLS connection is not a plain socket: its frames go through its own C{write} (encrypted)
        and arrive whole."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        cert, key = selfSignedPEM()
        (tmp / "cert.pem").write_bytes(cert)
        (tmp / "key.pem").write_bytes(key)
        transport, reader = yield self.connect(
            f"ssl:0:interface=127.0.0.1:privateKey={tmp / 'key.pem'}:certKey={tmp / 'cert.pem'}",
            "ssl:127.0.0.1:{port}")
        writeNow(transport, b"over tls")
        yield waitFor(lambda: bytes(reader.received) == b"over tls", what="the TLS frame")

    def test_otherTransportsUseWrite(self) -> None:
        """An in-memory transport gets the bytes through its C{write}."""
        transport = StringTransport()
        writeNow(transport, b"frame")
        self.assertEqual(transport.value(), b"frame")
