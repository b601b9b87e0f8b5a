"""In-memory tests of the HTTP API: every route, status code and authentication rule.

Requests go through a real twisted.web channel over StringTransport; time is a task.Clock.
"""

from __future__ import annotations

from datetime import datetime

from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.web_helpers import PLUG_A, PLUG_B, PLUG_C, TOKEN, Harness, runtime
from vesyncd.plugs import codec as m
from vesyncd.core.session import MAX_QUEUED_COMMANDS
from vesyncd.core.periods import hostZone


class StaticTests(unittest.TestCase):
    """The page is served to anyone, with a strict content security policy."""

    def test_index(self) -> None:
        """GET / answers the page without credentials."""
        r = Harness().request("GET", "/", token=None)
        self.assertEqual(r.status, 200)
        self.assertIn(b"<title>vesyncd</title>", r.body)
        self.assertIn("script-src 'self'", r.header("content-security-policy"))
        self.assertEqual(r.header("x-content-type-options"), "nosniff")

    def test_assets(self) -> None:
        """The script and style sheet come from package data with their types."""
        h = Harness()
        self.assertEqual(h.request("GET", "/app.js", token=None).header("content-type"),
                         "text/javascript; charset=utf-8")
        self.assertEqual(h.request("GET", "/style.css", token=None).header("content-type"), "text/css; charset=utf-8")

    def test_static_post(self) -> None:
        """Static files only answer GET."""
        self.assertEqual(Harness().request("POST", "/", token=None).status, 405)

    def test_unknown_path(self) -> None:
        """Anything else is a JSON 404."""
        r = Harness().request("GET", "/nope")
        self.assertEqual((r.status, r.json()["error"]), (404, "not_found"))

    def test_wrong_method(self) -> None:
        """A known path with the wrong method is 405 with Allow."""
        r = Harness().request("DELETE", "/api/plugs")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET")


class BearerTests(unittest.TestCase):
    """The control token as a bearer token."""

    def setUp(self) -> None:
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def test_noToken(self) -> None:
        """No credentials: 401 at once, with a WWW-Authenticate challenge."""
        r = Harness().request("GET", "/api/plugs", token=None)
        self.assertEqual((r.status, r.json()["error"]), (401, "unauthorized"))
        self.assertIn("Bearer", r.header("www-authenticate"))

    def test_otherScheme(self) -> None:
        """Basic authentication is not accepted."""
        r = Harness().request("GET", "/api/plugs", token=None, headers={"Authorization": "Basic eDp5"})
        self.assertEqual(r.status, 401)

    def test_wrongTokenSlowed(self) -> None:
        """A wrong token is answered 401 only after the throttle's delay, which doubles, and is logged."""
        h = Harness()
        first = h.send("GET", "/api/plugs", token="wrong", peer="10.1.2.3")
        self.assertIsNone(first.response())
        h.clock.advance(0.49)
        self.assertIsNone(first.response())
        h.clock.advance(0.02)
        self.assertEqual(first.response().status, 401)
        second = h.send("GET", "/api/plugs", token="wrong", peer="10.1.2.3")
        h.clock.advance(0.9)
        self.assertIsNone(second.response())
        h.clock.advance(0.2)
        self.assertEqual(second.response().status, 401)
        self.assertTrue(any(e.get("peer") == "10.1.2.3" and "wrong token" in e.get("log_format", "")
                            for e in self.logged))
        self.assertEqual(h.app.auth.failures, 2)

    def test_goodTokenResetsThrottle(self) -> None:
        """The right token clears the peer's failures."""
        h = Harness()
        h.send("GET", "/api/plugs", token="wrong")
        h.clock.advance(1)
        self.assertEqual(h.request("GET", "/api/plugs").status, 200)
        self.assertEqual(h.throttle.delay("127.0.0.1"), 0.0)

    def test_clientGoneDuringDelay(self) -> None:
        """A client that leaves while being slowed down leaves nothing behind."""
        h = Harness()
        ex = h.send("GET", "/api/plugs", token="wrong")
        ex.channel.connectionLost(Failure(ConnectionDone()))
        self.assertFalse([c for c in h.clock.getDelayedCalls() if c.func == h.app._finishLater])
        h.clock.advance(5)


