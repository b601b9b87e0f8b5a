"""Shared fixtures of the control-plane tests: a hub on task.Clock with fake plugs, and in-memory AMP/PB pairs."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.spread import pb
from twisted.test import iosim
from zope.interface import implementer

from vesyncd import messages as m
from vesyncd.auth import FailureThrottle, makePortal
from vesyncd.control_client import ControlClient, ControlClientProtocol
from vesyncd.control_core import ControlCore, IControlAvatar
from vesyncd.control_server import ControlFactory
from vesyncd.hub import Hub, PlugSession
from vesyncd.interfaces import IPlugConnection
from vesyncd.pb import ControlPBFactory, IControlPerspective, perspectiveFactory

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


class World:
    """A hub on a clock with plugs logged in, a control core, and a portal with the test token."""

    def __init__(self, plugs: int = 2, maxWatchers: int = 64) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.hub = Hub(self.clock, commandTimeout=5.0)
        self.sessions: list[PlugSession] = []
        for i in range(plugs):
            self.sessions.append(self.hub.login(FakePlugConnection(f"192.0.2.{10 + i}:50000"),
                                                m.Login(id=f"{i:x}0aa-plug-{i}", firmVersion="1.89", relay=False)))
        self.core = ControlCore(self.hub, maxWatchers=maxWatchers)
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
