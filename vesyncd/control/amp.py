"""
The AMP control port: responders for L{vesyncd.control.commands} on top of L{ControlCore}.

Each connection must log in with the control token first (through the shared cred portal);
until then every command fails with NotLoggedIn, and a connection that has not logged in within
L{LOGIN_TIMEOUT} seconds is closed.  What one client may cost is bounded: the connections open in
total and from one host (L{vesyncd.control.limits}), the bytes of a box not
yet complete (L{MAX_PENDING_BYTES}), requests in flight (L{MAX_IN_FLIGHT}), and a watcher whose
transport stops taking data is dropped rather than buffered for.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from vesyncd.control import commands as c
from vesyncd.auth import BadLogin, FailureThrottle, TokenCredentials, throttledLogin
from vesyncd.control.amp_features import FeatureResponders, fitJSON
from vesyncd.control.api import ControlCore, IControlAvatar
from vesyncd.control.cluster_api import fitCluster
from vesyncd.control.limits import ConnectionLimit, addressHost, addressText

log = Logger()

LOGIN_TIMEOUT = 10.0
#: Bytes of an unfinished AMP box one connection may have buffered (a box holds a few values).
MAX_PENDING_BYTES = 256 * 1024
#: Requests one connection may have unanswered at once.
MAX_IN_FLIGHT = 16


def peerText(transport: Any) -> str:
    """A transport's peer as text for logs: C{127.0.0.1:50123} or C{unix socket}."""
    try:
        return addressText(transport.getPeer())
    except Exception:
        return "unknown peer"


def peerHost(transport: Any) -> str:
    """The key a peer is throttled by: its host (all UNIX socket clients share one key)."""
    peer = getattr(transport, "getPeer", lambda: None)()
    return addressHost(peer) or "unix"


