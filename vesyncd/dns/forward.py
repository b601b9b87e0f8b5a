"""
Forwarding of non-intercepted queries to the upstream resolvers.

The query's bytes go upstream unchanged except for the ID (every record type, EDNS options and
DNSSEC bits pass through), and the answer comes back unchanged except for the ID restored.
Each forwarded query gets a fresh random ID per attempt and its own UDP socket (a fresh,
kernel-randomised source port); an answer is accepted only from an upstream address and port
it was sent to, with an ID it was sent with, QR set, and the same question (name compared
case-insensitively, type and class).  Anything else is counted in C{spoofed} and dropped.

An upstream that has not answered after C{attemptTimeout} seconds is left waiting (a late
answer is still accepted) and the next one is tried; after C{totalTimeout} the client gets
SERVFAIL.  At most C{maxPending} forwards are in flight; beyond that, SERVFAIL at once.
Queries that arrived over TCP are forwarded over TCP, one connection per attempt.

Sockets are opened through injected callables and timers through an injected clock, so the
logic is tested without real time or (with fake transports) without a network.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from typing import Callable, Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.dns.answers import DNSCounters, RateLimitedLog
from vesyncd.dns.wire import RCODE_SERVFAIL, Question, WireError, errorResponse, parseQuestion

log = Logger()

#: Largest DNS message over TCP (the 2-byte length prefix).
MAX_TCP_MESSAGE = 65535


class _Listening(TypingProtocol):
    def stopListening(self) -> object: ...


#: Open a UDP socket for C{protocol}, bound to the wildcard of C{family} ("" or "::").
OpenUDP = Callable[[DatagramProtocol, str], _Listening]
#: Connect over TCP: (host, port, factory, timeout) like C{reactor.connectTCP}.
ConnectTCP = Callable[[str, int, ClientFactory, float], object]


def _normHost(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if getattr(ip, "ipv4_mapped", None) is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def checkAnswer(data: bytes, ids: set[int], question: Question) -> bool:
    """Whether C{data} is an answer to our query: QR set, an ID in C{ids}, the same question.

    Never raises: malformed input is simply not an answer.
    """
    if len(data) < 12 or not data[2] & 0x80:
        return False
    if ((data[0] << 8) | data[1]) not in ids or data[4:6] != b"\0\1":
        return False
    try:
        got = parseQuestion(data, pointers=True)
    except WireError:
        return False
    return got.key == question.key


class _UpstreamDatagram(DatagramProtocol):
    """One forwarded query's private UDP socket: hands every datagram to its pending query."""

    def __init__(self, pending: "PendingForward") -> None:
        self.pending = pending

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        """Pass the datagram from C{addr} to the pending query for checking."""
        self.pending.receivedUDP(data, addr)


class _UpstreamStream(Protocol):
    """One TCP attempt: send the length-prefixed query, read one length-prefixed answer."""

    def __init__(self, pending: "PendingForward", packet: bytes, qid: int) -> None:
        self.pending = pending
        self.packet = packet
        self.qid = qid
        self.buf = b""

    def connectionMade(self) -> None:
        """Send the query as soon as the connection is up."""
        self.transport.write(struct.pack("!H", len(self.packet)) + self.packet)

    def dataReceived(self, data: bytes) -> None:
        """Collect the answer; hand it over once complete."""
        self.buf += data
        if len(self.buf) >= 2:
            size = (self.buf[0] << 8) | self.buf[1]
            if len(self.buf) >= 2 + size:
                message, self.buf = self.buf[2:2 + size], b""
                self.transport.loseConnection()
                self.pending.receivedTCP(message, self)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """An attempt that ended without an answer counts as failed."""
        self.pending.streamLost(self)


class _StreamFactory(ClientFactory):
    def __init__(self, pending: "PendingForward", packet: bytes, qid: int) -> None:
        self.pending, self.packet, self.qid = pending, packet, qid
        self.proto: _UpstreamStream | None = None

    def buildProtocol(self, addr: object) -> _UpstreamStream:
        self.proto = _UpstreamStream(self.pending, self.packet, self.qid)
        self.proto.factory = self
        return self.proto

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.pending.connectFailed(self)


