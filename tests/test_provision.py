"""Tests for vesyncd.setup.client: the setup-message codec, the client, and the simulated setup mode.

Everything network-facing runs on 127.0.0.1 with port 0.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from vesyncd.setup import client as P
from vesyncd.setup import codec as C
from vesyncd.setup import plugside as S

PASSWORD = "Zq9-secret-Wifi-pass"
DNS_IP = "192.168.1.10"


def makeRequest(**overrides: Any) -> P.ConfigRequest:
    """A valid request with the distinctive test password."""
    args: dict[str, Any] = dict(ssid="HomeNet", password=PASSWORD, serverIP="192.168.1.10", key=123456789)
    args.update(overrides)
    return P.buildConfigRequest(**args)


def eventText(event: dict[str, Any]) -> str:
    """Everything an observer could print or store about a log event."""
    return formatEvent(event) + repr(event) + str(event.get("log_failure", ""))


# --- codec -----------------------------------------------------------------------------------


def test_encodeReplyMatchesCapture() -> None:
    """The plug's captured reply is length byte '%' (37) followed by 37 bytes of compact JSON."""
    data = C.encodeSetupMessage({"uri": "/beginConfigReply", "err": "0"})
    assert data == b'%{"uri":"/beginConfigReply","err":"0"}'


def test_requestFieldOrderAndDefaults() -> None:
    """buildConfigRequest keeps the app's field order and the app's empty/'0' defaults."""
    request = makeRequest()
    assert tuple(request) == P.REQUEST_FIELDS
    assert request["uri"] == "/beginConfigRequest"
    assert request["account"] == "0"
    assert request["wifiBssid"] == "" and request["ip"] == "" and request["wifiDNS"] == ""
    assert request["key"] == 123456789


def test_defaultKeyIsNineDigitInt() -> None:
    """Without a key, a random 9-digit integer (like the captured one) is used."""
    key = P.buildConfigRequest("n", "", "10.0.0.2")["key"]
    assert isinstance(key, int) and 100_000_000 <= key <= 999_999_999


def test_requestRoundTrip() -> None:
    """An encoded request decodes to the same dict; the length byte counts the JSON bytes."""
    request = makeRequest(ssid="Café ☕", dns=DNS_IP, bssid="AA:BB:CC:00:11:22")
    data = C.encodeSetupMessage(request)
    assert data[0] == len(data) - 1
    assert C.decodeSetupMessage(data) == request
    assert request["wifiBssid"] == "aa:bb:cc:00:11:22"
    assert "Café ☕".encode() in data


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20) | st.integers(0, 10**12), max_size=6),
    st.data(),
)
def test_codecRoundTripAnySplit(obj: dict[str, Any], data: st.DataObject) -> None:
    """Any JSON object within 255 bytes round-trips, however the bytes are split on arrival."""
    try:
        encoded = C.encodeSetupMessage(obj)
    except P.InvalidSetupRequest:
        assert len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()) > 255
        return
    cut = data.draw(st.integers(0, len(encoded)))
    decoder = C.SetupMessageDecoder()
    got = decoder.feed(encoded[:cut]) + decoder.feed(encoded[cut:] + b"\0")
    decoder.finish()
    assert got == [obj]


def test_tooLongNamesFieldNotPassword() -> None:
    """Over 255 bytes: InvalidSetupRequest names the field to shorten, never the password."""
    request = makeRequest(ssid="S" * 32, password="p" * 8 + PASSWORD * 2 + "x" * 15, dns=DNS_IP)
    with pytest.raises(P.InvalidSetupRequest) as info:
        C.encodeSetupMessage(request)
    text = str(info.value)
    assert "wifiPassword" in text and "255" in text and "wifiDNS" in text
    assert PASSWORD not in text and "p" * 8 not in text


def test_tooLongSsidNamed() -> None:
    """When the SSID is the largest part, the message says to shorten wifiID."""
    request = makeRequest(ssid="S" * 32, password="", account="a" * 31 + "@example.com")
    request["wifiID"] = "S" * 120
    with pytest.raises(P.InvalidSetupRequest, match="shorten wifiID"):
        C.encodeSetupMessage(request)


