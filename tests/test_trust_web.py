"""The web front end against hostile clients (issue 17 #6 and #9): connection caps in total and per
host, a deadline on each request however slowly it trickles, refusals counted and logged sparingly,
and nested JSON bodies refused with a 400 and no traceback."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.fakes import waitFor
from tests.web_helpers import TOKEN, Harness, parseResponse
from vesyncd.web.api import WebApp
from vesyncd.web.jsonbody import BadBody, parseBody
from vesyncd.web.limits import HEAD_TIMEOUT, ConnectionLimits, defaultTotal
from vesyncd.web.site import makeSite


def capped(maxTotal: int = 8, maxPerHost: int = 3) -> Harness:
    """A harness whose site has small connection caps."""
    h = Harness()
    h.limits.maxTotal = maxTotal
    h.limits.maxPerHost = maxPerHost
    return h


def connect(h: Harness, peer: str = "192.0.2.50") -> tuple[Any, StringTransport]:
    """Open one connection to the harness's site (nothing sent yet)."""
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 50000),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
    proto = h.site.buildProtocol(transport.getPeer())
    proto.makeConnection(transport)
    return proto, transport


def close(proto: Any) -> None:
    """The client went away."""
    proto.connectionLost(Failure(ConnectionDone()))


class Captured:
    """Log events seen while in use."""

    def __enter__(self) -> list[dict]:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        return self.events

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self.events.append)


class ConnectionCapTests(unittest.TestCase):
    """Connections beyond the caps are closed at once and counted."""

    def test_perHost(self) -> None:
        """One host gets at most maxPerHost connections; another host still gets in; a close frees a slot."""
        h = capped()
        held = [connect(h) for _ in range(3)]
        refused, transport = connect(h)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 "))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.limits.refused["per_host"], 1)
        other, otherTransport = connect(h, "192.0.2.51")
        self.assertFalse(otherTransport.disconnecting)
        close(held[0][0])
        again, againTransport = connect(h)
        self.assertFalse(againTransport.disconnecting)
        self.assertEqual(h.limits.open, 4)

    def test_total(self) -> None:
        """No more than maxTotal connections from all hosts together."""
        h = capped(maxTotal=8, maxPerHost=3)
        for i in range(8):
            connect(h, f"192.0.2.{60 + i}")
        _, transport = connect(h, "192.0.2.99")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.limits.refused["total"], 1)
        self.assertEqual(h.limits.open, 8)

    def test_closedConnectionsReleaseOnce(self) -> None:
        """A connection lost twice gives its slot back once."""
        h = capped()
        proto, _ = connect(h)
        close(proto)
        close(proto)
        self.assertEqual((h.limits.open, dict(h.limits.perHost)), (0, {}))

    def test_eventStreamsCount(self) -> None:
        """Server-sent event streams hold connection slots like any request, and give them back."""
        h = capped(maxTotal=100, maxPerHost=2)
        first = h.send("GET", "/api/events")
        second = h.send("GET", "/api/events")
        self.assertEqual(len(h.app.streams.streams), 2)
        third = h.send("GET", "/api/events")
        self.assertTrue(third.transport.value().startswith(b"HTTP/1.1 503 "))
        close(first.channel)
        self.assertEqual(len(h.app.streams.streams), 1)
        self.assertEqual(h.send("GET", "/api/events").response().status, 200)
        self.assertFalse(second.transport.disconnecting)

    def test_refusalsLoggedSparingly(self) -> None:
        """A flood of refusals gives one warning per interval, naming the peer."""
        h = capped(maxTotal=1, maxPerHost=1)
        connect(h)
        with Captured() as events:
            for _ in range(500):
                connect(h)
            h.clock.advance(h.limits.logInterval)
            connect(h)
        warnings = [e for e in events if "refused" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 2)
        self.assertEqual(warnings[0]["peer"], "192.0.2.50")
        self.assertEqual(warnings[1]["n"], 500)

    def test_metrics(self) -> None:
        """/metrics shows open and refused connections and request timeouts."""
        h = capped(maxTotal=100, maxPerHost=2)
        connect(h)
        connect(h)
        connect(h)
        body = h.request("GET", "/metrics", peer="127.0.0.2").body.decode()
        self.assertIn('vesyncd_http_connections_refused_total{reason="per_host"} 1.0', body)
        self.assertIn("vesyncd_http_connections 3.0", body)
        self.assertIn("vesyncd_http_request_timeouts_total 0.0", body)

    def test_defaultTotalFromFileLimit(self) -> None:
        """The default total cap is a sixteenth of the open-file limit, within 32 and 4096."""
        self.assertEqual([defaultTotal(n) for n in (100, 1024, 65536, 1 << 20)], [32, 64, 4096, 4096])
        self.assertEqual(ConnectionLimits(Harness().clock).maxTotal, defaultTotal())


