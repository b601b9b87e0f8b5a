"""
The client side of the control port, used by C{vesyncctl} and the tests.

L{connect} opens a connection to an endpoint string (C{unix:PATH}, C{tcp:HOST:PORT},
C{ssl:HOST:PORT}), verifies the server's certificate for TLS (against a CA file and the host
name with service_identity, or a pinned SHA-256 fingerprint), logs in with the token and gives
back a L{ControlClient} whose methods mirror the commands of L{vesyncd.control.commands}.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any, Callable

from OpenSSL import SSL
from cryptography.hazmat.primitives import hashes
from twisted.internet import endpoints, ssl
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from vesyncd.control import commands as c
from vesyncd.control.client_features import FeatureClient

#: Seconds to wait for the connection (and TLS handshake) and the login answer.
CONNECT_TIMEOUT = 10.0


class ControlConnectError(Exception):
    """The daemon could not be reached; the message says where we looked and why."""


class CertificateRefused(ControlConnectError):
    """The server's TLS certificate failed verification (wrong CA, host name or fingerprint)."""


def normalizeFingerprint(text: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons, spaces and a C{sha256:} prefix are ignored).

    @raise ValueError: it is not 32 bytes of hex.
    """
    cleaned = re.sub(r"[\s:]", "", text.strip().lower().removeprefix("sha256:").removeprefix("sha256/"))
    if not re.fullmatch(r"[0-9a-f]{64}", cleaned):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return cleaned


def certificateFingerprint(pem: bytes) -> str:
    """The SHA-256 fingerprint (hex) of a PEM certificate, as C{--fingerprint} expects it."""
    return ssl.Certificate.loadPEM(pem).original.to_cryptography().fingerprint(hashes.SHA256()).hex()


@implementer(IOpenSSLClientConnectionCreator)
class PinnedCertificate:
    """TLS client settings that accept exactly the server certificate with one SHA-256 fingerprint."""

    def __init__(self, fingerprint: str) -> None:
        self.expected = normalizeFingerprint(fingerprint)
        #: The fingerprint the server presented, once it did.
        self.seen: str | None = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A connection that checks the leaf certificate's fingerprint during the handshake."""
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tlsProtocol)
        return connection

    def _verify(self, connection: Any, x509: Any, errno: int, depth: int, ok: int) -> bool:
        # The pin replaces chain validation, so only the leaf (depth 0) matters.
        if depth != 0:
            return True
        self.seen = x509.to_cryptography().fingerprint(hashes.SHA256()).hex()
        return hmac.compare_digest(self.seen, self.expected)


def _splitTLS(description: str) -> tuple[str, int]:
    """Host and port of C{ssl:HOST:PORT}, C{tls:HOST:PORT} or C{ssl:host=H:port=P}."""
    kind, _, rest = description.partition(":")
    host, port = None, None
    positional: list[str] = []
    for part in re.split(r"(?<!\\):", rest):
        if "=" in part:
            key, _, value = part.partition("=")
            if key == "host":
                host = value
            elif key == "port":
                port = value
        elif part:
            positional.append(part.replace("\\:", ":"))
    if host is None and positional:
        host = positional.pop(0)
    if port is None and positional:
        port = positional.pop(0)
    if not host or not port or not port.isdigit():
        raise ValueError(f"{description!r} is not {kind}:HOST:PORT")
    return host, int(port)


def clientEndpoint(reactor: Any, description: str, *, ca: str | Path | None = None,
                   fingerprint: str | None = None, timeout: float = CONNECT_TIMEOUT) -> tuple[Any, Any]:
    """A client endpoint for a control address, and the TLS creator used (None without TLS).

    @raise ValueError: the description or the fingerprint is malformed, or the CA file is unreadable.
    """
    kind = description.split(":", 1)[0]
    if kind in ("ssl", "tls"):
        host, port = _splitTLS(description)
        creator: Any
        if fingerprint:
            creator = PinnedCertificate(fingerprint)
        else:
            trust = None
            if ca is not None:
                try:
                    trust = ssl.Certificate.loadPEM(Path(ca).read_bytes())
                except (OSError, SSL.Error, ValueError) as e:
                    raise ValueError(f"cannot read CA certificate {ca}: {e}") from None
            creator = ssl.optionsForClientTLS(host, trustRoot=trust)
        base = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
        return endpoints.wrapClientTLS(creator, base), creator
    if kind in ("tcp", "tcp6") and ":timeout=" not in description:
        description += f":timeout={int(timeout)}"
    return endpoints.clientFromString(reactor, description), None


