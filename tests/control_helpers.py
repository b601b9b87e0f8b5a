"""Shared fixtures of the control-plane tests: a hub on task.Clock with fake plugs, and in-memory AMP/PB pairs."""

from __future__ import annotations

import inspect
from datetime import date, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from twisted.internet import task
from twisted.internet.defer import succeed
from twisted.spread import pb
from twisted.test import iosim
from zope.interface import implementer

from vesyncd.automation.engine import AutomationEngine
from vesyncd.automation.interfaces import IAutomationHub
from vesyncd.automation.model import Location
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.store import MemoryAutomationStore
from vesyncd.plugs import codec as m
from vesyncd.auth import FailureThrottle, makePortal
from vesyncd.control.client import ControlClient, ControlClientProtocol
from vesyncd.control.api import ControlCore, IControlAvatar
from vesyncd.control.amp import ControlFactory
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.core.session import PlugSession
from vesyncd.core.interfaces import IPlugConnection
from vesyncd.control.pb import ControlPBFactory, IControlPerspective, perspectiveFactory

TOKEN = "ab" * 32
START = 1_700_000_000.0


@implementer(IPlugConnection)
class FakePlugConnection:
    """A plug connection that records what the hub sends and whether it was closed."""

    def __init__(self, peer: str = "192.0.2.10:50000") -> None:
        self.peer = peer
        self.sent: list[bytes] = []
        self.closed: str | None = None

    def send(self, payload: bytes) -> None:
        """Record one payload."""
        self.sent.append(payload)

    def disconnect(self, reason: str) -> None:
        """Record the close."""
        self.closed = reason


@implementer(IAutomationHub)
class AutomationHubAdapter:
    """The control tests' hub as the automation engine sees it: switches with a cause (passed on when
    the hub takes one), readings, online state, events, and the engine's own announcements."""

    def __init__(self, hub: Hub, clock: task.Clock) -> None:
        self.hub = hub
        self.clock = clock
        self.takesCause = "cause" in inspect.signature(hub.switch).parameters

    def switch(self, plugId: str, on: bool, cause: str) -> Any:
        """Switch through the hub (which waits for the plug's confirmation)."""
        return self.hub.switch(plugId, on, cause=cause) if self.takesCause else self.hub.switch(plugId, on)

    def refresh(self, plugId: str) -> Any:
        """Ask the plug for a reading."""
        return self.hub.refresh(plugId)

    def isOnline(self, plugId: str) -> bool:
        """Whether the plug is connected."""
        return self.hub.isOnline(plugId)

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Follow the hub's events."""
        return self.hub.subscribe(callback)

    def announce(self, kind: str, plugId: str, **data: Any) -> None:
        """Emit an engine event through the hub, stamped with the clock."""
        self.hub.plugEvent(kind, self.hub.get(plugId), self.clock.seconds(), **data)


class FakeInsight:
    """An energy insight with fixed figures in the documented shapes (docs/energy.md); records calls."""

    currency = "EUR"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def periods(self, plugId: str) -> Any:
        """Period totals of one plug."""
        self.calls.append(("periods", plugId))
        return succeed({"today_wh": 412.5, "yesterday_wh": 1830.0, "week_wh": 2242.5, "month_wh": 2242.5,
                        "year_wh": 803112.0, "lifetime_wh": 900000.0, "currency": "EUR", "today_cost": 0.1238,
                        "yesterday_cost": 0.549, "week_cost": 0.6728, "month_cost": 0.6728, "year_cost": 240.93})

    def baseline(self, plugId: str) -> dict[str, Any]:
        """The always-on power of one plug."""
        self.calls.append(("baseline", plugId))
        return {"baseline_w": 8.0, "baseline_hours": 168.0, "baseline_yearly_kwh": 70.128,
                "baseline_yearly_cost": 21.0384, "currency": "EUR"}

    def history(self, plugId: str, period: str, value: str, cost: bool = False) -> Any:
        """Two buckets with cost."""
        self.calls.append(("history", plugId, period, value, cost))
        return succeed({"plug": plugId, "period": period, "value": value, "unit": "hour", "timezone": "UTC",
                        "buckets": [{"start": f"{value}T00:00:00+00:00", "label": "00:00", "wh": 1000.0, "cost": 0.3},
                                    {"start": f"{value}T01:00:00+00:00", "label": "01:00", "wh": 500.0, "cost": 0.15}],
                        "total_wh": 1500.0, "currency": "EUR", "total_cost": 0.45, "daily_charge_total": 0.35})

    def costTable(self, month: str | None = None) -> Any:
        """Two plugs, largest first."""
        self.calls.append(("costTable", month))
        return succeed({"month": month or "2023-11", "currency": "EUR", "total_wh": 3000.0, "total_cost": 0.9,
                        "daily_charge_total": 4.9,
                        "plugs": [{"plug": "10aa-plug-1", "name": "10aa-plug-1", "wh": 2000.0, "cost": 0.6},
                                  {"plug": "00aa-plug-0", "name": "00aa-plug-0", "wh": 1000.0, "cost": 0.3}]})

    def hourlyCSV(self, plugId: str, start: str, end: str) -> Any:
        """A header and one row per local date asked for (both ends included)."""
        self.calls.append(("hourlyCSV", plugId, start, end))
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        rows = [f"{(first + timedelta(days=i)).isoformat()}T00:00:00Z,x,1,0.3" for i in range((last - first).days + 1)]
        return succeed("\r\n".join(["start_utc,start_local (UTC),wh,cost (EUR)"] + rows) + "\r\n")

    def switches(self, plugId: str, limit: int = 50) -> Any:
        """Two switches, newest first."""
        self.calls.append(("switches", plugId, limit))
        return succeed([{"at": "2023-11-14T22:10:00Z", "ts": 1.0, "relay": False, "cause": "timer"},
                        {"at": "2023-11-14T21:40:00Z", "ts": 0.0, "relay": True, "cause": "command"}])


