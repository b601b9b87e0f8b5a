"""
Who may use the HTTP API: the control token as a bearer token, or a session cookie from the page.

A browser logs in once with the token (C{POST /api/session}) and gets a random session id in an
HttpOnly, SameSite=Strict cookie; the session id and its CSRF token live only here, in a bounded,
expiring table.  Requests that change something with a cookie must carry the session's CSRF token
in C{X-CSRF-Token}, and an C{Origin}, when sent, must be this server's own.
"""

from __future__ import annotations

import collections
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from vesyncd.auth import FailureThrottle, tokenMatches

log = Logger()

COOKIE = b"vesyncd_session"
CSRF_HEADER = "X-CSRF-Token"
#: Sessions live this long after login, and end sooner after this much idleness.
SESSION_LIFETIME = 7 * 24 * 3600.0
SESSION_IDLE = 24 * 3600.0
#: At most this many sessions are kept; the least recently used goes first.
MAX_SESSIONS = 64
SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")


@dataclass
class Session:
    """One logged-in browser: its CSRF token, when it was created and last used."""

    id: str
    csrf: str
    created: float
    used: float


class AuthFailure(Exception):
    """The request may not proceed; C{status} is 401 or 403 and C{code} the JSON error code."""

    def __init__(self, status: int, code: str, message: str, delay: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.delay = delay


def peerOf(request: Request) -> str:
    """The client's address as text for logs and the failure throttle."""
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    return str(host) if host is not None else str(peer)


class SessionStore:
    """Random session ids kept server-side: bounded in count, expiring by age and idleness."""

    def __init__(self, clock: IReactorTime, maxSessions: int = MAX_SESSIONS,
                 lifetime: float = SESSION_LIFETIME, idle: float = SESSION_IDLE) -> None:
        self.clock = clock
        self.maxSessions = maxSessions
        self.lifetime = lifetime
        self.idle = idle
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> Session:
        """A new session; the least recently used one is dropped when the table is full."""
        self._expire()
        while len(self._sessions) >= self.maxSessions:
            self._sessions.popitem(last=False)
        now = self.clock.seconds()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._sessions[session.id] = session
        return session

    def get(self, sessionId: str | None) -> Session | None:
        """The live session with this id (marking it used), or None."""
        if not sessionId or len(sessionId) > 128:
            return None
        session = self._sessions.get(sessionId)
        if session is None:
            return None
        now = self.clock.seconds()
        if now - session.created > self.lifetime or now - session.used > self.idle:
            del self._sessions[sessionId]
            return None
        session.used = now
        self._sessions.move_to_end(sessionId)
        return session

    def end(self, sessionId: str) -> None:
        """Forget a session (logout)."""
        self._sessions.pop(sessionId, None)

    def _expire(self) -> None:
        now = self.clock.seconds()
        for sid, s in list(self._sessions.items()):
            if now - s.created > self.lifetime or now - s.used > self.idle:
                del self._sessions[sid]


class WebAuth:
    """Checks bearer tokens, session cookies and CSRF tokens; slows wrong tokens per peer host."""

    def __init__(self, token: str, clock: IReactorTime, throttle: FailureThrottle | None = None,
                 sessions: SessionStore | None = None) -> None:
        self.token = token
        self.clock = clock
        self.throttle = throttle if throttle is not None else FailureThrottle()
        self.sessions = sessions if sessions is not None else SessionStore(clock)
        self.failures = 0

    def checkToken(self, request: Request, given: str | bytes | None, how: str) -> None:
        """Accept the control token or raise a slowed, logged 401."""
        peer = peerOf(request)
        if tokenMatches(self.token, given):
            self.throttle.succeeded(peer)
            return
        self.failures += 1
        delay = self.throttle.failed(peer)
        log.warn("http: wrong token ({how}) from {peer} for {method} {path}; answering in {delay:g} s",
                 how=how, peer=peer, method=request.method.decode("ascii", "replace"),
                 path=request.path[:200].decode("ascii", "replace"), delay=delay)
        raise AuthFailure(401, "unauthorized", "wrong token", delay)

    def authenticate(self, request: Request) -> Session | None:
        """Let the request in (returning its session, or None for a bearer token) or raise L{AuthFailure}."""
        header = request.getHeader("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthFailure(401, "unauthorized", "use 'Authorization: Bearer TOKEN'")
            self.checkToken(request, value.strip(), "bearer")
            return None
        cookie = request.getCookie(COOKIE)
        if cookie is None:
            raise AuthFailure(401, "unauthorized",
                              "log in, or send the control token as 'Authorization: Bearer TOKEN'")
        session = self.sessions.get(cookie.decode("ascii", "replace"))
        if session is None:
            raise AuthFailure(401, "unauthorized", "session expired: log in again")
        if request.method not in SAFE_METHODS:
            self.checkCSRF(request, session)
        return session

    def checkCSRF(self, request: Request, session: Session) -> None:
        """A state-changing cookie request needs the session's X-CSRF-Token and a same-origin Origin."""
        origin = request.getHeader("origin")
        if origin is not None and not sameOrigin(request, origin):
            log.warn("http: cross-origin {method} from {peer} (Origin {origin!r}) refused",
                     method=request.method.decode("ascii", "replace"), peer=peerOf(request), origin=origin[:200])
            raise AuthFailure(403, "forbidden", "cross-origin request refused")
        given = request.getHeader(CSRF_HEADER) or ""
        if not hmac.compare_digest(session.csrf.encode("ascii"), given.encode("utf-8", "replace")):
            log.warn("http: {method} without a valid CSRF token from {peer}",
                     method=request.method.decode("ascii", "replace"), peer=peerOf(request))
            raise AuthFailure(403, "forbidden", "missing or wrong X-CSRF-Token header")

    def setCookie(self, request: Request, session: Session) -> None:
        """Hand the browser its session cookie (Secure over TLS)."""
        request.addCookie(COOKIE, session.id.encode("ascii"), path=b"/", httpOnly=True, sameSite="strict",
                          secure=request.isSecure(), max_age=str(int(self.sessions.lifetime)).encode())

    def clearCookie(self, request: Request) -> None:
        """Tell the browser to drop its session cookie."""
        request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="strict", secure=request.isSecure(),
                          max_age=b"0")


def sameOrigin(request: Request, origin: str) -> bool:
    """True when C{origin} names this server as the client reached it (scheme and Host header)."""
    host = request.getHeader("host")
    if not host:
        return False
    scheme = "https" if request.isSecure() else "http"
    return origin.strip().lower() == f"{scheme}://{host.strip().lower()}"


def describe(value: Any) -> str:
    """A short printable form of untrusted input for logs."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text[:100].encode("unicode_escape").decode("ascii")