def test_unserialisableRefused() -> None:
    """A value JSON cannot express is refused with a ProvisionError, not a TypeError."""
    with pytest.raises(P.ProvisionError, match="cannot be written as JSON"):
        C.encodeSetupMessage({"uri": b"bytes"})


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"ssid": ""}, "wifiID"),
        ({"ssid": "é" * 17}, "wifiID"),
        ({"password": "short"}, "wifiPassword"),
        ({"password": "x" * 65}, "wifiPassword"),
        ({"password": "g" * 64}, "hex"),
        ({"serverIP": "1.2.3"}, "serverIP"),
        ({"serverIP": "::1"}, "serverIP"),
        ({"serverIP": "server.example"}, "serverIP"),
        ({"serverIP": "0.0.0.0"}, "serverIP"),
        ({"serverIP": "224.0.0.1"}, "serverIP"),
        ({"dns": "300.1.1.1"}, "wifiDNS"),
        ({"gateway": "x"}, "wifiGateway"),
        ({"ip": "1.2.3.4.5"}, "ip"),
        ({"bssid": "aa:bb"}, "wifiBssid"),
        ({"account": ""}, "account"),
        ({"key": -1}, "key"),
        ({"key": True}, "key"),
    ],
)
def test_buildValidation(overrides: dict[str, Any], field: str) -> None:
    """Each invalid field is refused with a message naming it and never showing the password."""
    with pytest.raises(P.InvalidSetupRequest) as info:
        makeRequest(**overrides)
    assert field in str(info.value)
    assert PASSWORD not in str(info.value)


def test_buildAcceptsEdgeValues() -> None:
    """Open networks, 8- and 63-character passphrases, 64-digit hex keys and 32-byte SSIDs pass."""
    for password in ("", "x" * 8, "x" * 63, "ab" * 32):
        P.buildConfigRequest("n" * 32, password, "10.0.0.2")


def test_requestReprMasksPassword() -> None:
    """repr, str and copies of a request hide the password but show the SSID."""
    request = makeRequest()
    for text in (repr(request), str(request), repr(request.copy()), f"{request}", repr([request])):
        assert PASSWORD not in text
        assert "<hidden>" in text and "HomeNet" in text
    assert request["wifiPassword"] == PASSWORD


def test_decoderNulInsideLength() -> None:
    """A NUL counted in the length byte (firmware 2.123 style) is accepted."""
    body = b'{"url":"/connectInfo","step":"STEP3"}\0'
    assert C.decodeSetupMessage(bytes([len(body)]) + body)["step"] == "STEP3"


@pytest.mark.parametrize(
    "data, match",
    [
        (b'{"uri":"/beginConfigReply","err":"0"}', "not a length byte followed by a JSON object"),
        (b"\x05hello", "not a length byte followed"),
        (b"\x05{abcd", "not JSON"),
        (b"\x02{}" + b"\x01[", "not a length byte followed"),
        (b"\x03{\xff}", "not UTF-8"),
        (b"\x10{\"a\":1}", "closed in the middle"),
    ],
)
def test_decoderGarbage(data: bytes, match: str) -> None:
    """Garbage gives BadReply with a clear reason (on feed, or on finish for a cut message)."""
    decoder = C.SetupMessageDecoder()
    with pytest.raises(P.BadReply, match=match):
        decoder.feed(data)
        decoder.finish()


def test_decoderNotAnObject() -> None:
    """JSON that is not an object is refused."""
    with pytest.raises(P.BadReply, match="not an object"):
        C.decodeSetupMessage(b"\x02 1")


def test_decoderBounded() -> None:
    """The decoder refuses more than maxBytes in total."""
    decoder = C.SetupMessageDecoder(maxBytes=100)
    message = C.encodeSetupMessage({"a": "b" * 60})
    decoder.feed(message)
    with pytest.raises(P.BadReply, match="more than 100 bytes"):
        decoder.feed(message)


def test_decoderByteByByte() -> None:
    """Messages fed one byte at a time come out whole, in order, NUL padding skipped."""
    data = C.encodeSetupMessage({"n": 1}) + b"\0\0" + C.encodeSetupMessage({"n": 2})
    decoder = C.SetupMessageDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert got == [{"n": 1}, {"n": 2}] and decoder.pending == 0