class ControlClientProtocol(amp.AMP):
    """The client's end of a control connection; pushed events go to C{onEvent}."""

    def __init__(self) -> None:
        super().__init__()
        self.onEvent: Callable[[dict[str, Any]], None] | None = None
        self.lost: Deferred = Deferred()

    @c.PushEvent.responder
    def pushEvent(self, event: Any) -> dict[str, Any]:
        """An event from the daemon."""
        if self.onEvent is not None and isinstance(event, dict):
            self.onEvent(event)
        return {}

    def connectionLost(self, reason: Failure) -> None:
        """Fire L{lost} with the reason."""
        super().connectionLost(reason)
        if not self.lost.called:
            self.lost.callback(reason.value)


class ControlClient(FeatureClient):
    """A logged-in control connection; each method mirrors one command and returns a Deferred (the
    automation and energy-insight ones come from L{FeatureClient})."""

    def __init__(self, protocol: ControlClientProtocol) -> None:
        self.protocol = protocol

    def _call(self, command: type[amp.Command], key: str | None, **kw: Any) -> Deferred:
        # AMP appends its own "unhandled error" errback (which drops the connection) after the
        # caller's, so the answer is handed to a fresh Deferred that the caller owns.
        result: Deferred = Deferred()
        self.protocol.callRemote(command, **kw).addCallbacks(result.callback, result.errback)
        if key is not None:
            result.addCallback(lambda box: box[key])
        return result

    def login(self, token: str) -> Deferred:
        """Present the token."""
        return self._call(c.Login, None, token=token)

    def listPage(self, offset: int, limit: int) -> Deferred:
        """One page of plugs: C{{"plugs", "total", "offset"}}."""
        return self._call(c.ListPlugs, None, offset=offset, limit=limit)

    @inlineCallbacks
    def listPlugs(self, pageSize: int = c.MAX_PAGE) -> Any:
        """Every plug (fetching page after page)."""
        plugs: list[dict[str, Any]] = []
        while True:
            page = yield self.listPage(len(plugs), pageSize)
            plugs.extend(page["plugs"])
            if not page["plugs"] or len(plugs) >= page["total"]:
                return plugs

    def getPlug(self, plug: str) -> Deferred:
        """One plug's JSON."""
        return self._call(c.GetPlug, "plug", plug=plug)

    def switch(self, plug: str, state: str) -> Deferred:
        """Switch on, off or toggle; fires with the confirmed state."""
        return self._call(c.Switch, "plug", plug=plug, state=state)

    def refresh(self, plug: str) -> Deferred:
        """Fresh readings."""
        return self._call(c.Refresh, "plug", plug=plug)

    def rename(self, plug: str, alias: str) -> Deferred:
        """Set or clear the alias."""
        return self._call(c.Rename, "plug", plug=plug, alias=alias)

    def setPowerOn(self, plug: str, policy: str) -> Deferred:
        """Set the power-on policy (on, off, last, none)."""
        return self._call(c.SetPowerOn, "plug", plug=plug, policy=policy)

    def forget(self, plug: str) -> Deferred:
        """Forget a plug."""
        return self._call(c.Forget, "plug", plug=plug)

    def info(self) -> Deferred:
        """Daemon facts and counters."""
        return self._call(c.Info, "info")

    def nodes(self) -> Deferred:
        """The cluster's nodes (fails with NotInCluster on a daemon running alone)."""
        return self._call(c.Nodes, "cluster")

    def energy(self, plug: str, period: str, value: str) -> Deferred:
        """One period of energy history."""
        return self._call(c.Energy, "history", plug=plug, period=period, value=value)

    def pending(self) -> Deferred:
        """Plugs held until approved: C{{"pending": [...], "total": N}} (the list may be cut to fit)."""
        return self._call(c.Pending, None)

    def approve(self, plug: str) -> Deferred:
        """Accept a held plug; fires with its state."""
        return self._call(c.Approve, "plug", plug=plug)

    def clearConflict(self, plug: str) -> Deferred:
        """Accept the plug's latest login identity; fires with its state."""
        return self._call(c.ClearConflict, "plug", plug=plug)

    def lost(self) -> Deferred:
        """A Deferred that fires (with the reason) once the connection is closed."""
        result: Deferred = Deferred()
        self.protocol.lost.addBoth(lambda reason: (result.callback(reason), reason)[1])
        return result

    def watch(self, onEvent: Callable[[dict[str, Any]], None]) -> Deferred:
        """Receive events with C{onEvent(event)}; fires once the daemon has started pushing."""
        self.protocol.onEvent = onEvent
        return self._call(c.Watch, None)

    def unwatch(self) -> Deferred:
        """Stop receiving events."""
        return self._call(c.Unwatch, None)

    def close(self) -> None:
        """Close the connection."""
        if self.protocol.transport is not None:
            self.protocol.transport.loseConnection()


