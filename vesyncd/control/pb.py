"""
The Perspective Broker front end: the same requests as the AMP control port, for Python clients.

The root offers one method, C{login(token)}, which goes through the SAME cred portal as the AMP
port and gives back a L{ControlPerspective}; its C{remote_*} methods call L{ControlCore}, so no
request logic lives here.  Events go to a client-supplied Referenceable's C{remote_event(event)}.
What one client may cost is bounded: connections in total and per host
(L{vesyncd.control.limits}), Banana strings are capped at L{MAX_STRING}, a connection
must log in within L{LOGIN_TIMEOUT} seconds, and a watcher that leaves more than
L{MAX_UNANSWERED} events unanswered is dropped.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.spread import pb

from vesyncd.control import commands as c
from vesyncd.auth import BadLogin, FailureThrottle, TokenCredentials, throttledLogin
from vesyncd.control.api import ControlCore
from vesyncd.control.amp import LOGIN_TIMEOUT, peerHost, peerText
from vesyncd.control.limits import ConnectionLimit
from vesyncd.control.pb_features import FeaturePerspective

log = Logger()

#: The longest Banana string (one JSON reply is far below this; the default is 640 KiB).
MAX_STRING = 64 * 1024
#: Events a PB watcher may leave unanswered before it is dropped.
MAX_UNANSWERED = 100


class IControlPerspective(pb.IPerspective):
    """The interface the realm serves to PB logins."""


class ControlPerspective(FeaturePerspective, pb.Referenceable):
    """What a logged-in PB client may call; every method mirrors one AMP command (the automation and
    energy-insight ones come from L{FeaturePerspective})."""

    def __init__(self, core: ControlCore) -> None:
        self.core = core
        self._unwatch: Any = None
        self._unanswered = 0

    def remote_listPlugs(self, offset: int = 0, limit: int = c.MAX_PAGE) -> Deferred:
        """One page of plugs."""
        return self.core.listPlugs(offset, limit)

    def remote_getPlug(self, plug: str) -> Deferred:
        """One plug."""
        return self.core.getPlug(plug)

    def remote_switch(self, plug: str, state: str) -> Deferred:
        """Switch on, off or toggle; fires with the confirmed state."""
        return self.core.switch(plug, state)

    def remote_refresh(self, plug: str) -> Deferred:
        """Fresh readings."""
        return self.core.refresh(plug)

    def remote_rename(self, plug: str, alias: str) -> Deferred:
        """Set or clear the alias."""
        return self.core.rename(plug, alias)

    def remote_setPowerOn(self, plug: str, policy: str) -> Deferred:
        """Set the power-on policy."""
        return self.core.setPowerOn(plug, policy)

    def remote_forget(self, plug: str) -> Deferred:
        """Forget a plug."""
        return self.core.forget(plug)

    def remote_info(self) -> Deferred:
        """Daemon facts and counters."""
        return self.core.info()

    def remote_energy(self, plug: str, period: str, value: str, cost: bool = False) -> Deferred:
        """One period of energy history (priced with C{cost})."""
        return self.core.energy(plug, period, value, bool(cost))

    def remote_pending(self) -> Deferred:
        """Plugs held until approved."""
        return self.core.pending()

    def remote_approve(self, plug: str) -> Deferred:
        """Accept a held plug; fires with its state."""
        return self.core.approve(plug)

    def remote_clearConflict(self, plug: str) -> Deferred:
        """Accept the latest login identity; fires with the plug's state."""
        return self.core.clearConflict(plug)

    def remote_watch(self, watcher: Any) -> None:
        """Send every event to C{watcher.callRemote("event", event)} from now on."""
        if not isinstance(watcher, pb.RemoteReference):
            raise c.InvalidArgument("watch needs a Referenceable with remote_event")
        self.logout()
        self._unanswered = 0

        def push(event: dict[str, Any]) -> None:
            if self._unanswered >= MAX_UNANSWERED:
                log.warn("PB watcher left {n} events unanswered: dropping it", n=self._unanswered)
                self.logout()
                return
            self._unanswered += 1

            def answered(result: Any) -> None:
                self._unanswered -= 1

            try:
                watcher.callRemote("event", event).addBoth(answered)
            except pb.DeadReferenceError:
                self.logout()

        self._unwatch = self.core.watch(push)
        watcher.notifyOnDisconnect(lambda ref: self.logout())

    def remote_unwatch(self) -> None:
        """Stop sending events."""
        self.logout()

    def logout(self) -> None:
        """Stop watching (also called when the client disconnects)."""
        if self._unwatch is not None:
            unwatch, self._unwatch = self._unwatch, None
            unwatch()