@pytest.mark.parametrize(
    "reply, outcome",
    [
        ({"uri": "/beginConfigReply", "err": "0"}, "ok"),
        ({"uri": "/beginConfigReply", "err": 0}, "ok"),
        ({"url": "/connectInfo", "step": "STEP3", "description": "DEV_RECEIVE_APP_DATA"}, "ok"),
        ({"url": "/connectInfo", "step": "STEP1"}, "wait"),
        ({"uri": "/beginConfigReply", "err": "3"}, "refused"),
        ({"uri": "/beginConfigReply", "err": False}, "refused"),
        ({"uri": "/beginConfigReply"}, "bad"),
        ({"uri": "/somethingElse"}, "bad"),
    ],
)
def test_interpretReply(reply: dict[str, Any], outcome: str) -> None:
    """Success, keep-waiting, plug error and unexpected replies are told apart."""
    if outcome == "ok":
        assert C.interpretReply(reply) == reply
    elif outcome == "wait":
        assert C.interpretReply(reply) is None
    elif outcome == "refused":
        with pytest.raises(P.PlugRefused) as info:
            C.interpretReply(reply)
        assert info.value.code == reply["err"]
    else:
        with pytest.raises(P.BadReply):
            C.interpretReply(reply)


def test_parsePlugAddress() -> None:
    """HOST, HOST:PORT and [V6]:PORT parse; bad ports are refused."""
    assert P.parsePlugAddress("192.168.4.1") == ("192.168.4.1", 41234)
    assert P.parsePlugAddress("127.0.0.1:9") == ("127.0.0.1", 9)
    assert P.parsePlugAddress("[::1]:80") == ("::1", 80)
    assert P.parsePlugAddress("::1") == ("::1", 41234)
    for bad in ("h:0", "h:x", ":5", "[::1"):
        with pytest.raises(P.InvalidSetupRequest):
            P.parsePlugAddress(bad)


def test_describeReply() -> None:
    """The success sentence names the firmware when the reply has one."""
    assert "2.123" in C.describeReply({"firmVersion": "2.123"})
    assert C.describeReply({"err": "0"}) == "the plug accepted the Wi-Fi settings"


def test_tooLongSendsNothing() -> None:
    """A too-long request fails at once: no connection attempt, so no byte leaves."""
    memory = MemoryReactorClock()
    request = makeRequest()
    request["wifiID"] = "S" * 200
    failures: list[Failure] = []
    P.provision(memory, "127.0.0.1", 41234, request).addErrback(failures.append)
    assert memory.tcpClients == [] and memory.tcpServers == []
    assert len(failures) == 1 and failures[0].check(P.InvalidSetupRequest)
    assert PASSWORD not in failures[0].getErrorMessage()


def test_clientWritesOneMessageOnConnect() -> None:
    """Once connected, the client writes exactly the encoded request and nothing else."""
    memory = MemoryReactorClock()
    request = makeRequest()
    P.provision(memory, "127.0.0.1", 41234, request).addErrback(lambda f: None)
    host, port, factory, timeout, _ = memory.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 41234)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == C.encodeSetupMessage(request)


def test_connectPhaseTimeoutIsUnreachable() -> None:
    """No connection within the timeout (a black-holed 192.168.4.1) is PlugUnreachable with the hint."""
    memory = MemoryReactorClock()
    failures: list[Failure] = []
    P.provision(memory, "192.168.4.1", 41234, makeRequest(), timeout=15).addErrback(failures.append)
    memory.advance(15)
    assert len(failures) == 1 and failures[0].check(P.PlugUnreachable)
    assert "ESP_xxxxxx" in failures[0].getErrorMessage()
    assert memory.connectors[0].stoppedConnecting


def test_replyPhaseTimeoutClosesConnection() -> None:
    """Connected but unanswered until the deadline: PlugTimeout, and the connection is closed."""
    memory = MemoryReactorClock()
    failures: list[Failure] = []
    P.provision(memory, "127.0.0.1", 41234, makeRequest(), timeout=5).addErrback(failures.append)
    protocol = memory.tcpClients[0][2].buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(C.encodeSetupMessage({"url": "/connectInfo", "step": "STEP1", "description": "X"}))
    memory.advance(5)
    assert len(failures) == 1 and failures[0].check(P.PlugTimeout)
    assert "STEP1" in failures[0].getErrorMessage()
    assert transport.disconnecting and memory.getDelayedCalls() == []


