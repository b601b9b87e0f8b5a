"""Helpers for the web tests: a hub with fake plugs, and HTTP requests driven through a real
twisted.web channel over an in-memory transport (no sockets, time from a task.Clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.fakes import FakeConnection
from vesyncd.automation.engine import AutomationEngine
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.store import MemoryAutomationStore
from vesyncd.insight.service import InsightError
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
    automation: bool = False
    insight: Any = None
    tokenPath: str | None = None
    settings: Any = None
    #: Called with (hub, clock) to make the insight object when C{insight} is not given.
    insightFactory: Any = None
    #: The app's C{threads} (where /metrics is rendered); None renders in the calling thread.
    threads: Any = None

    def __post_init__(self) -> None:
        self.clock.advance(1_700_000_000)
        self.hub = Hub(self.clock, self.settings) if self.settings is not None else Hub(self.clock)
        self.throttle = FailureThrottle()
        # The exchanges below are never closed, so the connection caps are out of the way here
        # (tests/test_trust_web.py tests them).
        self.limits = ConnectionLimits(self.clock, maxTotal=100_000, maxPerHost=100_000)
        self.engine = AutomationEngine(AutomationHub(self.hub), MemoryAutomationStore(), self.clock,
                                       AutomationConfig(zone=timezone.utc)) if self.automation else None
        if self.engine is not None:
            self.engine.start([])
        if self.insight is None and self.insightFactory is not None:
            self.insight = self.insightFactory(self.hub, self.clock)
        self.app = WebApp(self.hub, self.clock, TOKEN, metricsPublic=self.metricsPublic, limits=self.limits,
                          throttle=self.throttle, maxStreams=self.maxStreams, dns=self.dns,
                          automation=self.engine, insight=self.insight, tokenPath=self.tokenPath,
                          threads=self.threads)
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


class AutomationHub:
    """The hub as the automation engine sees it (IAutomationHub), for tests of the web routes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.causes: list[str] = []

    def switch(self, plugId: str, on: bool, cause: str) -> Deferred:
        """Switch through the hub, noting the cause."""
        self.causes.append(cause)
        return self.hub.switch(plugId, on)

    def refresh(self, plugId: str) -> Deferred:
        """Ask the plug for fresh readings."""
        return self.hub.refresh(plugId)

    def isOnline(self, plugId: str) -> bool:
        """True while the plug is connected."""
        return self.hub.isOnline(plugId)

    def subscribe(self, callback: Any) -> Any:
        """Follow the hub's events."""
        return self.hub.subscribe(callback)

    def announce(self, kind: str, plugId: str, **data: Any) -> None:
        """Events of the engine are not looked at here."""


class FakeInsight:
    """EnergyInsight's API with fixed figures, recording what it was asked."""

    currency = "EUR"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def periods(self, plugId: str) -> Deferred:
        """Fixed period totals."""
        self.calls.append(("periods", plugId))
        return succeed({"today_wh": 412.5, "yesterday_wh": 1830.0, "week_wh": 2242.5, "month_wh": 2242.5,
                        "year_wh": 803112.0, "currency": "EUR", "today_cost": 0.1238, "yesterday_cost": 0.549,
                        "week_cost": 0.6728, "month_cost": 0.6728, "year_cost": 240.93})

    def baseline(self, plugId: str) -> dict[str, Any]:
        """A fixed baseline."""
        return {"baseline_w": 8.0, "baseline_hours": 168.0, "baseline_yearly_kwh": 70.128,
                "baseline_yearly_cost": 21.0384, "currency": "EUR"}

    def chart(self, plugId: str) -> dict[str, Any]:
        """Two readings in the hour, one 5-minute mean."""
        return {"hour": [[1_699_999_940, 41.2], [1_699_999_990, 40.9]], "day": [[1_699_999_700, 40.3]]}

    def history(self, plugId: str, period: str, value: str, cost: bool = False) -> Deferred:
        """One bucket with cost; a bad value fails as the ledger does."""
        self.calls.append(("history", plugId, period, value, cost))
        if value == "bad":
            raise ValueError("not a date")
        return succeed({"plug": plugId, "period": period, "value": value, "unit": "hour", "timezone": "UTC",
                        "buckets": [{"start": "x", "label": "00:00", "wh": 1000.0, "cost": 0.3}],
                        "total_wh": 1000.0, "currency": "EUR", "total_cost": 0.3})

    def costTable(self, month: str | None = None) -> Deferred:
        """A one-plug table."""
        self.calls.append(("costTable", month))
        return succeed({"month": month or "2023-11", "currency": "EUR", "plugs": [], "total_wh": 0.0, "total_cost": 0.0})

    def hourlyCSV(self, plugId: str, start: str, end: str) -> Deferred:
        """Two lines of CSV; an end before the start fails naming end, as insight does."""
        self.calls.append(("hourlyCSV", plugId, start, end))
        if end < start:
            return fail(InsightError("end", f"{end} is before the start {start}"))
        return succeed("start_utc,start_local (UTC),wh,cost (EUR)\r\n2023-11-14T22:00:00Z,2023-11-14T22:00:00+00:00,250,0.075\r\n")

    def totals(self) -> Deferred:
        """The house's figures."""
        return succeed({"power_w": 61.5, "today_wh": 812.0, "today_cost": 0.24, "currency": "EUR", "plugs_online": 2})

    def switches(self, plugId: str, limit: int) -> Deferred:
        """One switch."""
        self.calls.append(("switches", plugId, limit))
        return succeed([{"at": "2023-11-14T22:13:20Z", "relay": "on", "cause": "timer"}])
