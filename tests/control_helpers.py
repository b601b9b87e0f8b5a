"""Shared fixtures of the control-plane tests: a hub on task.Clock with fake plugs, and in-memory AMP/PB pairs."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.spread import pb
from twisted.test import iosim
from zope.interface import implementer

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


class World:
    """A hub on a clock with plugs logged in, a control core, and a portal with the test token."""

    def __init__(self, plugs: int = 2, maxWatchers: int = 64, settings: Settings | None = None) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.hub = Hub(self.clock, settings if settings is not None else Settings(command_timeout=5.0))
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