class World:
    """A hub on a clock with plugs logged in, a control core, and a portal with the test token; with
    C{automation}, a real automation engine (in memory, UTC) on the hub, and C{insight} served as given."""

    def __init__(self, plugs: int = 2, maxWatchers: int = 64, settings: Settings | None = None, *,
                 automation: bool = False, insight: Any = None, location: Location | None = None) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.hub = Hub(self.clock, settings if settings is not None else Settings(command_timeout=5.0))
        self.sessions: list[PlugSession] = []
        for i in range(plugs):
            self.sessions.append(self.hub.login(FakePlugConnection(f"192.0.2.{10 + i}:50000"),
                                                m.Login(id=f"{i:x}0aa-plug-{i}", firmVersion="1.89", relay=False)))
        self.engine: AutomationEngine | None = None
        if automation:
            config = AutomationConfig(zone=ZoneInfo("UTC"), location=location)
            self.engine = AutomationEngine(AutomationHubAdapter(self.hub, self.clock), MemoryAutomationStore(),
                                           self.clock, config)
            self.engine.start()
        self.core = ControlCore(self.hub, automation=self.engine, insight=insight, maxWatchers=maxWatchers)
        self.throttle = FailureThrottle()
        self.portal = makePortal(TOKEN, {IControlAvatar: lambda a, mind: self.core,
                                         IControlPerspective: perspectiveFactory(self.core)})
        self.factory = ControlFactory(self.core, self.portal, self.clock, throttle=self.throttle)
        self.pbFactory = ControlPBFactory(self.core, self.portal, self.clock, throttle=self.throttle)

    def confirm(self, index: int, relay: bool) -> None:
        """Plug C{index} answers with C{/runtimeInfo}."""
        self.sessions[index].received(m.RuntimeInfo(relay=relay, meastate="ok", power=(12.5, 0.0),
                                                    voltage=(230.0, 0.0), current=(0.05, 0.0)))

    def amp(self) -> tuple[ControlClient, Any, iosim.IOPump]:
        """A client connected in memory to a new server connection."""
        clientProto, serverProto, pump = iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None), ControlClientProtocol, clock=self.clock)
        return ControlClient(clientProto), serverProto, pump

    def pb(self) -> tuple[pb.PBClientFactory, Any, iosim.IOPump]:
        """A PB client factory connected in memory to a new PB server connection."""
        clientFactory = pb.PBClientFactory()
        clientProto, serverProto, pump = iosim.connectedServerAndClient(
            lambda: self.pbFactory.buildProtocol(None), lambda: clientFactory.buildProtocol(None), clock=self.clock)
        return clientFactory, serverProto, pump


def selfSignedPEM(name: str = "localhost") -> tuple[bytes, bytes]:
    """A fresh self-signed certificate for C{name} and 127.0.0.1, and its key, as PEM (fast: EC P-256)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    keyPEM = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), keyPEM


class CLIHarness:
    """Runs vesyncctl command lines (L{vesyncd.cli.execute}) against C{self.world}'s AMP server in memory;
    mixed into a trial TestCase."""

    world: World

    def start(self, *argv: str, reactor: Any = None) -> tuple[Any, Any, Any]:
        """Begin one command line on a fresh in-memory control connection; returns (exit code, out, err)."""
        import io

        from twisted.internet import defer

        from vesyncd.cli.main import execute

        client, _server, pump = self.world.amp()
        self.pumps = getattr(self, "pumps", []) + [pump]

        async def connect(reactor: Any, args: Any) -> Any:
            await client.login(TOKEN)
            return client

        out, err = io.StringIO(), io.StringIO()
        d = defer.ensureDeferred(execute(reactor or self.world.clock, list(argv), out, err, connect=connect))
        self.flush()
        return d, out, err

    def flush(self) -> None:
        """Deliver every byte waiting on every connection."""
        for pump in getattr(self, "pumps", []):
            pump.flush()

    def run_(self, *argv: str, between: Callable[[], None] | None = None) -> tuple[int, str, str]:
        """Run one command line to its end (C{between} acts for the plug while it waits)."""
        d, out, err = self.start(*argv)
        if between is not None:
            between()
            self.flush()
        return self.successResultOf(d), out.getvalue(), err.getvalue()  # type: ignore[attr-defined]