class PendingForward:
    """One client query in flight upstream, until answered, failed, or cancelled."""

    def __init__(self, forwarder: "Forwarder", query: bytes, question: Question,
                 reply: Callable[[bytes], None], tcp: bool, key: object) -> None:
        self.forwarder = forwarder
        self.query = query
        self.question = question
        self.reply = reply
        self.tcp = tcp
        self.key = key
        self.ids: set[int] = set()
        self.sentTo: set[tuple[str, int]] = set()
        self.sockets: dict[str, tuple[_UpstreamDatagram, _Listening]] = {}
        self.streams: list[_StreamFactory] = []
        self.attempts = 0
        self.hardFailures = 0
        self.done = False
        clock = forwarder.clock
        self.deadline = clock.callLater(forwarder.totalTimeout, self.fail, "no answer in time")
        self.retry = None

    def start(self) -> None:
        """Send the first attempt."""
        self.attempt()

    def attempt(self) -> None:
        """Send the query to the next upstream with a new random ID; schedule the next try."""
        if self.done:
            return
        fw = self.forwarder
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        host, port = fw.upstreams[self.attempts % len(fw.upstreams)]
        self.attempts += 1
        qid = fw.randomID()
        while qid in self.ids:
            qid = fw.randomID()
        self.ids.add(qid)
        packet = struct.pack("!H", qid) + self.query[2:]
        self.retry = fw.clock.callLater(fw.attemptTimeout, self.timedOut)
        try:
            if self.tcp:
                factory = _StreamFactory(self, packet, qid)
                self.streams.append(factory)
                fw.connectTCP(host, port, factory, fw.attemptTimeout)
            else:
                family = "::" if ":" in host else ""
                if family not in self.sockets:
                    proto = _UpstreamDatagram(self)
                    self.sockets[family] = (proto, fw.openUDP(proto, family))
                self.sentTo.add((host, port))
                self.sockets[family][0].transport.write(packet, (host, port))
        except Exception as e:
            fw.badUpstream.warn("DNS: cannot send to upstream {host}:{port}: {error}",
                                host=host, port=port, error=e)
            self.hardFailure()

    def timedOut(self) -> None:
        """The current attempt had no answer in time: count it and try the next upstream."""
        self.retry = None
        if not self.done:
            self.forwarder.counters.upstream_timeouts += 1
            self.attempt()

    def hardFailure(self) -> None:
        """An attempt failed at once (refused, unreachable): try another, or give up."""
        if self.done:
            return
        self.forwarder.counters.upstream_timeouts += 1
        self.hardFailures += 1
        if self.hardFailures >= 2 * len(self.forwarder.upstreams):
            self.fail("every upstream failed")
        else:
            self.attempt()  # bounded: at most 2 * len(upstreams) hard failures in a row

    def receivedUDP(self, data: bytes, addr: tuple[str, int]) -> None:
        """Accept C{data} as the answer if its source, ID and question match; else drop it."""
        if self.done:
            return
        source = (_normHost(addr[0]), addr[1])
        if source not in self.sentTo or not checkAnswer(data, self.ids, self.question):
            self.forwarder.counters.spoofed += 1
            self.forwarder.badUpstream.warn(
                "DNS: dropped an unexpected packet from {host}:{port} for {name}",
                host=addr[0], port=addr[1], name=self.question.text())
            return
        self.answer(data)

    def receivedTCP(self, data: bytes, stream: _UpstreamStream) -> None:
        """Accept a TCP answer if its ID and question match; else count the attempt failed."""
        if self.done:
            return
        if data[:2] != struct.pack("!H", stream.qid) or not checkAnswer(data, self.ids,
                                                                       self.question):
            self.forwarder.counters.spoofed += 1
            return
        self.answer(data)

    def streamLost(self, stream: _UpstreamStream) -> None:
        """A TCP attempt closed before answering: move on to the next upstream."""
        if not self.done:
            self.hardFailure()

    def connectFailed(self, factory: _StreamFactory) -> None:
        """A TCP attempt could not connect: move on to the next upstream."""
        if not self.done:
            self.hardFailure()

    def answer(self, data: bytes) -> None:
        """Relay the upstream answer to the client with the client's ID restored."""
        self.forwarder.counters.forward_replies += 1
        self.finish(self.query[:2] + data[2:])

    def fail(self, why: str) -> None:
        """Give up: SERVFAIL to the client."""
        if self.done:
            return
        fw = self.forwarder
        fw.counters.upstream_failures += 1
        fw.counters.servfail += 1
        fw.badUpstream.warn("DNS: SERVFAIL for {name}: {why} (upstreams {upstreams})",
                            name=self.question.text(), why=why,
                            upstreams=", ".join(f"{h}:{p}" for h, p in fw.upstreams))
        self.finish(errorResponse(self.query, RCODE_SERVFAIL, self.question))

    def finish(self, response: bytes | None) -> None:
        """Release sockets and timers, then send C{response} (if any) to the client."""
        if self.done:
            return
        self.done = True
        self.forwarder.release(self)
        for timer in (self.deadline, self.retry):
            if timer is not None and timer.active():
                timer.cancel()
        for _proto, port in self.sockets.values():
            try:
                port.stopListening()
            except Exception:
                pass
        self.sockets.clear()
        for factory in self.streams:
            proto = factory.proto
            if proto is not None and proto.transport is not None:
                proto.transport.loseConnection()
        if response is not None:
            try:
                self.reply(response)
            except Exception as e:
                self.forwarder.counters.errors += 1
                log.failure("DNS: sending a reply failed", Failure(e))


