"""Hostile plugs at the edge: control characters in plug strings, and real clients that offer compression."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, threads
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from bench.hardening.rawplug import strings
from tests.test_ws import PLUG_REQUEST, frame, makeServer, rawServer
from vesyncd.core.hub import Hub
from vesyncd.plugs import codec as m
from vesyncd.plugs import options
from vesyncd.plugs import server as ws

#: Strings a hostile plug might send: clear screen, set the terminal title, ring the bell, a raw
#: C1 CSI, DEL, a bidi override that reverses what follows, a line separator, a NUL.
HOSTILE = [
    "\x1b[2J\x1b[H",
    "\x1b]0;owned\x07",
    "\x07\x07",
    "\u009b31mred",
    "a\x7fb",
    "\u202eevil\u202c",
    "one\u2028two",
    "nul\x00here",
    "\u200bzero-width",
]


def printable(text: str) -> bool:
    """Whether every character of C{text} is printable (what a terminal shows as it is)."""
    return text.isprintable()


def hostileLogin(ident: str = "hostile") -> dict[str, Any]:
    """A login whose every string field except the id carries a different hostile string."""
    login: dict[str, Any] = {"id": ident, "relay": "open"}
    for i, name in enumerate(("account", "deviceName", "deviceVersion", "type", "apptype", "firmName",
                              "firmVersion")):
        login[name] = HOSTILE[i % len(HOSTILE)]
    login["\x1b[31mextra"] = {"nested\x07": ["\u202eright", "\x1b]8;;http://x\x07link"]}
    return login


# -- the codec ------------------------------------------------------------------------------------


def test_clean_text_replaces_every_control_and_format_character() -> None:
    """C0, C1, DEL, bidi overrides, zero-width and line separators become U+FFFD; text stays."""
    for text in HOSTILE:
        cleaned = m.cleanText(text)
        assert printable(cleaned), repr(cleaned)
        assert m.REPLACEMENT in cleaned
        assert len(cleaned) == len(text)
    assert m.cleanText("Küche 2 — ☕") == "Küche 2 — ☕"
    assert m.cleanText("\x1b[2J") == "\ufffd[2J"


def test_clean_text_bounds_length() -> None:
    """Text longer than the limit is cut to it."""
    assert m.cleanText("x" * 1000, 10) == "x" * 10
    assert len(m.cleanText("\x07" * 1000)) == m.MAX_TEXT


def test_login_strings_cleaned_by_the_codec() -> None:
    """Every string of a decoded hostile login, known fields, extras and field names, is printable."""
    login = m.decodeFrame(json.dumps(hostileLogin()).encode(), expectLogin=True)
    assert isinstance(login, m.Login)
    assert login.firmVersion == m.cleanText(HOSTILE[6])
    assert login.deviceName == "\ufffd]0;owned\ufffd"
    texts = strings(login) + strings(dict(login.extra))
    assert texts and all(printable(t) for t in texts), [t for t in texts if not printable(t)]


def test_raw_c1_and_bidi_in_utf8_are_cleaned() -> None:
    """Raw (unescaped) UTF-8 C1 controls and bidi overrides, legal in JSON, are cleaned too."""
    payload = '{"uri":"/evtimer","relay":"open","id":1,"aname":"\u009b2J\u202e","note":"\u009b"}'.encode()
    message = m.decodeFrame(payload, expectLogin=False)
    assert isinstance(message, m.EvTimer)
    assert message.aname == "\ufffd2J\ufffd"
    assert all(printable(t) for t in strings(dict(message.extra)))


def test_unknown_uri_and_its_fields_are_cleaned() -> None:
    """An unknown URI with controls, and its fields, reach the core printable and bounded."""
    payload = json.dumps({"uri": "/x\x1b[2J", "big": "\x07" * 5000, "\x1b": 1}).encode()
    message = m.decodeFrame(payload, expectLogin=False)
    assert isinstance(message, m.Unknown)
    assert message.uri == "/x\ufffd[2J"
    assert len(message.extra["big"]) == m.MAX_TEXT
    assert all(printable(t) for t in strings(dict(message.extra)))


def test_error_messages_quote_values_escaped_and_short() -> None:
    """A ProtocolError quotes the plug's value as a short repr, never raw or whole."""
    payload = json.dumps({"uri": "/state", "relay": "\x1b[2J" + "x" * 5000}).encode()
    try:
        m.decodeFrame(payload, expectLogin=False)
    except m.ProtocolError as e:
        text = str(e)
    else:  # pragma: no cover - the test fails below
        text = ""
    assert "\\x1b[2J" in text and "\x1b" not in text and len(text) < 120


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=8), inner,
                                                                             max_size=3)), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["/ka", "/kr", "/state", "/evtimer", "/timer", "/trigger", "/unknown\x07", None]),
       st.dictionaries(st.text(max_size=10), json_value, max_size=5))
def test_no_decoded_message_holds_an_unprintable_string(uri: str | None, fields: dict[str, Any]) -> None:
    """Whatever a plug sends, a message that decodes holds only printable strings."""
    obj = dict(fields)
    if uri is None:
        obj["id"] = "p"
    else:
        obj["uri"] = uri
    try:
        message = m.decodeFrame(json.dumps(obj).encode(), expectLogin=uri is None)
    except m.ProtocolError:
        return
    texts = strings(message) + strings(dict(message.extra))
    assert all(printable(t) for t in texts), [t for t in texts if not printable(t)]


# -- a logged-in session ---------------------------------------------------------------------------