# --- setup mode, in memory ---------------------------------------------------------------------


def setupConnection(**kwargs: Any) -> tuple[S.SetupModeFactory, Protocol, StringTransport, Clock, list[Any]]:
    """A SetupModeFactory protocol on a StringTransport with a task.Clock."""
    clock = Clock()
    configured: list[Any] = []
    factory = S.SetupModeFactory(configured.append, reactor=clock, timeout=10, **kwargs)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return factory, protocol, transport, clock, configured


def replyOf(transport: StringTransport) -> dict[str, Any]:
    """Decode what the simulated plug wrote."""
    return C.decodeSetupMessage(transport.value())


def test_setupModeAccepts() -> None:
    """A valid request gets err "0", the connection closes, then onConfigured gets the request."""
    factory, protocol, transport, clock, configured = setupConnection()
    request = makeRequest()
    data = C.encodeSetupMessage(request)
    for i in range(len(data)):
        protocol.dataReceived(data[i : i + 1])
    assert transport.value() == b'%{"uri":"/beginConfigReply","err":"0"}'
    assert transport.disconnecting
    assert configured == []
    protocol.connectionLost(Failure(ConnectionDone()))
    assert configured == [request] and factory.configured == request
    assert clock.getDelayedCalls() == []


def test_setupModeTrailingNulAccepted() -> None:
    """A NUL after the JSON (as one open-source tool allows) is fine."""
    _, protocol, transport, _, _ = setupConnection()
    protocol.dataReceived(C.encodeSetupMessage(makeRequest()) + b"\0")
    assert replyOf(transport)["err"] == C.ERR_OK


def test_setupModeOnlyOnce() -> None:
    """After one configuration, later connections are closed without a reply."""
    factory, protocol, transport, _, configured = setupConnection()
    protocol.dataReceived(C.encodeSetupMessage(makeRequest()))
    protocol.connectionLost(Failure(ConnectionDone()))
    second = factory.buildProtocol(None)
    secondTransport = StringTransport()
    second.makeConnection(secondTransport)
    assert secondTransport.value() == b"" and secondTransport.disconnecting
    second.connectionLost(Failure(ConnectionDone()))
    assert len(configured) == 1


def badRequest(**changes: Any) -> bytes:
    """An encoded request with fields changed (None removes one)."""
    request = dict(makeRequest())
    for name, value in changes.items():
        if value is None:
            request.pop(name)
        else:
            request[name] = value
    return C.encodeSetupMessage(request)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"\x00", C.ERR_BAD_LENGTH),
        (C.encodeSetupMessage({"uri": "/beginConfigRequest"}) + b"xx", C.ERR_BAD_LENGTH),
        (b'{"uri":"/beginConfigRequest"}', C.ERR_NOT_JSON),
        (b"\x04{abc", C.ERR_NOT_JSON),
        (b"\x02[]", C.ERR_NOT_JSON),
        (badRequest(uri="/other"), C.ERR_BAD_URI),
        (badRequest(wifiID=None), C.ERR_BAD_FIELD),
        (badRequest(wifiPassword=None), C.ERR_BAD_FIELD),
        (badRequest(serverIP=None), C.ERR_BAD_FIELD),
        (badRequest(wifiID=7), C.ERR_BAD_FIELD),
        (badRequest(wifiID=""), C.ERR_BAD_FIELD),
        (badRequest(serverIP="example.com"), C.ERR_BAD_SERVER_IP),
        (badRequest(serverIP="::1"), C.ERR_BAD_SERVER_IP),
    ],
)
def test_setupModeRejects(data: bytes, code: str) -> None:
    """Invalid requests get /beginConfigReply with an error code, a close, and no onConfigured."""
    _, protocol, transport, _, configured = setupConnection()
    protocol.dataReceived(data)
    assert replyOf(transport) == {"uri": "/beginConfigReply", "err": code}
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    assert configured == []


def test_setupModeStalledClientClosed() -> None:
    """A client that sends half a request is aborted after the timeout, with no reply."""
    _, protocol, transport, clock, configured = setupConnection()
    protocol.dataReceived(C.encodeSetupMessage(makeRequest())[:20])
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnected and transport.value() == b""
    protocol.connectionLost(Failure(ConnectionDone()))
    assert configured == [] and clock.getDelayedCalls() == []