class Forwarder:
    """Relays queries to C{upstreams} and answers back, within bounds of time and memory."""

    def __init__(self, clock: IReactorTime, upstreams: list[tuple[str, int]], *,
                 openUDP: OpenUDP, connectTCP: ConnectTCP, counters: DNSCounters | None = None,
                 attemptTimeout: float = 2.0, totalTimeout: float = 5.0, maxPending: int = 512,
                 randomID: Callable[[], int] = lambda: secrets.randbits(16),
                 logger: Logger = log) -> None:
        self.clock = clock
        self.upstreams = [(_normHost(h), int(p)) for h, p in upstreams]
        self.openUDP = openUDP
        self.connectTCP = connectTCP
        self.counters = counters if counters is not None else DNSCounters()
        self.attemptTimeout = attemptTimeout
        self.totalTimeout = totalTimeout
        self.maxPending = maxPending
        self.randomID = randomID
        self.pending: dict[object, PendingForward] = {}
        self.badUpstream = RateLimitedLog(clock, logger)

    def forward(self, query: bytes, question: Question, reply: Callable[[bytes], None], *,
                tcp: bool = False, client: object = None) -> None:
        """Forward C{query}; C{reply} is called exactly once with the bytes for the client.

        A UDP query identical to one still pending from the same C{client} (a retransmit) is
        dropped, since the first one's answer will serve it.
        """
        key = (client, query[:2], question.key) if client is not None else object()
        if key in self.pending:
            self.counters.duplicates += 1
            self.counters.dropped += 1
            return
        if not self.upstreams:
            self.counters.upstream_failures += 1
            self.counters.servfail += 1
            self.badUpstream.warn("DNS: no upstream resolver configured; SERVFAIL for {name}",
                                  name=question.text())
            reply(errorResponse(query, RCODE_SERVFAIL, question))
            return
        if len(self.pending) >= self.maxPending:
            self.counters.overload += 1
            self.counters.servfail += 1
            self.badUpstream.warn("DNS: {n} forwards pending; SERVFAIL for {name}",
                                  n=len(self.pending), name=question.text())
            reply(errorResponse(query, RCODE_SERVFAIL, question))
            return
        pending = PendingForward(self, query, question, reply, tcp, key)
        self.pending[key] = pending
        self.counters.forwarded += 1
        self.counters.pending = len(self.pending)
        pending.start()

    def release(self, pending: PendingForward) -> None:
        """Forget C{pending}, which has finished (answered, failed or cancelled)."""
        self.pending.pop(pending.key, None)
        self.counters.pending = len(self.pending)

    def stop(self) -> None:
        """Cancel every pending forward (no reply is sent); used when the service stops."""
        for pending in list(self.pending.values()):
            pending.finish(None)