class OptionTests(unittest.TestCase):
    """--http-max-connections and --http-max-per-host reach the site; nonsense values are refused."""

    def test_optionsReachTheCaps(self) -> None:
        """The daemon's options set the web app's connection caps; the default total follows the file limit."""
        import shutil
        import tempfile
        from pathlib import Path

        from twisted.internet import task
        from twisted.python import usage

        from vesyncd import tap

        state = Path(tempfile.mkdtemp(prefix="vesyncd-web-")) / "state"
        self.addCleanup(shutil.rmtree, state.parent, True)
        base = ["--state-dir", str(state), "--no-dns", "--http", "tcp:0:interface=127.0.0.1",
                "--plugs", "tcp:0:interface=127.0.0.1"]
        options = tap.Options()
        options.parseOptions([*base, "--http-max-connections", "100", "--http-max-per-host", "5"])
        limits = tap.makeService(options, task.Clock()).context.web.limits
        self.assertEqual((limits.maxTotal, limits.maxPerHost), (100, 5))
        options = tap.Options()
        options.parseOptions(base)
        limits = tap.makeService(options, task.Clock()).context.web.limits
        self.assertEqual((limits.maxTotal, limits.maxPerHost), (defaultTotal(), 32))
        for bad in (["--http-max-connections", "0"], ["--http-max-per-host", "-1"], ["--http-max-per-host", "x"]):
            with self.assertRaises(usage.UsageError):
                tap.Options().parseOptions([*base, *bad])


