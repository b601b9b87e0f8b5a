"""Helpers for the web tests: a hub with fake plugs, and HTTP requests driven through a real
twisted.web channel over an in-memory transport (no sockets, time from a task.Clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.fakes import FakeConnection
from vesyncd.plugs import codec as m
from vesyncd.auth import FailureThrottle
from vesyncd.core.hub import Hub
from vesyncd.core.session import PlugSession
from vesyncd.web import WebApp, makeSite
from vesyncd.web.limits import ConnectionLimits

TOKEN = "t0ken" * 8
PLUG_A = "aaaa1111-0000-4000-8000-000000000001"
PLUG_B = "aaaa2222-0000-4000-8000-000000000002"
PLUG_C = "cccc3333-0000-4000-8000-000000000003"


def login(hub: Hub, plugId: str, relay: bool = True, peer: str = "192.0.2.10:40000") -> tuple[PlugSession, FakeConnection]:
    """Log a fake plug into the hub."""
    conn = FakeConnection(peer)
    session = hub.login(conn, m.Login(id=plugId, deviceName="vesync_wifi_outlet", firmVersion="1.89", relay=relay))
    return session, conn


def runtime(session: PlugSession, relay: bool, watts: float = 20.0, volts: float = 120.0) -> None:
    """The plug answers with /runtimeInfo."""
    session.received(m.RuntimeInfo(relay=relay, meastate="idle", power=(watts, watts), voltage=(volts, volts)))


@dataclass
class Response:
    """A parsed HTTP response."""

    status: int
    headers: dict[str, list[str]]
    body: bytes
    complete: bool = True

    def header(self, name: str) -> str | None:
        """The first value of a header."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def parseResponse(raw: bytes) -> Response | None:
    """Parse the first response in C{raw}; None until its headers are there."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if "content-length" in headers:
        n = int(headers["content-length"][0])
        return Response(status, headers, rest[:n], len(rest) >= n)
    if headers.get("transfer-encoding", [""])[0].lower() == "chunked":
        body, complete = b"", False
        while True:
            size, nl, tail = rest.partition(b"\r\n")
            if not nl:
                break
            n = int(size, 16)
            if n == 0:
                complete = True
                break
            if len(tail) < n + 2:
                body += tail[:n]
                break
            body += tail[:n]
            rest = tail[n + 2:]
        return Response(status, headers, body, complete)
    return Response(status, headers, rest, True)


@dataclass
class Exchange:
    """One HTTP connection: what was sent and what came back so far."""

    transport: StringTransport
    channel: Any

    def response(self) -> Response | None:
        """The response so far (None before any headers)."""
        return parseResponse(self.transport.value())


@dataclass
class Harness:
    """A hub on a task.Clock, two online plugs and one offline, and the web app around them."""

    clock: task.Clock = field(default_factory=task.Clock)
    metricsPublic: bool = False
    maxStreams: int | None = None
    dns: Any = None

    def __post_init__(self) -> None:
        self.clock.advance(1_700_000_000)
        self.hub = Hub(self.clock)
        self.throttle = FailureThrottle()
        # The exchanges below are never closed, so the connection caps are out of the way here
        # (tests/test_trust_web.py tests them).
        self.limits = ConnectionLimits(self.clock, maxTotal=100_000, maxPerHost=100_000)
        self.app = WebApp(self.hub, self.clock, TOKEN, metricsPublic=self.metricsPublic, limits=self.limits,
                          throttle=self.throttle, maxStreams=self.maxStreams, dns=self.dns)
        self.site = makeSite(self.app, self.clock)
        self.sessionA, self.connA = login(self.hub, PLUG_A, relay=False)
        self.sessionB, self.connB = login(self.hub, PLUG_B, relay=True, peer="192.0.2.11:40000")
        self.hub.rename(PLUG_B, "Kettle")
        sessionC, _ = login(self.hub, PLUG_C)
        sessionC.lost("test")

    def open(self, raw: bytes, peer: str = "127.0.0.1") -> Exchange:
        """Send raw bytes on a new connection."""
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 50555),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        channel = self.site.buildProtocol(transport.getPeer())
        channel.makeConnection(transport)
        channel.dataReceived(raw)
        return Exchange(transport, channel)

    def send(self, method: str, path: str, *, token: str | None = TOKEN, body: Any = None,
             headers: dict[str, str] | None = None, peer: str = "127.0.0.1", raw: bytes | None = None) -> Exchange:
        """Send one request (by default with the bearer token) and return the exchange."""
        hdrs = {"Host": "127.0.0.1:8080"}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if body is not None and raw is None:
            raw = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if raw is not None:
            hdrs["Content-Length"] = str(len(raw))
        hdrs.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        return self.open(head.encode() + (raw or b""), peer)

    def request(self, method: str, path: str, **kw: Any) -> Response:
        """Send one request and return its complete response."""
        response = self.send(method, path, **kw).response()
        assert response is not None and response.complete, f"no complete response to {method} {path}"
        return response
