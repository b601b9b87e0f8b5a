"""
The HTTP front end: the JSON API, the page's static files, server-sent events and C{/metrics}.

Routes are a small table of (method, path pattern) pairs handled by one leaf resource: every
API handler calls the same hub methods as the control port and serialises plugs with
L{vesyncd.core.hub.PlugState.toJSON}; the automation and energy routes live in
L{vesyncd.web.automationapi} and L{vesyncd.web.insightapi}, the plug list's paging in
L{vesyncd.web.listing}.  Nothing here keeps plug state of its own except the short power history
for the page's sparklines.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from vesyncd import __version__
from vesyncd.auth import FailureThrottle
from vesyncd.core.hub import Hub
from vesyncd.core.model import CommandError
from vesyncd.web import listing
from vesyncd.web.auth import AuthFailure, Session, WebAuth, peerOf
from vesyncd.web.automationapi import AutomationRoutes, automationError
from vesyncd.web.events import EventStreams, PowerHistory
from vesyncd.web.insightapi import InsightRoutes
from vesyncd.web.jsonout import BodyEncoder, encodeNow
from vesyncd.web.limits import ConnectionLimits
from vesyncd.web.metrics import registryFor
from vesyncd.web.routing import PLUG, ApiError, Route, queryArgs, readBody, route

log = Logger()

MAX_REF = 128

STATUS_FOR = {"unknown": 404, "ambiguous": 409, "offline": 503, "timeout": 504, "busy": 429, "invalid": 400}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/core.js": ("core.js", "text/javascript; charset=utf-8"),
    "/cards.js": ("cards.js", "text/javascript; charset=utf-8"),
    "/chart.js": ("chart.js", "text/javascript; charset=utf-8"),
    "/detail.js": ("detail.js", "text/javascript; charset=utf-8"),
    "/automation.js": ("automation.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

__all__ = ["ApiError", "Route", "WebApp", "loadStatic"]


def loadStatic() -> dict[str, bytes]:
    """The page's files from package data, read once."""
    folder = resources.files("vesyncd.web") / "static"
    return {name: (folder / name).read_bytes() for name, _ in set(STATIC.values())}


