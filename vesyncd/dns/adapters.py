"""
The network adapters of vesyncd's DNS responder, thin around the network-free parts.

 - L{DNSDatagramProtocol}: UDP; each datagram goes to L{vesyncd.dns.answers.DNSCore}, forwards
   to L{vesyncd.dns.forward.Forwarder}; answers are cut to the client's size
   (L{vesyncd.dns.wire.truncateResponse}) and counted against its network's rate
   (L{vesyncd.dns.ratelimit.ResponseRateLimiter});
 - L{DNSStreamProtocol}/L{DNSStreamFactory}: TCP, length-prefixed and pipelined, with bounds on
   size, idle time, connections and forwards in flight.
"""

from __future__ import annotations

import struct

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.dns.answers import DNSCore, Outcome
from vesyncd.dns.forward import MAX_TCP_MESSAGE, Forwarder
from vesyncd.dns.ratelimit import ResponseRateLimiter
from vesyncd.dns.wire import (
    CLASSIC_UDP_PAYLOAD, EDNS_PAYLOAD, RCODE_NOERROR, RCODE_SERVFAIL, Question, WireError,
    errorResponse, makeHeader, parseQuestion, truncateResponse,
)

log = Logger()

#: Largest query accepted over TCP; a longer announced length closes the connection.
MAX_TCP_QUERY = 16384
#: A TCP client that sends no complete query for this long is disconnected.
TCP_IDLE_TIMEOUT = 10.0
#: Concurrent TCP clients; more are closed at once.
MAX_TCP_CONNECTIONS = 128
#: Forwards one TCP connection may have in flight; more get SERVFAIL.
MAX_TCP_INFLIGHT = 16
#: UDP receive buffer of the listener (queries are small; a longer one arrives truncated).
MAX_UDP_QUERY = 4096
#: Largest UDP answer sent whatever size a client advertises (the DNS flag day 2020 value),
#: so one small query cannot draw a large answer at a forged source.
MAX_UDP_ANSWER = EDNS_PAYLOAD


class DNSDatagramProtocol(DatagramProtocol):
    """UDP adapter: each datagram goes to the core; replies and forwards go back to the sender.

    Every answer is cut to the size the client can take (512 bytes without EDNS, its advertised
    size up to C{maxAnswer} with it) with TC set, and, when a C{limiter} is given, counted
    against the sender's network's rate: over it, the answer is dropped or, every few times,
    replaced by an empty TC reply.
    """

    def __init__(self, core: DNSCore, forwarder: Forwarder, local: str | None = None,
                 limiter: ResponseRateLimiter | None = None,
                 maxAnswer: int = MAX_UDP_ANSWER) -> None:
        self.core = core
        self.forwarder = forwarder
        self.local = local
        self.limiter = limiter if limiter is not None and limiter.enabled else None
        self.maxAnswer = max(CLASSIC_UDP_PAYLOAD, maxAnswer)

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        """Handle one query; never raises."""
        outcome = self.core.handle(data, addr, self.local)
        action = outcome.action
        if action == Outcome.DROP:
            return
        if self.limiter is not None:
            verdict = self.limiter.check(addr[0])
            if verdict != ResponseRateLimiter.SEND:
                self.core.counters.rate_limited += 1
                if verdict == ResponseRateLimiter.SLIP:
                    self.core.counters.rate_slipped += 1
                    self._send(self._slipReply(data, outcome), addr)
                return
        if action == Outcome.REPLY:
            self._send(self._fit(outcome, outcome.data, data), addr)
        elif action == Outcome.FORWARD:
            try:
                self.forwarder.forward(
                    outcome.data, outcome.question,
                    lambda response: self._send(self._fit(outcome, response, data), addr),
                    client=addr)
            except Exception as e:
                self.core.counters.errors += 1
                log.failure("DNS: forwarding failed", Failure(e))

    def _fit(self, outcome: Outcome, response: bytes, query: bytes) -> bytes:
        """C{response} cut to what the client of C{query} can take over UDP."""
        shape = outcome.shape
        limit = min(shape.udpPayload(), self.maxAnswer) if shape else CLASSIC_UDP_PAYLOAD
        if len(response) <= limit:
            return response
        self.core.counters.truncated += 1
        return truncateResponse(response, limit, query, _questionOf(query, outcome),
                                bool(shape and shape.edns), bool(shape and shape.ednsDO))

    def _slipReply(self, query: bytes, outcome: Outcome) -> bytes:
        """The empty TC reply sent instead of a rate-limited answer: no larger than the query."""
        shape = outcome.shape
        question = _questionOf(query, outcome)
        response = outcome.data if outcome.action == Outcome.REPLY else b""
        if not response:
            response = makeHeader(query, RCODE_NOERROR, qd=1 if question else 0)
        return truncateResponse(response, 0, query, question, bool(shape and shape.edns),
                                bool(shape and shape.ednsDO))

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.transport.write(data, addr)
        except Exception as e:  # e.g. ENOBUFS, or the peer vanished
            self.core.badInput.warn("DNS: cannot reply to {peer}: {error}", peer=addr, error=e)