def test_setupModeLogsNoPassword() -> None:
    """Neither accepting nor refusing a request logs the password."""
    events: list[dict[str, Any]] = []
    from twisted.logger import Logger

    log = Logger(observer=events.append, namespace="test")
    for data in (C.encodeSetupMessage(makeRequest()), badRequest(serverIP="bad"), badRequest(uri="/x")):
        _, protocol, _, _, _ = setupConnection(log=log)
        protocol.dataReceived(data)
        protocol.connectionLost(Failure(ConnectionDone()))
    assert events
    for event in events:
        assert PASSWORD not in eventText(event)


def test_setupModeCallbackErrorLogged() -> None:
    """An exception in onConfigured is logged, not raised into the reactor."""
    events: list[dict[str, Any]] = []
    from twisted.logger import Logger

    def boom(request: dict[str, Any]) -> None:
        raise RuntimeError("sim broke")

    factory = S.SetupModeFactory(boom, reactor=Clock(), log=Logger(observer=events.append))
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(C.encodeSetupMessage(makeRequest()))
    protocol.connectionLost(Failure(ConnectionDone()))
    assert any("log_failure" in e for e in events)


# --- the client against real loopback servers --------------------------------------------------


class _Scripted(Protocol):
    """A fake plug: on the first data, write a fixed answer (or nothing), maybe close."""

    answer: bytes | None = None
    close = False

    def dataReceived(self, data: bytes) -> None:
        if self.answer is not None:
            self.transport.write(self.answer)
            self.answer = None
        if self.close:
            self.transport.loseConnection()


