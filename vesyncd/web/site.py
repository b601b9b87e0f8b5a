"""
The web front end's twisted.web site with its limits: bounded bodies and headers, a deadline on
each request, and caps on connections in total and per source host (L{vesyncd.web.limits}).

A refused connection is closed at once, so it never holds a file handle; a client that has not
sent a whole request (line, headers and body) within C{HEAD_TIMEOUT} seconds of its first byte is
cut however slowly it trickles bytes, and so is one that connects and sends nothing.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.web import http, resource, server

from vesyncd.web.limits import HEAD_TIMEOUT, ConnectionLimits

log = Logger()

MAX_BODY = 16 * 1024
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 * 1024
#: Seconds a connection may stay idle (no bytes from the client) before it is closed.
IDLE_TIMEOUT = 60


def hostOf(address: Any) -> str:
    """The host part of a peer address as text (a UNIX socket's peers share one name)."""
    host = getattr(address, "host", None)
    return str(host) if host is not None else type(address).__name__


class BoundedRequest(server.Request):
    """A request that refuses bodies over C{maxBody} bytes with 413 before storing them."""

    maxBody = MAX_BODY
    tooLarge = False
    _bodyBytes = 0

    def gotLength(self, length: int | None) -> None:
        """Refuse a declared length over the limit at once (no 100-continue, no buffering)."""
        if length is not None and length > self.maxBody:
            self._refuse()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count body bytes (also for chunked bodies) and stop at the limit."""
        if self.tooLarge:
            return
        self._bodyBytes += len(data)
        if self._bodyBytes > self.maxBody:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self.tooLarge = True
        self.requestHeaders.removeHeader(b"expect")
        log.warn("http: request body from {peer} over {limit} bytes refused", peer=hostOf(self.getClientAddress()),
                 limit=self.maxBody)
        body = json.dumps({"error": "too_large", "message": f"request bodies are limited to {self.maxBody} bytes"})
        transport = self.channel.transport if self.channel is not None else None
        if transport is not None:
            transport.write(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body.encode())
            transport.loseConnection()

    def process(self) -> None:
        """Do nothing for a refused request: its answer is already on the wire."""
        if self.tooLarge:
            return
        super().process()


class BoundedChannel(http.HTTPChannel):
    """HTTP/1.1 with tighter header limits, a deadline on each request, and a connection slot
    given back to the site's L{ConnectionLimits} when it closes."""

    maxHeaders = MAX_HEADERS
    totalHeadersSize = MAX_HEADER_BYTES
    headTimeout = HEAD_TIMEOUT
    limits: ConnectionLimits | None = None
    peerHost = "?"
    _deadline: IDelayedCall | None = None
    _awaiting = True
    _released = False

    def admitted(self, limits: ConnectionLimits, host: str, headTimeout: float) -> None:
        """This connection holds one of C{limits}' slots for C{host} until it closes, and each of
        its requests must arrive within C{headTimeout} seconds of its first byte."""
        self.limits = limits
        self.peerHost = host
        self.headTimeout = headTimeout

    def connectionMade(self) -> None:
        """Start the clock on the first request: a client that sends nothing is cut too."""
        super().connectionMade()
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        """The first byte of a further request on a kept-alive connection starts its deadline."""
        if self._awaiting and self._deadline is None:
            self._arm()
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        """The whole request is in: no deadline while it is answered (event streams last)."""
        self._awaiting = False
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: server.Request) -> None:
        """The answer went out: the next request gets its own deadline from its first byte."""
        self._awaiting = True
        super().requestDone(request)

    def connectionLost(self, reason: Any) -> None:
        """Stop the deadline and give the slot back."""
        self._disarm()
        if self.limits is not None and not self._released:
            self._released = True
            self.limits.release(self.peerHost)
        super().connectionLost(reason)

    def _arm(self) -> None:
        if self.headTimeout:
            self._deadline = self.callLater(self.headTimeout, self._tooSlow)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _tooSlow(self) -> None:
        self._deadline = None
        if self.limits is not None:
            self.limits.headTimedOut(self.peerHost, self.headTimeout)
        if self.transport is not None:
            self.transport.abortConnection()


class RefusedConnection(protocol.Protocol):
    """Closes a connection over the cap as soon as it is made (plain HTTP first hears a 503)."""

    def connectionMade(self) -> None:
        """Answer 503 and close, or reset a TLS connection (no handshake is spent on it)."""
        transport = self.transport
        if ISSLTransport.providedBy(transport):
            transport.abortConnection()
            return
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 10\r\n"
                        b"content-length: 0\r\n\r\n")
        transport.loseConnection()


class BoundedSite(server.Site):
    """A Site that admits connections through a L{ConnectionLimits}."""

    def __init__(self, resource: resource.Resource, limits: ConnectionLimits, headTimeout: float = HEAD_TIMEOUT,
                 **kw: Any) -> None:
        super().__init__(resource, **kw)
        self.limits = limits
        self.headTimeout = headTimeout

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        """A bounded channel for an admitted connection, else one that closes at once."""
        host = hostOf(addr)
        if not self.limits.admit(host):
            return RefusedConnection()
        channel = super().buildProtocol(addr)
        channel.admitted(self.limits, host, self.headTimeout)
        return channel


def makeSite(app: Any, clock: IReactorTime, timeout: float = IDLE_TIMEOUT,
             headTimeout: float = HEAD_TIMEOUT) -> BoundedSite:
    """A Site around C{app} (a L{vesyncd.web.api.WebApp}) with bounded bodies, headers, request time
    and idle time, admitting connections through the app's C{limits}."""
    site = BoundedSite(app, app.limits, headTimeout, requestFactory=BoundedRequest, timeout=timeout,
                       reactor=clock)
    site.protocol = BoundedChannel
    site.displayTracebacks = False
    return site
