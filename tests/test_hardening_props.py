"""Property tests: the plug frame codec, the AES layer and the plug server never fail in an unplanned way."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionLost

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.plugs import codec as m
from vesyncd.sim import plug as sim
from vesyncd.plugs import server as ws

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVER_SETTINGS = settings(max_examples=60, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: A valid example of the login and of every URI a plug sends.
VALID: list[dict[str, Any]] = [
    {"account": "0", "id": "443c878f-f675-4c90-98e8-2f4566914d39", "deviceName": "vesync_wifi_outlet",
     "deviceVersion": "1.5", "deviceVersionCode": 5, "type": "wifi-switch", "apptype": "switch-measure",
     "firmName": "cosytek_firm_a", "firmVersion": "1.89", "firmVersionCode": 89, "key": 0, "relay": "open"},
    {"uri": "/ka", "rssi": -40},
    {"uri": "/kr"},
    {"uri": "/report", "e": "e10", "t": "b4"},
    {"uri": "/runtimeInfo", "relay": "open", "meastate": "idle", "power": "1eb031:1eb031",
     "voltage": "781c2:781c2", "current": "NaN"},
    {"uri": "/state", "relay": "break"},
    {"uri": "/timer", "error": 0},
    {"uri": "/evtimer", "relay": "open", "id": 3, "aname": "t"},
    {"uri": "/trigger", "type": 1},
    {"uri": "/getTriggerCnt", "aboveTriggerCount": 1, "belowTriggerCount": 2},
    {"uri": "/setCtlFlags", "flag": 1, "set": 0},
    {"uri": "/somethingNew", "x": 1},
]
assert {v.get("uri") for v in VALID} >= set(m.DECODERS)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**64, max_value=2**64),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                      st.sampled_from(["open", "break", "NaN", "1eb031:781c2", "e10", "-1", "ffffffffffffff"]))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
field_names = st.sampled_from(["uri", "id", "relay", "rssi", "e", "t", "power", "voltage", "current", "meastate",
                               "error", "type", "aname", "flag", "set", "firmVersion", "key", "x"])


@st.composite
def mutated_valid(draw: Any) -> bytes:
    """A valid message with fields replaced, removed or added, then maybe corrupted at the byte level."""
    obj = dict(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "del", "uri"]))
        if action == "set":
            obj[draw(field_names)] = draw(json_values)
        elif action == "del" and obj:
            obj.pop(draw(st.sampled_from(sorted(obj))))
        else:
            obj["uri"] = draw(st.one_of(st.sampled_from(sorted(m.DECODERS)), json_values))
    data = json.dumps(obj).encode()
    if draw(st.booleans()) and data:
        pos = draw(st.integers(0, len(data) - 1))
        cut = draw(st.sampled_from(["flip", "truncate", "insert"]))
        if cut == "flip":
            data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1:]
        elif cut == "truncate":
            data = data[:pos]
        else:
            data = data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
    return data


frame_payloads = st.one_of(
    st.binary(max_size=300),
    mutated_valid(),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 200).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 200).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def _decodes_or_protocol_error(payload: bytes, expectLogin: bool) -> None:
    try:
        result = m.decodeFrame(payload, expectLogin=expectLogin)
    except m.ProtocolError:
        return
    assert isinstance(result, m.Message)
    if expectLogin:
        assert isinstance(result, m.Login) and result.id
    repr(result)


@SETTINGS
@given(frame_payloads, st.booleans())
def test_decode_frame_returns_message_or_protocol_error(payload: bytes, expectLogin: bool) -> None:
    """Any payload decodes to a Message or raises ProtocolError, nothing else."""
    _decodes_or_protocol_error(payload, expectLogin)


@SETTINGS
@given(st.sampled_from(VALID))
def test_valid_messages_decode(obj: dict[str, Any]) -> None:
    """Every valid example decodes (the login as a Login, the rest after login)."""
    message = m.decodeFrame(json.dumps(obj).encode(), expectLogin="uri" not in obj)
    assert isinstance(message, m.Message)


@SETTINGS
@given(st.binary(max_size=400).filter(lambda b: b"\0" not in b))
def test_aes_round_trips_nul_free(plain: bytes) -> None:
    """aesDecrypt(aesEncrypt(x)) is x for every NUL-free x, and the ciphertext is whole blocks."""
    cipher = m.aesEncrypt(plain)
    assert len(cipher) % 16 == 0 and len(cipher) > len(plain)
    assert m.aesDecrypt(cipher) == plain


@SETTINGS
@given(st.binary(max_size=400))
def test_aes_decrypt_arbitrary_bytes(data: bytes) -> None:
    """aesDecrypt of any bytes returns bytes or raises ProtocolError, and so does decoding what it returns."""
    try:
        plain = m.aesDecrypt(data)
    except m.ProtocolError:
        assert not data or len(data) % 16
        return
    assert isinstance(plain, bytes) and b"\0" not in plain
    _decodes_or_protocol_error(plain, False)


@SETTINGS
@given(st.floats(min_value=0, max_value=2**20, exclude_max=True, allow_nan=False))
def test_fixed_point_round_trip(value: float) -> None:
    """encodeFixed/decodeFixed round-trip to within 0.001 for 0 <= v < 2**20."""
    assert abs(m.decodeFixed(m.encodeFixed(value)) - value) <= 0.001 + 1e-9


@SETTINGS
@given(st.one_of(st.text(max_size=16), json_values))
def test_fixed_point_decoder_total(text: Any) -> None:
    """decodeFixed and decodePair raise only ProtocolError on any input."""
    for fn in (m.decodeFixed, lambda t: m.decodePair(t, "power")):
        try:
            fn(text)
        except m.ProtocolError:
            pass


# -- the plug server in memory -------------------------------------------------------------------

PLUG_REQUEST = sim.upgradeRequest("server2.vesync.com", 17273)


def _login(ident: str) -> bytes:
    return json.dumps({"id": ident, "firmVersion": "1.89", "relay": "open"}).encode()


step = st.one_of(
    st.tuples(st.just("frame"), frame_payloads, st.booleans()),
    st.tuples(st.just("aes"), frame_payloads, st.just(True)),
    st.tuples(st.just("valid"), st.sampled_from(VALID).map(lambda v: json.dumps(v).encode()), st.booleans()),
    st.tuples(st.just("login"), st.sampled_from(["pa", "pb"]).map(_login), st.booleans()),
    st.tuples(st.just("raw"), st.binary(min_size=1, max_size=40), st.just(False)),
    st.tuples(st.just("opcode"), st.binary(max_size=20), st.integers(0, 15)),
    st.tuples(st.just("tick"), st.just(b""), st.sampled_from([0.1, 1.0, 11.0, 31.0, 61.0])),
    st.tuples(st.just("stall"), st.just(b""), st.booleans()),
    st.tuples(st.just("command"), st.just(b""), st.sampled_from(["pa", "pb"])),
)


class _Conn:
    def __init__(self, factory: ws.PlugServerFactory, n: int) -> None:
        addr = IPv4Address("TCP", "192.0.2.7", 50000 + n)
        self.proto = factory.buildProtocol(addr)
        self.transport = StringTransport(peerAddress=addr, hostAddress=IPv4Address("TCP", "10.0.0.2", 17273))
        self.proto.makeConnection(self.transport)
        self.lost = False

    def closeIfDropped(self) -> None:
        """StringTransport never calls connectionLost: do it when the server dropped the connection."""
        if self.transport.disconnecting and not self.lost:
            self.lost = True
            self.proto.connectionLost(Failure(ConnectionLost("dropped")))


def _checkHub(hub: Hub, conns: list[_Conn]) -> None:
    """A logged-in plug is online or its connection is closed; sessions and online flags agree."""
    for plug in hub.plugs():
        assert plug.online == hub.isOnline(plug.id), plug
    for session in hub.sessions():
        assert not session.closed
    for c in conns:
        session = c.proto.session
        if c.lost:
            assert session is None
            assert all(s.connection is not c.proto._link for s in hub.sessions())
        elif session is not None and not session.closed:
            assert hub.session(session.plug.id) is session
            assert hub.isOnline(session.plug.id)


@SERVER_SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1), step), max_size=25))
def test_server_survives_any_frame_sequence(steps: list[tuple[int, tuple[str, bytes, Any]]]) -> None:
    """After a valid handshake, no frame sequence lets an exception escape or leaves the hub inconsistent."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = Hub(clock)
    factory = ws.PlugServerFactory(hub, reactor=clock)
    conns = [_Conn(factory, 0), _Conn(factory, 1)]
    for c in conns:
        c.proto.dataReceived(PLUG_REQUEST)
        assert c.transport.value().startswith(b"HTTP/1.1 101")
    results: list[Any] = []
    for which, (kind, payload, arg) in steps:
        c = conns[which]
        if kind == "tick":
            clock.advance(arg)
        elif kind == "stall":
            if c.transport.producer is not None:
                (c.transport.producer.pauseProducing if arg else c.transport.producer.resumeProducing)()
        elif kind == "command":
            hub.refresh(arg).addBoth(results.append) if any(p.id == arg for p in hub.plugs()) else None
        elif not c.lost:
            if kind == "aes":
                data = sim.maskedFrame(m.aesEncrypt(payload), True)
            elif kind == "raw":
                data = payload
            elif kind == "opcode":
                data = sim.maskedFrame(payload, False, opcode=arg)
            else:
                data = sim.maskedFrame(payload, bool(arg))
            c.proto.dataReceived(data)
        for cc in conns:
            cc.closeIfDropped()
        _checkHub(hub, conns)
    clock.advance(3600)
    for c in conns:
        c.closeIfDropped()
    _checkHub(hub, conns)
    assert hub.stats["internal_errors"] == 0
    assert hub.stats["rejected_internal_error"] == 0
    for r in results:
        assert isinstance(r, h.PlugState) or (isinstance(r, Failure) and r.check(h.CommandError))