class LoopbackProvisionTests(unittest.TestCase):
    """provision() over real TCP on 127.0.0.1, port 0."""

    def setUp(self) -> None:
        """Capture every log event to check for the password later."""
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def tearDown(self) -> None:
        """No captured event may contain the password."""
        for event in self.events:
            self.assertNotIn(PASSWORD, eventText(event))

    def listen(self, factory: Factory) -> int:
        """Listen on 127.0.0.1:0 and return the port number."""
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def scripted(self, answer: bytes | None, close: bool = False) -> int:
        """A fake plug that answers with C{answer} (or never) on 127.0.0.1."""
        connections: list[Protocol] = []

        def build() -> Protocol:
            protocol = _Scripted()
            protocol.answer, protocol.close = answer, close
            connections.append(protocol)
            return protocol

        def dropAll() -> None:
            for c in connections:
                if c.transport is not None:
                    c.transport.abortConnection()

        self.addCleanup(dropAll)
        return self.listen(Factory.forProtocol(build))

    async def expectFailure(self, d: Deferred[Any], kind: type[Exception]) -> Exception:
        """Await C{d}, which must fail with C{kind}, and check its text has no password."""
        try:
            await d
        except kind as e:
            self.assertNotIn(PASSWORD, str(e))
            self.assertNotIn(PASSWORD, repr(e))
            return e
        self.fail(f"expected {kind.__name__}")

    def test_success(self) -> Deferred[None]:
        """Against SetupModeFactory: err "0" comes back and the sim gets the request afterwards."""
        configured: Deferred[dict[str, Any]] = Deferred()
        port = self.listen(S.SetupModeFactory(configured.callback, reactor=reactor))
        request = makeRequest(dns=DNS_IP)

        async def go() -> None:
            reply = await P.provision(reactor, "127.0.0.1", port, request, timeout=5)
            self.assertEqual(reply, {"uri": "/beginConfigReply", "err": "0"})
            got = await configured
            self.assertEqual(got, request)
            self.assertNotIn(PASSWORD, repr(got))

        return Deferred.fromCoroutine(go())

    def test_firmware2123Reply(self) -> Deferred[None]:
        """A NUL-terminated /connectInfo STEP3 reply (firmware 2.123) counts as success."""
        info = {
            "url": "/connectInfo", "step": "STEP3", "description": "DEV_RECEIVE_APP_DATA",
            "firmVersion": "2.123", "cid": "0123456789abcdef", "free_heap": 30616,
        }
        port = self.listen(S.SetupModeFactory(lambda r: None, reply=info, nulTerminated=True, reactor=reactor))

        async def go() -> None:
            reply = await P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5)
            self.assertEqual(reply["firmVersion"], "2.123")
            self.assertIn("2.123", C.describeReply(reply))

        return Deferred.fromCoroutine(go())

    def test_progressThenSuccess(self) -> Deferred[None]:
        """An earlier /connectInfo step is skipped; the STEP3 report that follows succeeds."""
        answer = C.encodeSetupMessage({"url": "/connectInfo", "step": "STEP1"}) + b"\0" + C.encodeSetupMessage(
            {"url": "/connectInfo", "step": "STEP3"}
        )
        port = self.scripted(answer)

        async def go() -> None:
            reply = await P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5)
            self.assertEqual(reply["step"], "STEP3")

        return Deferred.fromCoroutine(go())

    def test_silentPlugTimesOut(self) -> Deferred[None]:
        """A plug that takes the connection but never answers gives PlugTimeout."""
        port = self.scripted(None)

        async def go() -> None:
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=0.3), P.PlugTimeout)
            self.assertIn("0.3 s", str(e))

        return Deferred.fromCoroutine(go())

    def test_garbage(self) -> Deferred[None]:
        """A plug that answers something not length-prefixed JSON gives BadReply at once."""
        port = self.scripted(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        async def go() -> None:
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5), P.BadReply)
            self.assertIn("length byte", str(e))

        return Deferred.fromCoroutine(go())

    def test_closedWithoutReply(self) -> Deferred[None]:
        """A plug that closes without answering gives BadReply."""
        port = self.scripted(b"", close=True)

        async def go() -> None:
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5), P.BadReply)
            self.assertIn("without a setup reply", str(e))

        return Deferred.fromCoroutine(go())

    def test_tooMuchData(self) -> Deferred[None]:
        """A plug that floods is cut off after MAX_REPLY_BYTES."""
        port = self.scripted((C.encodeSetupMessage({"url": "/connectInfo", "step": "STEP1", "pad": "x" * 200})) * 30)

        async def go() -> None:
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5), P.BadReply)
            self.assertIn("4096", str(e))

        return Deferred.fromCoroutine(go())

    def test_errorCode(self) -> Deferred[None]:
        """A plug answering err "7" gives PlugRefused with that code; the sim is not configured."""
        configured: list[Any] = []
        port = self.listen(
            S.SetupModeFactory(configured.append, reply={"uri": "/beginConfigReply", "err": "7"}, reactor=reactor)
        )

        async def go() -> None:
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5), P.PlugRefused)
            self.assertEqual(e.code, "7")  # type: ignore[attr-defined]
            self.assertEqual(configured, [])

        return Deferred.fromCoroutine(go())

    def test_invalidRequestRejectedBySim(self) -> Deferred[None]:
        """A request the sim finds invalid (serverIP not IPv4) comes back as PlugRefused."""
        port = self.listen(S.SetupModeFactory(lambda r: None, reactor=reactor))
        request = dict(makeRequest())
        request["serverIP"] = "vesync.example"

        async def go() -> None:
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, request, timeout=5), P.PlugRefused)
            self.assertEqual(e.code, C.ERR_BAD_SERVER_IP)  # type: ignore[attr-defined]

        return Deferred.fromCoroutine(go())

    def test_refused(self) -> Deferred[None]:
        """No listener: PlugUnreachable explaining to join the plug's ESP_xxxxxx Wi-Fi."""
        listening = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        port = listening.getHost().port

        async def go() -> None:
            await listening.stopListening()
            e = await self.expectFailure(P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5), P.PlugUnreachable)
            self.assertIn("ESP_xxxxxx", str(e))
            self.assertIn("192.168.4.1", str(e))
            self.assertIn("refused", str(e))

        return Deferred.fromCoroutine(go())

    def test_cancel(self) -> Deferred[None]:
        """Cancelling the Deferred closes the connection and fails with CancelledError."""
        port = self.scripted(None)
        d = P.provision(reactor, "127.0.0.1", port, makeRequest(), timeout=5)

        async def go() -> None:
            await self.expectFailure(d, CancelledError)

        reactor.callLater(0.1, d.cancel)
        return Deferred.fromCoroutine(go())
