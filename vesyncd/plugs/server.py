"""
The plug server: a thin Autobahn adapter between WebSocket frames and the core.

Each connection decodes frames with L{vesyncd.plugs.codec}, hands typed messages to the
L{vesyncd.core.hub.Hub}, and sends what the hub asks for.  It answers the upgrade as the vendor cloud
did (a minimal 101 with a lower-case C{Upgrade: websocket} and no C{Server:} header), switches to
AES binary frames when a firmware 2.x plug sends one, and guards the daemon against hostile
peers: capped handshake headers, handshake and login deadlines, frame and message size limits, a
per-connection frame rate limit, and a bound on what may wait to be written to a plug that
stops reading.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import succeed
from twisted.logger import Logger
from zope.interface import implementer

from vesyncd.plugs import codec as m
from vesyncd.plugs.options import lazyDebugFormatting, optionsClass, refuseCompression
from vesyncd.plugs.limits import (
    FRAME_RATE,
    HANDSHAKE_TIMEOUT,
    LOGIN_TIMEOUT,
    MAX_HANDSHAKE,
    WRITE_STALL_TIMEOUT,
    ConnectionSlots,
    Deadline,
    FrameBudget,
    WriteStall,
    unauthenticatedLimit,
)
from vesyncd.core.hub import Hub
from vesyncd.core.session import PlugSession
from vesyncd.core.interfaces import IPlugConnection

log = Logger()

PLUG_PATH = "/gnws"


def formatPeer(peer: str | None) -> str:
    """Autobahn's C{tcp:1.2.3.4:5678} / C{tcp6:[::1]:5678} as C{1.2.3.4:5678}."""
    if not peer:
        return "?"
    for prefix in ("tcp4:", "tcp6:", "tcp:", "unix:"):
        if peer.startswith(prefix):
            return peer[len(prefix):]
    return peer


def unmask(data: bytes, mask: bytes, offset: int) -> bytes:
    """C{data} XORed with the 4-byte client C{mask} (RFC 6455 5.3), C{data} starting at byte
    C{offset} of its frame's payload.  One big-integer XOR: for the plugs' small frames this is a
    fraction of the cost of Autobahn's native masker, which it builds anew for every frame."""
    n = len(data)
    if not n:
        return data
    shift = offset & 3
    if shift:
        mask = mask[shift:] + mask[:shift]
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


#: Attributes of the opening handshake that Autobahn keeps for the life of the connection.
_HANDSHAKE_STATE = ("http_request_data", "http_headers", "http_status_line", "http_request_uri",
                    "http_request_path", "http_request_params", "http_request_host", "http_response_data")


@implementer(IPlugConnection)
class _PlugLink:
    """The face of one connection that the core sees (kept apart from Autobahn's own names)."""

    def __init__(self, protocol: "PlugServerProtocol") -> None:
        self._protocol = protocol
        self.peer = protocol.peerAddress

    def send(self, payload: bytes) -> None:
        """Send one JSON message, encrypted when the plug speaks firmware 2.x."""
        self._protocol.sendPlugMessage(payload)

    def disconnect(self, reason: str) -> None:
        """Drop the connection."""
        self._protocol.closeWithReason(reason)