class PlugRouteTests(unittest.TestCase):
    """Plug listing, lookup, switching, renaming, energy and power."""

    def test_list(self) -> None:
        """GET /api/plugs lists every plug in the shared JSON form, with energy."""
        h = Harness()
        doc = h.request("GET", "/api/plugs").json()
        byId = {p["id"]: p for p in doc["plugs"]}
        self.assertEqual(set(byId), {PLUG_A, PLUG_B, PLUG_C})
        expected = h.hub.get(PLUG_B).toJSON(h.hub.energy(PLUG_B))
        self.assertEqual(byId[PLUG_B], expected)
        self.assertEqual(byId[PLUG_B]["alias"], "Kettle")
        self.assertFalse(byId[PLUG_C]["online"])
        self.assertIn("energy_lifetime_kwh", byId[PLUG_A])

    def test_getByAliasAndPrefix(self) -> None:
        """A plug is found by id, alias (any case, URL-encoded) or unique id prefix."""
        h = Harness()
        self.assertEqual(h.request("GET", "/api/plugs/kETTLE").json()["id"], PLUG_B)
        self.assertEqual(h.request("GET", "/api/plugs/aaaa1").json()["id"], PLUG_A)
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_C}").json()["id"], PLUG_C)
        h.hub.rename(PLUG_A, "Desk lamp")
        self.assertEqual(h.request("GET", "/api/plugs/desk%20lamp").json()["id"], PLUG_A)

    def test_unknown(self) -> None:
        """An unknown plug is 404."""
        r = Harness().request("GET", "/api/plugs/nothing")
        self.assertEqual((r.status, r.json()["error"]), (404, "unknown"))

    def test_ambiguous(self) -> None:
        """A prefix of several ids is 409."""
        r = Harness().request("POST", "/api/plugs/aaaa/on")
        self.assertEqual((r.status, r.json()["error"]), (409, "ambiguous"))

    def test_badReference(self) -> None:
        """A reference with control characters is 400."""
        self.assertEqual(Harness().request("GET", "/api/plugs/a%0Ab").status, 400)

    def test_switchOn(self) -> None:
        """POST .../on answers once the plug confirms, with the confirmed state."""
        h = Harness()
        ex = h.send("POST", f"/api/plugs/{PLUG_A}/on")
        self.assertIsNone(ex.response())
        self.assertEqual(h.connA.sent[-1]["uri"], "/relay")
        runtime(h.sessionA, True, watts=42.5)
        r = ex.response()
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json()["relay"], r.json()["power_w"]), ("on", 42.5))

    def test_toggle(self) -> None:
        """POST .../toggle switches over."""
        h = Harness()
        ex = h.send("POST", "/api/plugs/kettle/toggle")
        runtime(h.sessionB, False)
        self.assertEqual(ex.response().json()["relay"], "off")

    def test_offline(self) -> None:
        """A command to an offline plug is 503."""
        r = Harness().request("POST", f"/api/plugs/{PLUG_C}/off")
        self.assertEqual((r.status, r.json()["error"]), (503, "offline"))

    def test_timeout(self) -> None:
        """A plug that never confirms gives 504 after the command timeout."""
        h = Harness()
        ex = h.send("POST", f"/api/plugs/{PLUG_A}/off")
        h.clock.advance(h.hub.settings.command_timeout + 0.1)
        r = ex.response()
        self.assertEqual((r.status, r.json()["error"]), (504, "timeout"))

    def test_busy(self) -> None:
        """Beyond the per-plug queue, commands are refused 429 with Retry-After."""
        h = Harness()
        for _ in range(MAX_QUEUED_COMMANDS + 1):
            h.send("POST", f"/api/plugs/{PLUG_A}/toggle")
        r = h.request("POST", f"/api/plugs/{PLUG_A}/toggle")
        self.assertEqual((r.status, r.json()["error"]), (429, "busy"))
        self.assertEqual(r.header("retry-after"), "1")

    def test_rename(self) -> None:
        """PUT .../alias sets the alias; null clears it."""
        h = Harness()
        r = h.request("PUT", f"/api/plugs/{PLUG_A}/alias", body={"alias": "Heater"})
        self.assertEqual((r.status, r.json()["alias"]), (200, "Heater"))
        self.assertEqual(h.hub.get("heater").id, PLUG_A)
        self.assertIsNone(h.request("PUT", "/api/plugs/heater/alias", body={"alias": None}).json()["alias"])

    def test_renameInvalid(self) -> None:
        """A taken or overlong alias, or a malformed body, is 400."""
        h = Harness()
        for body in ({"alias": "kettle"}, {"alias": "x" * 65}, {"alias": 5}, {}, ["alias"]):
            r = h.request("PUT", f"/api/plugs/{PLUG_A}/alias", body=body)
            self.assertEqual((r.status, r.json()["error"]), (400, "invalid"), body)

    def test_badJSON(self) -> None:
        """A body that is not JSON is 400."""
        r = Harness().request("PUT", f"/api/plugs/{PLUG_A}/alias", raw=b"{nope")
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid"))

    def test_oversized(self) -> None:
        """A declared body over 16 KiB is refused 413 without being read, and the connection closed."""
        h = Harness()
        ex = h.send("PUT", f"/api/plugs/{PLUG_A}/alias", raw=b"x" * (16 * 1024 + 1))
        r = ex.response()
        self.assertEqual((r.status, r.json()["error"]), (413, "too_large"))
        self.assertTrue(ex.transport.disconnecting)
        self.assertIsNone(h.hub.get(PLUG_A).alias)

    def test_oversizedChunked(self) -> None:
        """A chunked body is counted too."""
        h = Harness()
        chunk = b"x" * 8192
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
        ex = h.open(f"PUT /api/plugs/{PLUG_A}/alias HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode() + body)
        self.assertEqual(ex.response().status, 413)

    def test_tooManyHeaders(self) -> None:
        """More than 64 header lines are refused by the channel."""
        h = Harness()
        ex = h.send("GET", "/api/plugs", headers={f"X-H{i}": "1" for i in range(80)})
        self.assertEqual(ex.response().status, 400)

    def test_energy(self) -> None:
        """GET .../energy gives the ledger's history for a day, month or year (default today)."""
        h = Harness()
        h.sessionA.received(m.Report(wattSeconds=7200, seconds=180))
        today = datetime.fromtimestamp(h.clock.seconds(), tz=hostZone()).date()
        doc = h.request("GET", f"/api/plugs/{PLUG_A}/energy").json()
        self.assertEqual((doc["period"], doc["value"], len(doc["buckets"])), ("day", today.isoformat(), 24))
        self.assertAlmostEqual(doc["total_wh"], 2.0)
        month = h.request("GET", f"/api/plugs/{PLUG_A}/energy?month={today:%Y-%m}").json()
        self.assertAlmostEqual(month["total_wh"], 2.0)
        year = h.request("GET", f"/api/plugs/{PLUG_A}/energy?year={today:%Y}").json()
        self.assertEqual(len(year["buckets"]), 12)
        direct = []
        h.hub.ledger.history(PLUG_A, "month", f"{today:%Y-%m}").addCallback(direct.append)
        self.assertEqual(month, direct[0])

    def test_energyInvalid(self) -> None:
        """A malformed period, two periods or an unknown parameter is 400; an unknown plug 404."""
        h = Harness()
        for query in ("day=2024-13-01", "month=x", "day=2024-01-01&year=2024", "week=1"):
            r = h.request("GET", f"/api/plugs/{PLUG_A}/energy?{query}")
            self.assertEqual((r.status, r.json()["error"]), (400, "invalid"), query)
        self.assertEqual(h.request("GET", "/api/plugs/zz/energy?year=2024").status, 404)

    def test_power(self) -> None:
        """GET .../power gives the last hour of readings."""
        h = Harness()
        runtime(h.sessionA, False, watts=0.0)
        h.clock.advance(50)
        runtime(h.sessionA, False, watts=12.0)
        doc = h.request("GET", f"/api/plugs/{PLUG_A}/power").json()
        self.assertEqual([w for _, w in doc["points"]], [0.0, 12.0])
        self.assertEqual(doc["points"][1][0] - doc["points"][0][0], 50)
        self.assertEqual(len(h.app.power.series(PLUG_A, h.clock.seconds() + 3590)), 1)

    def test_status(self) -> None:
        """GET /api/status has the daemon's counters."""
        doc = Harness().request("GET", "/api/status").json()
        self.assertEqual((doc["plugs_known"], doc["plugs_online"]), (3, 2))


class SessionTests(unittest.TestCase):
    """The browser's login, cookie and CSRF rules."""

    def loggedIn(self, h: Harness) -> tuple[str, str]:
        r = h.request("POST", "/api/session", token=None, body={"token": TOKEN})
        self.assertEqual(r.status, 200)
        cookie = r.header("set-cookie")
        return cookie.split(";")[0], r.json()["csrf"]

    def test_loginCookie(self) -> None:
        """The token buys an HttpOnly, SameSite=Strict session cookie and a CSRF token."""
        h = Harness()
        r = h.request("POST", "/api/session", token=None, body={"token": TOKEN})
        cookie = r.header("set-cookie")
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertNotIn("Secure", cookie)
        self.assertNotIn(TOKEN, cookie)
        self.assertTrue(r.json()["csrf"])

    def test_cookieReads(self) -> None:
        """The cookie alone is enough to read, and GET /api/session returns the CSRF token again."""
        h = Harness()
        cookie, csrf = self.loggedIn(h)
        self.assertEqual(h.request("GET", "/api/plugs", token=None, headers={"Cookie": cookie}).status, 200)
        self.assertEqual(h.request("GET", "/api/session", token=None, headers={"Cookie": cookie}).json()["csrf"],
                         csrf)

    def test_cookieWithoutCSRF(self) -> None:
        """A state-changing request with only the cookie is 403."""
        h = Harness()
        cookie, _ = self.loggedIn(h)
        r = h.request("POST", f"/api/plugs/{PLUG_A}/on", token=None, headers={"Cookie": cookie})
        self.assertEqual((r.status, r.json()["error"]), (403, "forbidden"))
        self.assertEqual(h.connA.sent[-1]["uri"], "/loginReply")

    def test_cookieWrongCSRF(self) -> None:
        """A wrong CSRF token is 403."""
        h = Harness()
        cookie, _ = self.loggedIn(h)
        r = h.request("POST", f"/api/plugs/{PLUG_A}/on", token=None,
                      headers={"Cookie": cookie, "X-CSRF-Token": "guess"})
        self.assertEqual(r.status, 403)

    def test_crossOrigin(self) -> None:
        """A foreign Origin is 403 even with the right CSRF token."""
        h = Harness()
        cookie, csrf = self.loggedIn(h)
        r = h.request("POST", f"/api/plugs/{PLUG_A}/on", token=None,
                      headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        self.assertEqual(r.status, 403)

    def test_cookieWithCSRF(self) -> None:
        """Cookie, CSRF token and our own Origin switch the plug."""
        h = Harness()
        cookie, csrf = self.loggedIn(h)
        ex = h.send("POST", f"/api/plugs/{PLUG_A}/on", token=None,
                    headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:8080"})
        runtime(h.sessionA, True)
        self.assertEqual(ex.response().json()["relay"], "on")

    def test_wrongLogin(self) -> None:
        """A wrong token at login is slowed and 401, and sets no cookie."""
        h = Harness()
        ex = h.send("POST", "/api/session", token=None, body={"token": "nope"})
        self.assertIsNone(ex.response())
        h.clock.advance(1)
        r = ex.response()
        self.assertEqual(r.status, 401)
        self.assertIsNone(r.header("set-cookie"))

    def test_loginBadBody(self) -> None:
        """A login without a token string is 400."""
        self.assertEqual(Harness().request("POST", "/api/session", token=None, body={"token": 1}).status, 400)

    def test_unknownCookie(self) -> None:
        """A made-up session id is 401."""
        r = Harness().request("GET", "/api/plugs", token=None, headers={"Cookie": "vesyncd_session=abc"})
        self.assertEqual(r.status, 401)

    def test_expiry(self) -> None:
        """A session idle for over a day is gone."""
        h = Harness()
        cookie, _ = self.loggedIn(h)
        h.clock.advance(24 * 3600 + 1)
        self.assertEqual(h.request("GET", "/api/plugs", token=None, headers={"Cookie": cookie}).status, 401)

    def test_bounded(self) -> None:
        """Only 64 sessions are kept; the oldest goes first."""
        h = Harness()
        first, _ = self.loggedIn(h)
        for _ in range(64):
            self.loggedIn(h)
        self.assertEqual(len(h.app.auth.sessions), 64)
        self.assertEqual(h.request("GET", "/api/plugs", token=None, headers={"Cookie": first}).status, 401)

    def test_logout(self) -> None:
        """DELETE /api/session ends the session and clears the cookie."""
        h = Harness()
        cookie, csrf = self.loggedIn(h)
        r = h.request("DELETE", "/api/session", token=None, headers={"Cookie": cookie, "X-CSRF-Token": csrf})
        self.assertEqual(r.status, 200)
        self.assertIn("Max-Age=0", r.header("set-cookie"))
        self.assertEqual(h.request("GET", "/api/plugs", token=None, headers={"Cookie": cookie}).status, 401)

    def test_secureCookieOverTLS(self) -> None:
        """Over TLS the cookie is marked Secure."""
        from twisted.web.server import Request
        from twisted.web.test.requesthelper import DummyChannel

        h = Harness()
        request = Request(DummyChannel())
        request.isSecure = lambda: True
        h.app.auth.setCookie(request, h.app.auth.sessions.create())
        self.assertIn(b"Secure", request.cookies[0])