class ControlRoot(pb.Root):
    """The PB root of one connection: only C{login} is reachable before logging in."""

    def __init__(self, factory: "ControlPBFactory", broker: pb.Broker) -> None:
        self.factory = factory
        self.broker = broker
        self.loggedIn = False

    def remote_login(self, token: str) -> Deferred:
        """Log in through the shared portal; fires with a L{ControlPerspective} or fails with BadToken."""
        if not isinstance(token, str):
            return fail(c.InvalidArgument("the token is text"))
        transport = self.broker.transport
        credentials = TokenCredentials(token, peerText(transport))

        def ok(result: Any) -> ControlPerspective:
            _interface, avatar, logout = result
            self.loggedIn = True
            self.factory.core.stats["logins"] += 1
            self.broker.notifyOnDisconnect(logout)
            log.debug("PB client {peer} logged in", peer=credentials.peer)
            return avatar

        def refused(failure: Any) -> Any:
            failure.trap(BadLogin)
            self.factory.core.stats["bad_tokens"] += 1
            raise c.BadToken(str(failure.value))

        return throttledLogin(self.factory.portal, self.factory.throttle, self.factory.clock, credentials,
                              peerHost(transport), None, IControlPerspective).addCallbacks(ok, refused)


class ControlBroker(pb.Broker):
    """A broker with a small string limit and a login deadline; C{controlRoot} is its connection's root."""

    sizeLimit = MAX_STRING
    controlRoot: "ControlRoot | None" = None
    _deadline: Any = None
    _admitted = False

    def connectionMade(self) -> None:
        """Close at once beyond the connection caps; else start the login deadline."""
        super().connectionMade()
        factory: ControlPBFactory = self.factory
        factory.core.stats["connections"] += 1
        self._admitted = factory.limit.admit(self.transport.getPeer())
        if not self._admitted:
            abort = getattr(self.transport, "abortConnection", None)
            (abort or self.transport.loseConnection)()
            return
        self._deadline = factory.clock.callLater(factory.loginTimeout, self._expired)

    def _expired(self) -> None:
        root = self.controlRoot
        if root is None or not root.loggedIn:
            log.info("PB client {peer} did not log in in time: closing", peer=peerText(self.transport))
            self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        """Cancel the deadline and free the connection's place."""
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        if self._admitted:
            self._admitted = False
            self.factory.limit.release(self.transport.getPeer())
        super().connectionLost(reason)


class ControlPBFactory(pb.PBServerFactory):
    """Serves a fresh L{ControlRoot} per connection, all sharing one core, portal and throttle."""

    protocol = ControlBroker
    #: No "Starting factory" lines: the listener logs where it listens once.
    noisy = False

    def __init__(self, core: ControlCore, portal: Portal, clock: IReactorTime, *,
                 throttle: FailureThrottle | None = None, loginTimeout: float = LOGIN_TIMEOUT,
                 limit: ConnectionLimit | None = None) -> None:
        super().__init__(pb.Root())
        self.core = core
        self.portal = portal
        self.clock = clock
        self.throttle = throttle if throttle is not None else FailureThrottle()
        self.loginTimeout = loginTimeout
        self.limit = limit if limit is not None else ConnectionLimit("PB front end")

    def buildProtocol(self, addr: Any) -> ControlBroker:
        """A broker whose root object is this connection's own L{ControlRoot}."""
        broker = ControlBroker(isClient=False, security=self.security)
        broker.factory = self
        root = ControlRoot(self, broker)
        broker.controlRoot = root
        broker.setNameForLocal("root", root)
        return broker


def perspectiveFactory(core: ControlCore) -> Any:
    """The realm factory for L{IControlPerspective}: a new perspective per login."""
    return lambda avatarId, mind: ControlPerspective(core)