class PlugServerProtocol(WebSocketServerProtocol):
    """One plug's WebSocket connection; see the module docstring for what it enforces."""

    factory: "PlugServerFactory"

    def __init__(self) -> None:
        super().__init__()
        self.session: PlugSession | None = None
        self.encrypted = False
        self.peerAddress = "?"
        self._link: _PlugLink | None = None
        self._budget: FrameBudget | None = None
        self._handshakeDeadline: Deadline | None = None
        self._loginDeadline: Deadline | None = None
        self._stall: WriteStall | None = None
        self._closing = False
        self._holdsSlot = False

    # -- connection and handshake --------------------------------------------------------------

    def connectionMade(self) -> None:
        """Start Autobahn's handshake, then apply the factory's limits: a slot among the
        connections not logged in yet, a handshake deadline and a watch on the write buffer."""
        with lazyDebugFormatting():
            super().connectionMade()
        factory = self.factory
        clock = factory.hub.clock
        self.peerAddress = formatPeer(self.peer)
        self._link = _PlugLink(self)
        self._budget = FrameBudget(clock, rate=factory.frameRate)
        factory.hub.stats["connections"] += 1
        if not factory.slots.acquire():
            factory.hub.stats["rejected_too_many_unauthenticated"] += 1
            if factory.hub.stats["rejected_too_many_unauthenticated"] == 1 or \
                    factory.hub.stats["rejected_too_many_unauthenticated"] % 1000 == 0:
                log.warn("{n} connections have not logged in yet; refusing more (last from {peer})",
                         n=factory.slots.used, peer=self.peerAddress)
            self._closing = True
            self.transport.abortConnection()
            return
        self._holdsSlot = True
        # Our own deadline on the hub's clock: Autobahn's runs on the global reactor.
        self._handshakeDeadline = Deadline(clock)
        self._handshakeDeadline.start(factory.handshakeTimeout, self._handshakeTimedOut)
        self._loginDeadline = Deadline(clock)
        self._stall = WriteStall(clock, self._stallTimedOut)
        try:
            self.transport.registerProducer(self._stall, True)
        except RuntimeError:  # pragma: no cover - a transport that already has a producer
            self._stall = None

    def dataReceived(self, data: bytes) -> None:
        """Refuse handshakes whose headers exceed L{MAX_HANDSHAKE} bytes; pass the rest on."""
        if self.state == self.STATE_CONNECTING:
            pending = len(self.data) + len(data)
            if pending > MAX_HANDSHAKE and b"\r\n\r\n" not in (self.data + data)[: MAX_HANDSHAKE + 4]:
                self._reject("handshake", f"opening handshake headers exceed {MAX_HANDSHAKE} bytes")
                return
        # Autobahn's Twisted adapter only adds a debug line here, whose arguments it formats
        # whether or not debug is on (a tenth of a /ka's cost); go straight to its parser.
        try:
            if self.state == self.STATE_OPEN and self.wholeFrames and self._wholeFrame(data):
                return
            self._dataReceived(data)
        except Exception:
            # Twisted would log this without the peer and drop the connection; say who it was.
            log.failure("reading from {peer} failed", peer=self.peerAddress)
            self._reject("internal_error", "internal error while reading")

    #: Whether L{_wholeFrame} may take reads that are one whole, plain data frame.
    wholeFrames = True

    def _wholeFrame(self, data: bytes) -> bool:
        """Hand C{data} to L{onMessage} when it is exactly one whole message frame of the usual kind;
        False (nothing done) for anything else, which then goes through Autobahn's parser.

        A plug sends each message as one final, masked text or binary frame, and each arrives in a
        read of its own.  For such a read Autobahn's frame-by-frame state machine (and its
        per-frame callbacks) end in the same call of L{onMessage} with the unmasked payload and the
        same counters; it costs over a quarter of a /ka.  Everything else takes Autobahn's path
        unchanged: partial or several frames, fragments, control frames, reserved bits or
        opcodes, unmasked frames, lengths not minimally encoded or over the limits, empty
        payloads, text that is not UTF-8, a message already in progress, and frame logging.
        """
        n = len(data)
        if n < 7 or self.data or self.current_frame is not None or self.inside_message or self.failedByMe:
            return False
        first, second = data[0], data[1]
        if (first != 0x81 and first != 0x82) or not second & 0x80:
            return False  # not final, reserved bits, not text/binary, or not masked
        length = second & 0x7F
        if length < 126:
            start = 6
        elif length == 126 and n >= 8:
            length, start = (data[2] << 8) | data[3], 8
            if length < 126:
                return False
        else:
            return False
        if n != start + length or not 0 < length <= self.maxFramePayloadSize or \
                (self.maxMessagePayloadSize and length > self.maxMessagePayloadSize) or \
                self.logOctets or self.logFrames or self.trackedTimings or self._perMessageCompress is not None \
                or self.autoPingTimeoutCall is not None:
            return False
        payload = unmask(data[start:], data[start - 4:start], 0)
        binary = first == 0x82
        if not binary and self.utf8validateIncoming:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return False  # Autobahn fails the connection as it always has
        stats = self.trafficStats
        stats.incomingOctetsWireLevel += n
        stats.incomingOctetsWebSocketLevel += length
        stats.incomingOctetsAppLevel += length
        stats.incomingWebSocketFrames += 1
        stats.incomingWebSocketMessages += 1
        self.onMessage(payload, binary)
        return True

    def onConnect(self, request: ConnectionRequest) -> None:
        """Accept every path (plugs use C{/gnws}); log any other path once per connection."""
        try:
            if request.path != PLUG_PATH:
                log.debug("connection from {peer} asked for path {path!r}, not {expected}; accepting it",
                         peer=self.peerAddress, path=request.path[:200], expected=PLUG_PATH)
        except Exception:
            log.failure("onConnect failed for {peer}", peer=self.peerAddress)
        return None

    def succeedHandshake(self, res: Any) -> None:
        """Send the 101; an error while building it is logged with the peer and ends the connection.

        Autobahn runs this as the callback of a Deferred it keeps no reference to, so an
        exception here would otherwise vanish and leave the peer waiting for a 101 that never comes.
        """
        try:
            super().succeedHandshake(res)
        except Exception:
            log.failure("opening handshake with {peer} failed", peer=self.peerAddress)
            self._reject("handshake_error", "internal error in the opening handshake")

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Send bytes; the 101 response gets the lower-case C{Upgrade: websocket} plugs saw from the cloud."""
        if self.state == self.STATE_CONNECTING and data.startswith(b"HTTP/1.1 101"):
            data = data.replace(b"\r\nUpgrade: WebSocket\r\n", b"\r\nUpgrade: websocket\r\n", 1)
        stall = self._stall
        if stall is not None and stall.queued(len(data)):
            self._reject("write_buffer", f"plug stopped reading ({stall.waiting} bytes waiting)")
            return
        if self.state == self.STATE_OPEN and not sync and not chopsize and not self.send_queue \
                and not self.logOctets:
            # Autobahn's own path does the same write, but first formats arguments for a debug
            # line that is never logged: measurable on every /kr.
            self.transport.write(data)
            self.trafficStats.outgoingOctetsWireLevel += len(data)
            return
        super().sendData(data, sync, chopsize)

    def _handshakeTimedOut(self) -> None:
        if self.state == self.STATE_CONNECTING:
            self._reject("handshake_timeout", f"opening handshake not finished within "
                         f"{self.factory.handshakeTimeout:g} s")

    def onOpen(self) -> None:
        """Stop the handshake deadline, forget the handshake, and start the login deadline."""
        try:
            if self._handshakeDeadline is not None:
                self._handshakeDeadline.cancel()
            for name in _HANDSHAKE_STATE:
                if name in self.__dict__:
                    setattr(self, name, None)
            if self._loginDeadline is not None and self.factory.loginTimeout is not None:
                self._loginDeadline.start(self.factory.loginTimeout, self._loginTimedOut)
        except Exception:
            log.failure("onOpen failed for {peer}", peer=self.peerAddress)

    def _loginTimedOut(self) -> None:
        if self.session is None:
            self._reject("login_timeout", f"no login within {self.factory.loginTimeout:g} s")

    # -- frames --------------------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Decode one frame and hand it to the core; bad frames are counted, logged and dropped."""
        if self._closing:
            return
        hub = self.factory.hub
        budget = self._budget
        assert budget is not None
        if not budget.allow():
            hub.stats["frames_rate_limited"] += 1
            if budget.dropped == 1:
                log.warn("plug {plug} at {peer} sends frames too fast; dropping the excess",
                         plug=self._who(), peer=self.peerAddress)
            if budget.flooded:
                self._reject("flood", f"{budget.dropped} frames over the rate limit")
            return
        try:
            if isBinary:
                if not self.encrypted:
                    self.encrypted = True
                    log.debug("{peer} sends binary frames: speaking AES (firmware 2.x)", peer=self.peerAddress)
                payload = m.aesDecrypt(payload)
            message = m.decodeFrame(payload, expectLogin=self.session is None)
        except m.ProtocolError as e:
            self._badFrame(str(e), payload)
            return
        try:
            if self.session is None:
                assert isinstance(message, m.Login)
                self._loggedIn(message)
            else:
                self.session.received(message)
        except Exception:
            log.failure("handling a message from {peer} failed", peer=self.peerAddress)
            hub.stats["internal_errors"] += 1

    def onFrameData(self, payload: bytes) -> bool | None:
        """Unmask the frame's payload (the factory turns Autobahn's own unmasking off), then let
        Autobahn check and collect it as usual."""
        frame = self.current_frame
        if frame.mask is not None and not self.applyMask:
            payload = unmask(payload, frame.mask, self.current_frame_masker.pointer() - len(payload))
        return super().onFrameData(payload)

    def onMessageEnd(self) -> None:
        """Hand the whole message to L{onMessage} (vesyncd registers no Autobahn message observers,
        so it skips Autobahn's observer dispatch and its future for every frame)."""
        data, self.message_data = self.message_data, None
        if not self.failedByMe:
            self.onMessage(b"".join(data), self.message_is_binary)

    def _badFrame(self, reason: str, payload: bytes) -> None:
        self.factory.hub.stats["frames_rejected"] += 1
        assert self._budget is not None
        tooMany = self._budget.badFrame()
        if self.session is None:
            self._reject("bad_login", f"bad login: {reason}")
            return
        if self._budget.bad <= 3:
            log.warn("plug {plug} at {peer} sent a bad frame ({reason}): {sample!r}",
                     plug=self._who(), peer=self.peerAddress, reason=reason, sample=bytes(payload[:80]))
        if tooMany:
            self._reject("bad_frames", f"{self._budget.bad} bad frames")

    def _loggedIn(self, login: m.Login) -> None:
        self._releaseSlot()
        if self._loginDeadline is not None:
            self._loginDeadline.cancel()
        assert self._link is not None
        log.debug("plug {plug} logged in from {peer} (firmware {fw}{aes})", plug=login.id, peer=self.peerAddress,
                 fw=login.firmVersion or "?", aes=", AES" if self.encrypted else "")
        self.session = self.factory.hub.login(self._link, login, encrypted=self.encrypted)

    def sendPlugMessage(self, payload: bytes) -> None:
        """Send one JSON message as a text frame, or as an AES binary frame to firmware 2.x."""
        if self._closing or self.state != self.STATE_OPEN:
            return
        if self.encrypted:
            payload = m.aesEncrypt(payload)
        n = len(payload)
        if n >= m.MAX_PAYLOAD:
            # The server only ever sends small messages; never let a bug put a huge one on the wire.
            log.error("refusing to send a {n}-byte message to {peer}", n=n, peer=self.peerAddress)
            return
        # Every server message is one small unmasked frame (RFC 6455 5.2: FIN + opcode, then a
        # 7-bit or 16-bit length): built here, as Autobahn's general sendMessage/sendFrame path
        # costs more than the rest of a /kr put together.
        first = 0x82 if self.encrypted else 0x81
        header = bytes((first, n)) if n < 126 else bytes((first, 126, n >> 8, n & 0xFF))
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingWebSocketFrames += 1
        data = header + payload
        stall = self._stall
        if stall is None or self.send_queue or self.logOctets:
            self.sendData(data)
            return
        # L{sendData}'s checks for an open connection, written at once (every /kr takes this way).
        if stall.queued(len(data)):
            self._reject("write_buffer", f"plug stopped reading ({stall.waiting} bytes waiting)")
            return
        self.transport.write(data)
        stats.outgoingOctetsWireLevel += len(data)

    # -- closing -------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Whether this connection is being dropped (no more frames are read or sent)."""
        return self._closing

    def _who(self) -> str:
        return self.session.plug.id if self.session is not None else "(not logged in)"

    def _reject(self, reason: str, detail: str) -> None:
        """Count, log with the peer, and drop this connection."""
        hub = self.factory.hub
        hub.stats["rejected_" + reason] += 1
        log.warn("closing connection from {peer} ({plug}): {detail}", peer=self.peerAddress,
                 plug=self._who(), detail=detail)
        self.closeWithReason(detail)

    def closeWithReason(self, reason: str) -> None:
        """Drop the TCP connection now (plugs never do a closing handshake)."""
        if self._closing:
            return
        self._closing = True
        self.wasClean = False
        self.wasNotCleanReason = reason
        if self.state == self.STATE_CLOSED:
            return
        self.dropConnection(abort=True)

    def _stallTimedOut(self) -> None:
        self._reject("write_stall", f"plug has not read for {WRITE_STALL_TIMEOUT:g} s")

    def _releaseSlot(self) -> None:
        """This connection no longer counts against the factory's C{maxUnauthenticated}."""
        if self._holdsSlot:
            self._holdsSlot = False
            self.factory.slots.release()

    def connectionLost(self, reason: Any = None) -> None:
        """Autobahn's close handling, then let go of every reference back to this protocol.

        A closed connection must be freed by reference counting alone: with thousands of plugs
        connected the cyclic collector's full passes are minutes apart, and a reconnecting plug
        whose old connection waits for one holds its memory until then (the pages then stay with
        the allocator).  Autobahn resolves C{is_closed} with the protocol itself, and the core's
        link and the write watch point back at it; those three are the cycles dropped here.
        """
        self._releaseSlot()
        super().connectionLost(reason)
        self._link = self._stall = None
        if self.is_closed.called:
            self.is_closed = succeed(None)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        """Tell the core the connection is gone, and stop every timer."""
        self._closing = True
        for deadline in (self._loginDeadline, self._handshakeDeadline):
            if deadline is not None:
                deadline.cancel()
        if self._stall is not None:
            self._stall.stopProducing()
        session, self.session = self.session, None
        if session is not None:
            try:
                session.lost(self.wasNotCleanReason or "connection closed")
            except Exception:
                log.failure("ending session of {peer} failed", peer=self.peerAddress)