class HostileSessionTests(unittest.TestCase):
    """A hostile plug logged in through the real server adapter, in memory."""

    def test_hostile_login_reaches_state_and_log_clean(self) -> None:
        """The plug's state, its status and every log line of its session hold no control character."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        hub, clock, factory = makeServer()
        proto, transport = rawServer(factory)
        proto.dataReceived(PLUG_REQUEST)
        proto.dataReceived(frame(json.dumps(hostileLogin()).encode()))
        proto.dataReceived(frame(json.dumps({"uri": "/nonsense\x1b[2J", "x\x07": "\u202e"}).encode()))
        proto.dataReceived(frame(json.dumps({"uri": "/timer", "error": 0, "t\x1b": "\x07\u009b"}).encode()))
        proto.dataReceived(frame(b'{"uri":"/state","relay":"\\u001b[2J"}'))
        plug = hub.get("hostile")
        assert plug.online and plug.firmware == m.cleanText(HOSTILE[6])
        texts = strings(plug) + strings(hub.status())
        assert texts and all(printable(t) for t in texts), [t for t in texts if not printable(t)]
        lines = [formatEvent(e) or "" for e in events]
        assert any("hostile" in line for line in lines)
        for line in lines:
            assert all(ch.isprintable() or ch == "\n" for ch in line), repr(line)


# -- real third-party clients that offer permessage-deflate --------------------------------------------


def test_option_functions_stay_plain_functions_on_the_options_class() -> None:
    """Function options become static methods of the options class, so Autobahn's one-argument call works."""
    hub, clock, factory = makeServer()
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: ("called", offers))
    proto = factory.buildProtocol(None)
    assert proto.perMessageCompressionAccept(["offer"]) == ("called", ["offer"])
    assert options.optionsClass(ws.PlugServerProtocol, factory).perMessageCompressionAccept([]) == ("called", [])


class CompressionOfferTests(unittest.TestCase):
    """Clients that offer permessage-deflate (browsers, npm ws, Python websockets) get a 101 without it."""

    def test_deflate_offer_answered_without_the_extension(self) -> None:
        """An upgrade offering permessage-deflate gets the 101 at once, with no extension accepted."""
        hub, clock, factory = makeServer()
        proto, transport = rawServer(factory)
        offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        proto.dataReceived(PLUG_REQUEST.replace(b"deviceVersion:5\r\n", offer))
        head = transport.value().split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 101")
        assert b"Sec-WebSocket-Extensions" not in head
        proto.dataReceived(frame(b'{"id":"deflating"}'))
        assert hub.isOnline("deflating")

    def test_handshake_error_is_logged_with_the_peer_and_closes(self) -> None:
        """An exception while answering the upgrade is logged with the peer, counted and closes the connection."""

        def broken(offers: Any) -> Any:
            raise RuntimeError("boom")

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        hub, clock, factory = makeServer()
        factory.setProtocolOptions(perMessageCompressionAccept=broken)
        proto, transport = rawServer(factory)
        offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        proto.dataReceived(PLUG_REQUEST.replace(b"deviceVersion:5\r\n", offer))
        assert b"101" not in transport.value()
        assert transport.disconnecting
        assert hub.stats["rejected_handshake_error"] == 1
        failures = [e for e in events if e.get("log_failure") is not None]
        assert len(failures) == 1 and "192.0.2.7" in formatEvent(failures[0])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_error_while_reading_is_logged_with_the_peer_and_closes(self) -> None:
        """An exception in Autobahn's handshake parsing is logged with the peer, counted and closes."""

        class Broken(ws.PlugServerProtocol):
            def processHandshake(self) -> None:
                raise RuntimeError("boom")

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        hub, clock, factory = makeServer()
        factory.protocol = Broken
        proto, transport = rawServer(factory)
        proto.dataReceived(PLUG_REQUEST)
        assert transport.disconnecting and b"101" not in transport.value()
        assert hub.stats["rejected_internal_error"] == 1
        failures = [e for e in events if e.get("log_failure") is not None]
        assert len(failures) == 1 and "192.0.2.7" in formatEvent(failures[0])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_websockets_library_logs_in_and_keeps_alive(self) -> Any:
        """Python's websockets client (offering permessage-deflate, its default) logs in as a 1.x plug
        over loopback and gets /loginReply and a /kr for its /ka."""
        from websockets.sync.client import connect

        hub = Hub(reactor)
        port = reactor.listenTCP(0, ws.PlugServerFactory(hub, reactor=reactor), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"ws://127.0.0.1:{port.getHost().port}/gnws"
        login = {"account": "0", "id": "websockets-client", "deviceName": "vesync_wifi_outlet",
                 "deviceVersion": "1.5", "deviceVersionCode": 5, "type": "wifi-switch",
                 "apptype": "switch-measure", "firmName": "cosytek_firm_a", "firmVersion": "1.89",
                 "firmVersionCode": 89, "key": 0, "relay": "open"}

        def client() -> tuple[Any, dict[str, Any], dict[str, Any]]:
            with connect(url, open_timeout=5, close_timeout=2) as conn:
                offered = conn.request.headers.get("Sec-WebSocket-Extensions")
                accepted = conn.response.headers.get("Sec-WebSocket-Extensions")
                conn.send(json.dumps(login))
                reply = json.loads(conn.recv(timeout=5))
                conn.send(json.dumps({"uri": "/ka", "rssi": -42}))
                kr = json.loads(conn.recv(timeout=5))
                return (offered, accepted), reply, kr

        (offered, accepted), reply, kr = yield threads.deferToThread(client)
        assert offered is not None and "permessage-deflate" in offered
        assert accepted is None
        assert reply["uri"] == "/loginReply" and reply["error"] == 0
        assert kr["uri"] == "/kr" and kr["error"] == 0 and "ms" in kr
        assert hub.stats.get("rejected_handshake_error", 0) == 0