def _explain(failure: Failure, description: str, creator: Any) -> Failure:
    """Turn a connection or TLS failure into one clear L{ControlConnectError}."""
    if failure.check(c.ControlError, ControlConnectError):
        return failure
    value = failure.value
    if isinstance(creator, PinnedCertificate) and creator.seen is not None and creator.seen != creator.expected:
        raise CertificateRefused(f"the certificate of {description} was refused: its SHA-256 fingerprint is "
                                 f"{creator.seen}, not the pinned {creator.expected}")
    text = str(value)
    try:
        from service_identity import VerificationError
    except ImportError:  # pragma: no cover - a dependency of Twisted[tls]
        VerificationError = ()  # type: ignore[assignment,misc]
    if creator is not None and (isinstance(value, (SSL.Error, VerificationError)) or "certificate" in text.lower()):
        raise CertificateRefused(f"the certificate of {description} was refused (verification failed: "
                                 f"{text.strip() or type(value).__name__}); check --ca or --fingerprint")
    raise ControlConnectError(f"cannot reach vesyncd at {description}: {text.strip() or type(value).__name__}")


def connect(reactor: Any, description: str, token: str | None, *, ca: str | Path | None = None,
            fingerprint: str | None = None, timeout: float = CONNECT_TIMEOUT) -> Deferred:
    """Connect to the control port at C{description} and log in with C{token} (unless None).

    @return: a Deferred firing with a L{ControlClient}, or failing with L{ControlConnectError}
        (L{CertificateRefused} for TLS verification failures) or L{c.BadToken}.
    """
    try:
        endpoint, creator = clientEndpoint(reactor, description, ca=ca, fingerprint=fingerprint, timeout=timeout)
    except ValueError as e:
        raise ControlConnectError(f"cannot connect to {description}: {e}") from None

    @inlineCallbacks
    def run() -> Any:
        protocol = yield endpoint.connect(Factory.forProtocol(ControlClientProtocol))
        client = ControlClient(protocol)
        if token is not None:
            yield client.login(token)
        return client

    result = run()
    timer = reactor.callLater(timeout, result.cancel)

    def done(value: Any) -> Any:
        if timer.active():
            timer.cancel()
        return value

    def failed(failure: Failure) -> Any:
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError):
            raise ControlConnectError(f"cannot reach vesyncd at {description}: no answer within {timeout:g} s")
        return _explain(failure, description, creator)

    return result.addBoth(done).addErrback(failed)
