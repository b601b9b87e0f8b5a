"""
The control token and the rules every authenticated front end shares.

The token is 256 random bits, created at first start in the state directory with mode 0600.
Control port, PB and HTTP all check it here, and all slow down wrong guesses the same way.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, implementer

log = Logger()

TOKEN_BYTES = 32


def loadOrCreateToken(path: Path) -> str:
    """Read the token at C{path}, creating it (mode 0600, parent 0700) when missing.

    @raise OSError: the file cannot be read or created (the message names the path).
    """
    path = Path(path)
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    log.info("created a new control token in {path}", path=str(path))
    return token


def readToken(path: Path) -> str:
    """Read an existing token (for clients); raise OSError when it is missing or empty."""
    token = Path(path).read_text().strip()
    if not token:
        raise OSError(f"token file {path} is empty")
    return token


def tokenMatches(expected: str, given: str | bytes | None) -> bool:
    """Constant-time comparison of a presented token with the real one."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "replace")
    return hmac.compare_digest(expected.encode("ascii"), given)


class FailureThrottle:
    """Slows down wrong tokens per peer host: each failure doubles the wait, up to C{maximum} s.

    Memory is bounded: at most C{maxPeers} hosts are remembered (the oldest are dropped).
    """

    def __init__(self, base: float = 0.5, maximum: float = 10.0, maxPeers: int = 4096) -> None:
        self.base = base
        self.maximum = maximum
        self.maxPeers = maxPeers
        self._failures: dict[str, int] = {}

    def delay(self, host: str) -> float:
        """Seconds to wait before answering this host's next attempt."""
        n = self._failures.get(host, 0)
        return 0.0 if n == 0 else min(self.maximum, self.base * 2 ** (n - 1))

    def failed(self, host: str) -> float:
        """Count a failure; returns the delay to apply before answering it."""
        if host not in self._failures and len(self._failures) >= self.maxPeers:
            self._failures.pop(next(iter(self._failures)))
        self._failures[host] = self._failures.get(host, 0) + 1
        return self.delay(host)

    def succeeded(self, host: str) -> None:
        """Forget a host's failures."""
        self._failures.pop(host, None)


# --- twisted.cred: one portal for every front end that takes the token ------------------------


class ITokenCredentials(ICredentials):
    """A control token presented by a client, with the peer it came from (for logs and throttling)."""

    token = Attribute("The token as presented (text).")
    peer = Attribute("The client's address as text, e.g. '127.0.0.1:50123' or 'unix socket'.")


@implementer(ITokenCredentials)
class TokenCredentials:
    """The token one client presented."""

    def __init__(self, token: str, peer: str = "unknown") -> None:
        self.token = token
        self.peer = peer

    def __repr__(self) -> str:
        return f"<TokenCredentials from {self.peer}>"  # never the token itself


#: The avatar id every holder of the token logs in as.
CONTROL_AVATAR_ID = b"control"


@implementer(ICredentialsChecker)
class TokenChecker:
    """Accepts L{ITokenCredentials} carrying the daemon's token (compared in constant time)."""

    credentialInterfaces = (ITokenCredentials,)

    def __init__(self, token: str) -> None:
        self.token = token

    def requestAvatarId(self, credentials: ITokenCredentials) -> Deferred:
        """Fire with L{CONTROL_AVATAR_ID}, or fail with L{UnauthorizedLogin}."""
        if tokenMatches(self.token, credentials.token):
            return succeed(CONTROL_AVATAR_ID)
        return fail(UnauthorizedLogin("wrong control token"))


@implementer(IRealm)
class TokenRealm:
    """Makes avatars for logged-in clients: one factory per interface a front end asks for.

    C{factories} maps an interface to C{factory(avatarId, mind) -> avatar}; the logout function
    given back calls the avatar's C{logout()} when it has one.
    """

    def __init__(self, factories: dict[Any, Callable[[bytes, Any], Any]]) -> None:
        self.factories = dict(factories)

    def requestAvatar(self, avatarId: bytes, mind: Any, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        """The first interface asked for that this realm serves; NotImplementedError if none."""
        for interface in interfaces:
            factory = self.factories.get(interface)
            if factory is not None:
                avatar = factory(avatarId, mind)
                return interface, avatar, getattr(avatar, "logout", lambda: None)
        raise NotImplementedError("this realm serves none of the interfaces asked for")


def makePortal(token: str, factories: dict[Any, Callable[[bytes, Any], Any]]) -> Portal:
    """A portal that checks the control token and makes avatars with C{factories}."""
    return Portal(TokenRealm(factories), [TokenChecker(token)])


class BadLogin(Exception):
    """A login was refused; the message is safe to show the client."""


def throttledLogin(portal: Portal, throttle: FailureThrottle, clock: IReactorTime, credentials: TokenCredentials,
                   host: str, mind: Any, interface: Any) -> Deferred:
    """Log in through C{portal}; a refusal is logged with the peer and answered only after the
    throttle's delay for C{host} (with C{clock.callLater}: nothing sleeps).

    @return: a Deferred firing with C{(interface, avatar, logout)} or failing with L{BadLogin}.
    """

    def ok(result: Any) -> Any:
        throttle.succeeded(host)
        return result

    def refused(failure: Any) -> Deferred:
        if not failure.check(UnauthorizedLogin, UnhandledCredentials):
            log.failure("login from {peer} failed unexpectedly", failure, peer=credentials.peer)
        delay = throttle.failed(host)
        log.warn("wrong control token from {peer}; answering in {delay:.1f} s", peer=credentials.peer, delay=delay)
        result: Deferred = Deferred()
        clock.callLater(delay, result.errback, BadLogin("wrong token: use the token in the daemon's "
                                                         "state directory (control.token)"))
        return result

    return portal.login(credentials, mind, interface).addCallbacks(ok, refused)