class DeadlineTests(unittest.TestCase):
    """A request must arrive whole within the deadline, however slowly it trickles."""

    def test_trickledHeadCut(self) -> None:
        """A byte every second never completes a request: the connection is cut at the deadline."""
        h = capped()
        proto, transport = connect(h)
        for byte in b"GET /api/status HTTP/1.1\r\nHost: x\r\n"[:int(HEAD_TIMEOUT) - 1]:
            proto.dataReceived(bytes([byte]))
            h.clock.advance(1.0)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(1.0)
        self.assertTrue(transport.disconnected)
        self.assertEqual(h.limits.headTimeouts, 1)
        close(proto)
        self.assertEqual(h.limits.open, 0)

    def test_silentConnectionCut(self) -> None:
        """A connection that sends nothing is cut at the deadline, not after the idle timeout."""
        h = capped()
        _, transport = connect(h)
        h.clock.advance(HEAD_TIMEOUT)
        self.assertTrue(transport.disconnected)

    def test_wholeRequestInTime(self) -> None:
        """A request that arrives in time is answered, and its kept-alive connection is not cut at the deadline."""
        h = capped()
        proto, transport = connect(h)
        proto.dataReceived(b"GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        self.assertEqual(parseResponse(transport.value()).status, 200)
        h.clock.advance(HEAD_TIMEOUT * 2)
        self.assertFalse(transport.disconnected)
        proto.dataReceived(b"GET /api/status HTTP/1.1\r\n")
        h.clock.advance(HEAD_TIMEOUT)
        self.assertTrue(transport.disconnected)

    def test_eventStreamOutlivesDeadline(self) -> None:
        """An event stream, once its request is in, is not cut by the deadline."""
        h = capped()
        ex = h.send("GET", "/api/events")
        h.clock.advance(HEAD_TIMEOUT * 3)
        self.assertFalse(ex.transport.disconnected)


class NestedJSONTests(unittest.TestCase):
    """JSON bodies go through one guarded parser: hostile ones are a 400, never a traceback."""

    def test_deeplyNested(self) -> None:
        """10 kB of '[' to the login and rename routes answer 400 with a JSON error, and log no failure."""
        h = Harness()
        with Captured() as events:
            for method, path in (("POST", "/api/session"), ("PUT", "/api/plugs/Kettle/alias")):
                for raw in (b"[" * 10_000, b'{"a":' * 2000 + b"1" + b"}" * 2000):
                    r = h.request(method, path, raw=raw, headers={"Content-Type": "application/json"})
                    self.assertEqual(r.status, 400, raw[:10])
                    self.assertEqual(r.json()["error"], "invalid")
        self.assertEqual([e for e in events if e.get("log_failure") is not None], [])

    def test_parseBody(self) -> None:
        """The guard takes flat objects up to 8 levels deep and refuses the rest with a reason."""
        self.assertEqual(parseBody(b'{"alias": "Lamp"}'), {"alias": "Lamp"})
        self.assertEqual(parseBody(b'{"a":' + b"[" * 7 + b"1" + b"]" * 7 + b"}")["a"][0][0][0][0][0][0][0], 1)
        for raw in (b'{"a":' + b"[" * 8 + b"1" + b"]" * 8 + b"}", b"[" * 10_000, b"[]", b"NaN", b'{"a": Infinity}',
                    b"\xff", b"{", b"x" * 20_000):
            with self.assertRaises(BadBody):
                parseBody(raw)


class SlowHeadersOnLoopback(unittest.TestCase):
    """The caps and the deadline on a real listening socket."""

    timeout = 20

    @inlineCallbacks
    def test_slowHeadersFlood(self) -> Any:
        """Thirty slow clients from one host: the cap admits a few, the deadline frees them, a real request then works."""
        h = Harness()
        app = WebApp(h.hub, reactor, TOKEN, limits=ConnectionLimits(reactor, maxTotal=50, maxPerHost=10))
        self.addCleanup(app.stop)
        port = reactor.listenTCP(0, makeSite(app, reactor, headTimeout=0.5), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = ("127.0.0.1", port.getHost().port)
        socks = []
        for _ in range(30):
            s = socket.create_connection(address)
            s.setblocking(False)
            s.send(b"G")
            socks.append(s)
            self.addCleanup(s.close)
        yield waitFor(lambda: app.limits.open + app.limits.refused["per_host"] == 30, what="all connections seen")
        self.assertEqual(app.limits.open, 10)
        yield waitFor(lambda: app.limits.open == 0, what="the deadline to cut the slow ones")
        self.assertEqual(app.limits.headTimeouts, 10)
        client = socket.create_connection(address)
        self.addCleanup(client.close)
        client.setblocking(False)
        client.send(b"GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        chunks: list[bytes] = []

        def answered() -> bool:
            try:
                chunks.append(client.recv(65536))
            except BlockingIOError:
                pass
            return b"\r\n\r\n" in b"".join(chunks)

        yield waitFor(answered, what="an answer to a real request")
        self.assertTrue(b"".join(chunks).startswith(b"HTTP/1.1 200 "))


def test_pageWritesPlugStringsAsText() -> None:
    """The page's script never parses strings as HTML (plug names, firmware and errors go in as text)."""
    from importlib import resources

    script = (resources.files("vesyncd.web") / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert script.count("textContent") >= 10