def _questionOf(query: bytes, outcome: Outcome) -> Question | None:
    """The question of C{query}: the core's, or parsed now (the cached fast path skips it)."""
    if outcome.question is not None:
        return outcome.question
    try:
        return parseQuestion(query)
    except (WireError, IndexError):
        return None


class DNSStreamProtocol(Protocol):
    """TCP adapter: 2-byte length-prefixed queries, pipelining allowed, with bounds.

    A connection is closed when it announces a query longer than L{MAX_TCP_QUERY} (or of zero
    length), or when no complete query arrives within the idle timeout.  At most
    L{MAX_TCP_INFLIGHT} forwards may be in flight per connection.
    """

    def __init__(self, factory: "DNSStreamFactory") -> None:
        self.factory = factory
        self.buf = b""
        self.inflight = 0
        self.idle = None
        self.closed = False

    def connectionMade(self) -> None:
        """Count the connection and start the idle timer (or refuse if over the limit)."""
        f = self.factory
        f.core.counters.tcp_connections += 1
        f.connections.add(self)
        if len(f.connections) > f.maxConnections:
            self.factory.core.badInput.warn("DNS: too many TCP clients; closing {peer}",
                                            peer=self._peer())
            self.transport.abortConnection()
            return
        self._touch()

    def _peer(self) -> tuple[str, int]:
        p = self.transport.getPeer()
        return (getattr(p, "host", "?"), getattr(p, "port", 0))

    def _touch(self) -> None:
        if self.idle is not None and self.idle.active():
            self.idle.reset(self.factory.idleTimeout)
        else:
            self.idle = self.factory.clock.callLater(self.factory.idleTimeout, self._idleOut)

    def _idleOut(self) -> None:
        self.idle = None
        if self.inflight:
            self._touch()
            return
        self.factory.core.counters.tcp_idle_closed += 1
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """Split the stream into queries and handle each; never raises."""
        self.buf += data
        while len(self.buf) >= 2 and not self.closed:
            size = (self.buf[0] << 8) | self.buf[1]
            if size == 0 or size > self.factory.maxQuery:
                self.factory.core.counters.tcp_oversize_closed += 1
                self.factory.core.counters.malformed += 1
                self.factory.core.badInput.warn(
                    "DNS: TCP client {peer} announced a {size}-byte query; closing",
                    peer=self._peer(), size=size)
                self.closed = True
                self.transport.abortConnection()
                return
            if len(self.buf) < 2 + size:
                return
            message, self.buf = self.buf[2:2 + size], self.buf[2 + size:]
            self._touch()
            self._handle(message)

    def _handle(self, message: bytes) -> None:
        f = self.factory
        host = self.transport.getHost()
        peer = self._peer()
        outcome = f.core.handle(message, peer, getattr(host, "host", None))
        if outcome.action == Outcome.REPLY:
            self.send(outcome.data)
        elif outcome.action == Outcome.FORWARD:
            if self.inflight >= MAX_TCP_INFLIGHT:
                f.core.counters.overload += 1
                self.send(errorResponse(message, RCODE_SERVFAIL, outcome.question))
                return
            self.inflight += 1

            def reply(response: bytes) -> None:
                self.inflight -= 1
                self.send(response)
            try:
                f.forwarder.forward(outcome.data, outcome.question, reply, tcp=True)
            except Exception as e:
                f.core.counters.errors += 1
                log.failure("DNS: forwarding failed", Failure(e))

    def send(self, response: bytes) -> None:
        """Write one length-prefixed response if the connection is still open."""
        if self.closed or len(response) > MAX_TCP_MESSAGE:
            return
        self.transport.write(struct.pack("!H", len(response)) + response)
        self._touch()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """Forget the connection and its timer."""
        self.closed = True
        self.factory.connections.discard(self)
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = None


class DNSStreamFactory(Factory):
    """Builds L{DNSStreamProtocol}s and holds what they share (core, forwarder, limits)."""

    def __init__(self, core: DNSCore, forwarder: Forwarder, clock: IReactorTime,
                 idleTimeout: float = TCP_IDLE_TIMEOUT, maxQuery: int = MAX_TCP_QUERY,
                 maxConnections: int = MAX_TCP_CONNECTIONS) -> None:
        self.core = core
        self.forwarder = forwarder
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.maxQuery = maxQuery
        self.maxConnections = maxConnections
        self.connections: set[DNSStreamProtocol] = set()

    def buildProtocol(self, addr: object) -> DNSStreamProtocol:
        """A new connection's protocol."""
        return DNSStreamProtocol(self)