class Responders(FeatureResponders):
    """The AMP responders of one connection; every one calls the shared L{ControlCore} (the automation
    and energy-insight ones come from L{FeatureResponders})."""

    def __init__(self, connection: "ControlProtocol") -> None:
        self.connection = connection

    @property
    def core(self) -> ControlCore:
        """The core, reachable only after login (the dispatcher refuses commands before it)."""
        avatar = self.connection.avatar
        if avatar is None:  # pragma: no cover - dispatchCommand refuses first
            raise c.NotLoggedIn("log in first")
        return avatar

    @c.Login.responder
    def login(self, token: str) -> Deferred:
        """Check the token through the portal."""
        return self.connection.login(token)

    @c.ListPlugs.responder
    def listPlugs(self, offset: int, limit: int) -> Deferred:
        """One page of plugs; the page is cut further if its JSON would not fit one AMP value."""

        def fit(page: dict[str, Any]) -> dict[str, Any]:
            # As fitJSON, but the text measured is the text sent: the page is serialised once.
            plugs = page["plugs"]
            text = c.encodeJSON(plugs)
            while plugs and len(text.encode("utf-8")) > c.MAX_VALUE:
                plugs = plugs[: len(plugs) // 2]
                text = c.encodeJSON(plugs)
            page["plugs"] = text
            return page

        return self.core.listPlugs(offset, limit).addCallback(fit)

    @c.GetPlug.responder
    def getPlug(self, plug: str) -> Deferred:
        """One plug."""
        return self.core.getPlug(plug).addCallback(lambda doc: {"plug": doc})

    @c.Switch.responder
    def switch(self, plug: str, state: str) -> Deferred:
        """Switch and wait for the plug's confirmation."""
        return self.core.switch(plug, state).addCallback(lambda doc: {"plug": doc})

    @c.Refresh.responder
    def refresh(self, plug: str) -> Deferred:
        """Fresh readings."""
        return self.core.refresh(plug).addCallback(lambda doc: {"plug": doc})

    @c.Rename.responder
    def rename(self, plug: str, alias: str) -> Deferred:
        """Set the alias."""
        return self.core.rename(plug, alias).addCallback(lambda doc: {"plug": doc})

    @c.SetPowerOn.responder
    def setPowerOn(self, plug: str, policy: str) -> Deferred:
        """Set the power-on policy."""
        return self.core.setPowerOn(plug, policy).addCallback(lambda doc: {"plug": doc})

    @c.Forget.responder
    def forget(self, plug: str) -> Deferred:
        """Forget the plug."""
        return self.core.forget(plug).addCallback(lambda doc: {"plug": doc})

    @c.Info.responder
    def info(self) -> Deferred:
        """Daemon facts and counters."""
        return self.core.info().addCallback(lambda doc: {"info": doc})

    @c.Nodes.responder
    def nodes(self) -> Deferred:
        """The cluster's nodes (a handful; the list is cut to what fits one AMP value, C{listed} says how many)."""

        def fits(doc: dict[str, Any]) -> bool:
            return len(c.JSON().toString(doc)) <= c.MAX_VALUE

        return self.core.nodes().addCallback(lambda doc: {"cluster": fitCluster(doc, fits)})

    @c.Energy.responder
    def energy(self, plug: str, period: str, value: str, cost: bool | None = None) -> Deferred:
        """One period of energy history (at most 31 buckets: far below 64 KiB), priced with C{cost}."""
        return self.core.energy(plug, period, value, bool(cost)).addCallback(lambda doc: {"history": doc})

    @c.Pending.responder
    def pending(self) -> Deferred:
        """Plugs held until approved (cut to what fits one AMP value)."""
        return self.core.pending().addCallback(lambda plugs: {"pending": fitJSON(plugs), "total": len(plugs)})

    @c.Approve.responder
    def approve(self, plug: str) -> Deferred:
        """Accept a held plug."""
        return self.core.approve(plug).addCallback(lambda doc: {"plug": doc})

    @c.ClearConflict.responder
    def clearConflict(self, plug: str) -> Deferred:
        """Accept the latest login identity."""
        return self.core.clearConflict(plug).addCallback(lambda doc: {"plug": doc})

    @c.Watch.responder
    def watch(self) -> dict[str, Any]:
        """Push events to this connection from now on."""
        self.connection.startWatching()
        return {}

    @c.Unwatch.responder
    def unwatch(self) -> dict[str, Any]:
        """Stop pushing events."""
        self.connection.stopWatching()
        return {}


@implementer(IPushProducer)
class ControlProtocol(amp.AMP):
    """One control connection; it is its transport's producer so it knows when the peer lags."""

    def __init__(self, factory: "ControlFactory") -> None:
        self.factory = factory
        self.avatar: ControlCore | None = None
        self._logout: Any = None
        self._pending = 0
        self._inFlight = 0
        self._loginTimer: Any = None
        self._unwatch: Any = None
        self._paused = False
        self._admitted = False
        self.peer = "unknown peer"
        super().__init__(locator=Responders(self))

    # -- connection ----------------------------------------------------------------------------

    def makeConnection(self, transport: Any) -> None:
        """Start the connection without AMP's own info line: per-connection lines go to debug, so each
        vesyncctl call leaves nothing in the log at info."""
        log.debug("control connection from {peer}", peer=peerText(transport))
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        """Close at once beyond the connection caps; else start the login deadline and follow the buffer."""
        super().connectionMade()
        self.peer = peerText(self.transport)
        self.factory.core.stats["connections"] += 1
        self._admitted = self.factory.limit.admit(self.transport.getPeer())
        if not self._admitted:
            # Refused in connectionMade, not buildProtocol: a TLS wrapper cannot take a None protocol.
            abort = getattr(self.transport, "abortConnection", None)
            (abort or self.transport.loseConnection)()
            return
        self._loginTimer = self.factory.clock.callLater(self.factory.loginTimeout, self._loginExpired)
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason: Any) -> None:
        """Stop watching, log out, cancel timers."""
        if self._loginTimer is not None and self._loginTimer.active():
            self._loginTimer.cancel()
        self.stopWatching()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()
        self.factory.connections.discard(self)
        if self._admitted:
            self._admitted = False
            self.factory.limit.release(self.transport.getPeer())
        log.debug("control connection from {peer} closed", peer=self.peer)
        # BinaryBoxProtocol's, not AMP's: AMP would log the loss at info.
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None

    def _loginExpired(self) -> None:
        self._loginTimer = None
        if self.avatar is None:
            log.info("control client {peer} did not log in within {t:g} s: closing", peer=self.peer,
                     t=self.factory.loginTimeout)
            self.transport.loseConnection()

    def _drop(self, why: str) -> None:
        """Close a misbehaving connection at once, logging why with the peer."""
        log.warn("control client {peer}: {why}; closing the connection", peer=self.peer, why=why)
        self.stopWatching()
        abort = getattr(self.transport, "abortConnection", None)
        (abort or self.transport.loseConnection)()

    # -- bounded input ---------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Count the bytes of the box being received; one growing past the cap closes the connection."""
        self._pending += len(data)
        if self._pending > MAX_PENDING_BYTES:
            self._drop(f"an unfinished request exceeds {MAX_PENDING_BYTES} bytes")
            return
        super().dataReceived(data)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        """A whole box arrived: its bytes no longer count against the cap."""
        self._pending = 0
        super().ampBoxReceived(box)

    def dispatchCommand(self, box: amp.AmpBox) -> Deferred:
        """Refuse commands before login and beyond the in-flight cap; count the rest."""
        command = box.get(amp.COMMAND)
        if self.avatar is None and command != b"Login":
            return fail(amp.RemoteAmpError(c.NotLoggedIn.amp_code, "log in with the control token first"))
        if self._inFlight >= MAX_IN_FLIGHT:
            return fail(amp.RemoteAmpError(c.Busy.amp_code, f"more than {MAX_IN_FLIGHT} requests in flight"))
        self._inFlight += 1

        def done(result: Any) -> Any:
            self._inFlight -= 1
            return result

        return super().dispatchCommand(box).addBoth(done)

    # -- login ---------------------------------------------------------------------------------

    def login(self, token: str) -> Deferred:
        """Log in through the portal; a wrong token fails with BadToken after the throttle's delay."""
        if self.avatar is not None:
            return fail(c.InvalidArgument("already logged in"))
        factory = self.factory
        credentials = TokenCredentials(token, self.peer)

        def ok(result: Any) -> dict[str, Any]:
            _interface, avatar, logout = result
            if not self.transport or getattr(self.transport, "disconnected", False):
                logout()
                return {}
            self.avatar, self._logout = avatar, logout
            factory.core.stats["logins"] += 1
            if self._loginTimer is not None and self._loginTimer.active():
                self._loginTimer.cancel()
            self._loginTimer = None
            log.debug("control client {peer} logged in", peer=self.peer)
            return {}

        def refused(failure: Any) -> Any:
            failure.trap(BadLogin)
            factory.core.stats["bad_tokens"] += 1
            raise c.BadToken(str(failure.value))

        return throttledLogin(factory.portal, factory.throttle, factory.clock, credentials,
                              peerHost(self.transport), None, IControlAvatar).addCallbacks(ok, refused)

    # -- events --------------------------------------------------------------------------------

    def startWatching(self) -> None:
        """Follow the hub's events (raises Busy when too many clients already do)."""
        if self._unwatch is None:
            self._unwatch = self.factory.core.watch(self._pushEvent)

    def stopWatching(self) -> None:
        """Stop following events."""
        if self._unwatch is not None:
            unwatch, self._unwatch = self._unwatch, None
            unwatch()

    def _pushEvent(self, event: dict[str, Any]) -> None:
        if self._paused:
            # The client does not read: dropping it beats buffering events without bound.
            self._drop("its connection backed up while watching events")
            return
        self.callRemote(c.PushEvent, event=event)

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport's buffer drained."""
        self._paused = False

    def stopProducing(self) -> None:
        """The transport is going away."""
        self._paused = True


class ControlFactory(Factory):
    """Makes L{ControlProtocol}s sharing one core, portal and failure throttle."""

    protocol = ControlProtocol  # type: ignore[assignment]
    #: No "Starting factory" lines: the listener logs where it listens once.
    noisy = False

    def __init__(self, core: ControlCore, portal: Portal, clock: IReactorTime, *,
                 throttle: FailureThrottle | None = None, loginTimeout: float = LOGIN_TIMEOUT,
                 limit: ConnectionLimit | None = None) -> None:
        self.core = core
        self.portal = portal
        self.clock = clock
        self.throttle = throttle if throttle is not None else FailureThrottle()
        self.loginTimeout = loginTimeout
        self.limit = limit if limit is not None else ConnectionLimit("control port")
        self.connections: set[ControlProtocol] = set()

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        """A new connection."""
        proto = ControlProtocol(self)
        self.connections.add(proto)
        return proto