class WebApp(resource.Resource):
    """The whole HTTP front end as one leaf resource with its own small router."""

    isLeaf = True

    def __init__(self, hub: Hub, clock: IReactorTime, token: str, *, dns: Any = None,
                 metricsPublic: bool = False, throttle: FailureThrottle | None = None,
                 maxStreams: int | None = None, static: dict[str, bytes] | None = None,
                 limits: ConnectionLimits | None = None, automation: Any = None, insight: Any = None,
                 tokenPath: Path | str | None = None, threads: IReactorThreads | None = None) -> None:
        super().__init__()
        self.hub = hub
        self.clock = clock
        #: Response bodies, long lists encoded a slice per reactor turn.
        self.bodies = BodyEncoder(clock)
        #: The connection caps of the site serving this app (shown in /metrics).
        self.limits = limits if limits is not None else ConnectionLimits(clock)
        self.auth = WebAuth(token, clock, throttle)
        self.streams = EventStreams(hub, clock, **({"maxStreams": maxStreams} if maxStreams else {}))
        self.power = PowerHistory(hub)
        self.metricsPublic = metricsPublic
        self.registry = registryFor(hub, dns, self)
        #: Where /metrics text is rendered: this reactor's thread pool, or (None) the calling thread.
        self.threads = threads
        self._metricsWaiting: list[Deferred] | None = None
        self.static = static if static is not None else loadStatic()
        #: Where the running daemon keeps its control token (told on the login page).
        self.tokenPath = str(tokenPath) if tokenPath is not None else None
        self.automation = AutomationRoutes(hub, automation)
        self.insight = InsightRoutes(hub, clock, insight, self.power)
        self.routes = [
            route("GET", r"/api/session", self.getSession, auth=True),
            route("POST", r"/api/session", self.login, auth=False),
            route("DELETE", r"/api/session", self.logout),
            route("GET", r"/api/login", self.loginHint, auth=False),
            route("GET", r"/api/status", self.getStatus),
            route("GET", r"/api/plugs", self.listPlugs),
            route("GET", PLUG, self.getPlug),
            route("DELETE", PLUG, self.forget),
            route("POST", PLUG + r"/(?P<action>on|off|toggle)", self.switch),
            route("PUT", PLUG + r"/alias", self.rename),
            route("PUT", PLUG + r"/power-on", self.powerOn),
            route("GET", PLUG + r"/power", self.powerSeries),
            *self.insight.routes(),
            *self.automation.routes(),
            route("GET", r"/api/events", self.events),
            route("GET", r"/metrics", self.metrics, auth=not metricsPublic),
        ]

    def stop(self) -> None:
        """Close event streams and stop following the hub."""
        self.streams.closeAll()
        self.power.stop()

    # -- dispatch ------------------------------------------------------------------------------

    def render(self, request: server.Request) -> Any:
        """Route a request: static files, then API routes with authentication, else 404/405."""
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        try:
            path = request.path.decode("ascii")
        except UnicodeDecodeError:
            return self._error(request, ApiError(400, "invalid", "the path is not ASCII"))
        method = request.method.decode("ascii", "replace")
        if path in STATIC:
            if method not in ("GET", "HEAD"):
                return self._error(request, ApiError(405, "method_not_allowed", f"{method} not allowed here"))
            name, contentType = STATIC[path]
            request.setHeader("content-type", contentType)
            request.setHeader("cache-control", "no-cache")
            return self.static[name]
        request.setHeader("cache-control", "no-store")
        allowed = []
        for candidate in self.routes:
            match = candidate.pattern.fullmatch(path)
            if match is None:
                continue
            if candidate.method != method and not (candidate.method == "GET" and method == "HEAD"):
                allowed.append(candidate.method)
                continue
            return self._run(request, candidate, match.groupdict())
        if allowed:
            request.setHeader("allow", ", ".join(sorted(set(allowed))))
            return self._error(request, ApiError(405, "method_not_allowed", f"use {' or '.join(sorted(set(allowed)))}"))
        return self._error(request, ApiError(404, "not_found", f"no such resource: {path[:100]}"))

    def _run(self, request: server.Request, route: Route, params: dict[str, str]) -> Any:
        session: Session | None = None
        if route.auth:
            try:
                session = self.auth.authenticate(request)
            except AuthFailure as failure:
                return self._denied(request, failure)
        try:
            args = {k: self._segment(v) for k, v in params.items()}
            result = route.handler(request, session, **args)
        except Exception as e:
            return self._error(request, e)
        if result is server.NOT_DONE_YET or isinstance(result, bytes):
            return result
        if not isinstance(result, Deferred):
            result = self._answerBody(request, result)
            if isinstance(result, bytes):
                return result
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(value: Any) -> Any:
            if gone or request.finished:
                return None
            if isinstance(value, Failure):
                body = self._error(request, value.value)
            elif isinstance(value, bytes):
                body = value
            else:
                encoded = self._answerBody(request, value)
                if isinstance(encoded, Deferred):
                    return encoded.addBoth(answer)  # a long list, encoded over several turns
                body = encoded
            request.write(body)
            request.finish()
            return None

        result.addBoth(answer).addErrback(lambda f: log.failure("http: answering failed", f))
        return server.NOT_DONE_YET

    def _answerBody(self, request: server.Request, doc: Any) -> bytes | Deferred:
        """A 200 JSON answer: its bytes, or a Deferred of them when a long list is encoded in slices
        (L{vesyncd.web.jsonout})."""
        request.setResponseCode(200)
        request.setHeader("content-type", "application/json")
        return self.bodies.encode(doc)

    @staticmethod
    def _segment(value: str) -> str:
        text = unquote(value, errors="strict")
        if not text or len(text) > MAX_REF or not text.isprintable():
            raise ApiError(400, "invalid", "a plug is named by 1-128 printable characters")
        return text

    def _denied(self, request: server.Request, failure: AuthFailure) -> Any:
        if failure.status == 401:
            request.setHeader("www-authenticate", 'Bearer realm="vesyncd"')
        body = self._error(request, ApiError(failure.status, failure.code, failure.message))
        if failure.delay <= 0:
            return body
        gone: list[bool] = []
        call = self.clock.callLater(failure.delay, self._finishLater, request, body, gone)

        def cancel(_: Any) -> None:
            gone.append(True)
            if call.active():
                call.cancel()

        request.notifyFinish().addErrback(cancel)
        return server.NOT_DONE_YET

    @staticmethod
    def _finishLater(request: server.Request, body: bytes, gone: list[bool]) -> None:
        if not request.finished and not gone:
            request.write(body)
            request.finish()

    def _json(self, request: server.Request, status: int, doc: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader("content-type", "application/json")
        return encodeNow(doc)

    def _error(self, request: server.Request, error: BaseException) -> bytes:
        field = None
        error = automationError(error) or error
        if isinstance(error, ApiError):
            status, code, message, field = error.status, error.code, error.message, error.field
        elif isinstance(error, CommandError):
            code = error.code
            status = STATUS_FOR.get(code, 502)
            message = str(error)
            if code == "busy":
                request.setHeader("retry-after", "1")
        elif isinstance(error, UnicodeDecodeError):
            status, code, message = 400, "invalid", "not valid UTF-8"
        else:
            log.failure("http: {method} {path} from {peer} failed", Failure(error),
                        method=request.method, path=request.path[:200], peer=peerOf(request))
            status, code, message = 500, "internal", "internal error (see the daemon's log)"
        doc = {"error": code, "message": message}
        if field is not None:
            doc["field"] = field
        return self._json(request, status, doc)

    def _body(self, request: server.Request) -> dict[str, Any]:
        return readBody(request)

    def _plugJSON(self, ref: str) -> dict[str, Any]:
        plug = self.hub.get(ref)
        return plug.toJSON(self.hub.energy(plug.id))

    # -- handlers ------------------------------------------------------------------------------

    def login(self, request: server.Request, session: Session | None) -> Any:
        """Exchange the control token for a session cookie and a CSRF token."""
        token = self._body(request).get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(400, "invalid", 'send {"token": "..."}')
        try:
            self.auth.checkToken(request, token.strip(), "login")
        except AuthFailure as failure:
            return self._denied(request, failure)
        new = self.auth.sessions.create()
        self.auth.setCookie(request, new)
        log.info("http: browser session opened from {peer}", peer=peerOf(request))
        return {"csrf": new.csrf, "expires_in": int(self.auth.sessions.lifetime)}

    def getSession(self, request: server.Request, session: Session | None) -> Any:
        """The session's CSRF token, so that a reloaded page carries on."""
        return {"csrf": session.csrf if session else None, "version": __version__}

    def logout(self, request: server.Request, session: Session | None) -> Any:
        """End the browser session."""
        if session is not None:
            self.auth.sessions.end(session.id)
        self.auth.clearCookie(request)
        return {"ok": True}

    def getStatus(self, request: server.Request, session: Session | None) -> Any:
        """Daemon-wide counters, as C{vesyncctl info} shows them."""
        return {"version": __version__, **self.hub.status()}

    def loginHint(self, request: server.Request, session: Session | None) -> Any:
        """What the login page tells: where this daemon keeps its control token."""
        return {"token_path": self.tokenPath}

    def listPlugs(self, request: server.Request, session: Session | None) -> Any:
        """One page of the known plugs, filtered and sorted as the query asks (see L{listing.page})."""
        args = queryArgs(request, listing.QUERY)
        # Filtered and sorted in place; only the page's plugs are copied (10,000 copies held every plug
        # up ~60 ms, and the dashboard reads every plug a page at a time).
        return listing.page(self.hub.plugsInPlace(), args,
                            lambda p: self.hub.snapshot(p).toJSON(self.hub.energy(p.id)))

    def getPlug(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """One plug by id, id prefix or alias, with its periods, baseline and automation."""
        doc = self._plugJSON(ref)
        engine = self.automation.engine
        doc["automation"] = engine.describe(doc["id"]) if engine is not None else None

        def add(extras: dict[str, Any]) -> dict[str, Any]:
            doc.update(extras)
            return doc

        return self.insight.extras(doc["id"]).addCallback(add)

    def forget(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Forget a plug: its state, alias, energy history and automation."""
        plug = self.hub.forget(ref)
        log.info("http: plug {plug} forgotten by {peer}", plug=plug.id, peer=peerOf(request))
        return {"forgotten": plug.id}

    def powerOn(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Set the plug's power-on policy: {"policy": "on"|"off"|"last"|null}."""
        body = self._body(request)
        if "policy" not in body or body["policy"] not in (None, "on", "off", "last"):
            raise ApiError(400, "invalid", 'policy: "on", "off", "last" or null', field="policy")
        plug = self.hub.setPowerOn(ref, body["policy"])
        return plug.toJSON(self.hub.energy(plug.id))

    def switch(self, request: server.Request, session: Session | None, ref: str, action: str) -> Any:
        """Switch a plug; answers with the state the plug confirmed."""
        on = {"on": True, "off": False, "toggle": None}[action]
        log.info("http: {action} {plug} requested by {peer}", action=action, plug=ref, peer=peerOf(request))
        d = self.hub.switch(ref, on)
        return d.addCallback(lambda plug: plug.toJSON(self.hub.energy(plug.id)))

    def rename(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Set or clear (null or "") a plug's alias."""
        body = self._body(request)
        if "alias" not in body or not (body["alias"] is None or isinstance(body["alias"], str)):
            raise ApiError(400, "invalid", 'send {"alias": "new name"} (or null to clear it)')
        plug = self.hub.rename(ref, body["alias"])
        return plug.toJSON(self.hub.energy(plug.id))

    def powerSeries(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The last hour of power readings, as [POSIX time, watts] pairs."""
        plug = self.hub.resolve(ref)
        points = self.power.series(plug.id, self.clock.seconds())
        return {"plug": plug.id, "window_s": self.power.window, "points": [[t, w] for t, w in points]}

    def events(self, request: server.Request, session: Session | None) -> Any:
        """Open a server-sent event stream (503 when too many are open)."""
        if self.streams.full():
            log.warn("http: event stream from {peer} refused: {n} streams open", peer=peerOf(request),
                     n=len(self.streams.streams))
            request.setHeader("retry-after", "10")
            raise ApiError(503, "busy", f"at most {self.streams.maxStreams} event streams may be open")
        self.streams.open(request, peerOf(request))
        return server.NOT_DONE_YET

    def metrics(self, request: server.Request, session: Session | None) -> Any:
        """Prometheus text exposition of the hub's state.

        The figures are read when the scrape arrives, a thousand plugs per reactor turn; the text is
        made in the thread pool when there is one (~80 ms of CPU at 10,000 plugs that would otherwise
        hold every plug up).  Scrapes that arrive while one is being read or made get that one's
        text: one at a time, whatever the number of scrapers.
        """
        request.setHeader("content-type", CONTENT_TYPE_LATEST)
        if self.threads is None:
            return self.registry.read()()
        answer: Deferred = Deferred()
        if self._metricsWaiting is not None:
            self._metricsWaiting.append(answer)
            return answer
        # The figures are read a thousand plugs per reactor turn; a collector failing to read fails
        # this scrape (and those that joined it) alone.
        reading = self.registry.readInTurns(self.clock)
        self._metricsWaiting = [answer]

        def share(result: Any) -> None:
            waiting, self._metricsWaiting = self._metricsWaiting or [], None
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)

        pool = self.threads.getThreadPool()
        reading.addCallback(lambda render: deferToThreadPool(self.threads, pool, render)).addBoth(share)
        return answer