class PlugServerFactory(WebSocketServerFactory):
    """Builds plug connections for one L{Hub}, with the limits that keep the daemon safe
    (C{loginTimeout=None} starts no login deadline, for test endpoints that speak no plug protocol)."""

    protocol = PlugServerProtocol

    def __init__(
        self,
        hub: Hub,
        *,
        reactor: Any = None,
        loginTimeout: float | None = LOGIN_TIMEOUT,
        handshakeTimeout: float = HANDSHAKE_TIMEOUT,
        frameRate: float = FRAME_RATE,
        maxUnauthenticated: int | None = None,
    ) -> None:
        self._optionsClass: tuple[type, type] | None = None
        super().__init__(server=None, reactor=reactor)
        self.hub = hub
        self.slots = ConnectionSlots(maxUnauthenticated if maxUnauthenticated is not None
                                     else unauthenticatedLimit())
        self.loginTimeout = loginTimeout
        self.handshakeTimeout = handshakeTimeout
        self.frameRate = frameRate
        self.setProtocolOptions(
            maxFramePayloadSize=m.MAX_PAYLOAD,
            maxMessagePayloadSize=m.MAX_PAYLOAD,
            openHandshakeTimeout=0,
            closeHandshakeTimeout=1,
            autoPingInterval=0,
            requireMaskedClientFrames=True,
            # Autobahn would build a native masker object for every incoming frame (a tenth of a
            # /report's CPU); PlugServerProtocol.onFrameData unmasks instead.
            applyMask=False,
            failByDrop=True,
            perMessageCompressionAccept=refuseCompression,
        )

    @property
    def unauthenticated(self) -> int:
        """How many connections have not logged in yet."""
        return self.slots.used

    @property
    def maxUnauthenticated(self) -> int:
        """How many connections may wait for their login at once."""
        return self.slots.limit

    def setProtocolOptions(self, **options: Any) -> None:
        """Set Autobahn options (see L{buildProtocol} for why this forgets the protocol class)."""
        super().setProtocolOptions(**options)
        self._optionsClass = None

    def buildProtocol(self, addr: Any) -> PlugServerProtocol:
        """A connection whose class carries the options (L{optionsClass}, made once per factory
        and option set), so Autobahn copies none into each instance."""
        base = self.protocol
        if self._optionsClass is None or self._optionsClass[0] is not base:
            self._optionsClass = (base, optionsClass(base, self))
        proto = self._optionsClass[1]()
        proto.factory = self
        return proto
