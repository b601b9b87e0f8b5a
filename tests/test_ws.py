"""The Autobahn plug server in memory: handshake bytes, login, AES, limits and hostile peers."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.plugs import codec as m
from vesyncd.sim import plug as sim
from vesyncd.plugs import limits
from vesyncd.plugs import server as ws

PLUG_REQUEST = (
    b"GET /gnws HTTP/1.1\r\n"
    b"Host: server2.vesync.com:17273\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"deviceVersion:5\r\n"
    b"\r\n"
)


def makeServer(**kw: Any) -> tuple[Hub, Clock, ws.PlugServerFactory]:
    """A hub and plug server factory on one fake clock."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = Hub(clock)
    return hub, clock, ws.PlugServerFactory(hub, reactor=clock, **kw)


def rawServer(factory: ws.PlugServerFactory) -> tuple[ws.PlugServerProtocol, StringTransport]:
    """A server protocol on a StringTransport, as if a plug had connected from 192.0.2.7."""
    proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 50123))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 50123),
                                hostAddress=IPv4Address("TCP", "10.0.0.2", 17273))
    proto.makeConnection(transport)
    return proto, transport


def frame(payload: bytes, binary: bool = False) -> bytes:
    """A masked client frame, as a plug sends."""
    return sim.maskedFrame(payload, binary, mask=b"\x01\x02\x03\x04")


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload)."""
    out = []
    while data:
        op, n = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if n == 126:
            n, offset = int.from_bytes(data[2:4], "big"), 4
        out.append((op, data[offset:offset + n]))
        data = data[offset + n:]
    return out


def test_handshake_answers_exactly_like_the_cloud() -> None:
    """The plug's exact upgrade gets a minimal 101: lower-case Upgrade, the RFC accept, no Server."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    response = transport.value()
    head = response.split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in head
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"Server:" not in head


def test_login_then_ka_plain() -> None:
    """A 1.x plug logs in with a text frame, gets /loginReply, and /ka gets /kr with the time."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    transport.clear()
    login = json.dumps({"id": "p1", "firmVersion": "1.89", "relay": "open"}).encode()
    proto.dataReceived(frame(login))
    proto.dataReceived(frame(b'{"uri":"/ka","rssi":-39}'))
    frames = serverFrames(transport.value())
    assert [op for op, _ in frames] == [1, 1]
    assert json.loads(frames[0][1])["uri"] == "/loginReply"
    assert json.loads(frames[1][1])["uri"] == "/kr"
    plug = hub.get("p1")
    assert plug.online and plug.address == "192.0.2.7:50123" and plug.rssi_dbm == -39


def test_binary_frames_switch_to_aes_both_ways() -> None:
    """A 2.x plug's AES binary login is decrypted, and every answer goes back encrypted."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    transport.clear()
    proto.dataReceived(frame(m.aesEncrypt(b'{"id":"p2","firmVersion":"2.123","relay":"break"}'), binary=True))
    frames = serverFrames(transport.value())
    assert frames[0][0] == 2
    assert json.loads(m.aesDecrypt(frames[0][1]))["uri"] == "/loginReply"
    assert hub.get("p2").encrypted is True and hub.get("p2").relay is False


def test_undecryptable_login_closes() -> None:
    """Binary frames that are not AES blocks close a connection that has not logged in."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b"\x00" * 7, binary=True))
    assert transport.disconnecting
    assert hub.stats["rejected_bad_login"] == 1


def test_bad_frames_after_login_dropped_then_closed() -> None:
    """Bad frames from a logged-in plug are dropped and counted; too many close the connection."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"p3"}'))
    proto.dataReceived(frame(b"garbage"))
    assert not transport.disconnecting and hub.get("p3").online
    for _ in range(limits.MAX_BAD_FRAMES):
        clock.advance(1)
        proto.dataReceived(frame(b'{"uri":"/ka","rssi":"x"}'))
    assert transport.disconnecting
    assert hub.stats["rejected_bad_frames"] == 1


def test_oversized_handshake_headers_closed() -> None:
    """Opening-handshake headers over 8 KiB close the connection without a 101."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(b"GET /gnws HTTP/1.1\r\nX-Pad: " + b"a" * 9000)
    assert transport.disconnecting
    assert b"101" not in transport.value()
    assert hub.stats["rejected_handshake"] == 1


def test_unfinished_handshake_times_out() -> None:
    """A handshake never finished is closed after the handshake timeout."""
    hub, clock, factory = makeServer(handshakeTimeout=10)
    proto, transport = rawServer(factory)
    proto.dataReceived(b"GET /gnws HTTP/1.1\r\n")
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_no_login_closed_after_timeout() -> None:
    """A connection that never logs in is closed after the login timeout."""
    hub, clock, factory = makeServer(loginTimeout=10)
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    assert hub.stats["rejected_login_timeout"] == 1


def test_frame_over_64k_closes() -> None:
    """A frame over 64 KiB fails the connection."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"p"}'))
    big = b"\x81\xff" + (70000).to_bytes(8, "big") + b"\x01\x02\x03\x04"
    proto.dataReceived(big)
    assert transport.disconnecting


def test_flood_is_rate_limited_then_closed() -> None:
    """A plug flooding frames has the excess dropped, and is closed when it keeps on."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"flood"}'))
    transport.clear()
    burst = frame(b'{"uri":"/ka","rssi":-40}') * int(limits.FRAME_BURST + 20)
    proto.dataReceived(burst)
    answered = len(serverFrames(transport.value()))
    assert answered <= limits.FRAME_BURST
    assert hub.stats["frames_rate_limited"] >= 19
    assert not transport.disconnecting
    proto.dataReceived(frame(b'{"uri":"/ka","rssi":-40}') * limits.MAX_DROPPED)
    assert transport.disconnecting


def test_stalled_reader_dropped() -> None:
    """A plug whose write buffer stays full is dropped after the stall timeout."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"slow"}'))
    transport.producer.pauseProducing()
    clock.advance(limits.WRITE_STALL_TIMEOUT + 1)
    assert transport.disconnecting
    assert hub.stats["rejected_write_stall"] == 1


def test_stalled_reader_bytes_bounded() -> None:
    """While a plug does not read, more than MAX_QUEUED_BYTES of output drops it at once."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"slow2"}'))
    transport.producer.pauseProducing()
    session = proto.session
    for _ in range(limits.MAX_QUEUED_BYTES // 50 + 10):
        session.connection.send(b'{"uri":"/ka","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}')
    assert transport.disconnecting
    assert hub.stats["rejected_write_buffer"] == 1


def test_other_path_accepted() -> None:
    """A path other than /gnws is accepted (and only logged)."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST.replace(b"/gnws", b"/other"))
    assert transport.value().startswith(b"HTTP/1.1 101")


def test_simulated_plug_in_memory_both_firmwares() -> None:
    """The simulator's protocol and the server talk over iosim: login, switch, button press."""
    for firmware in ("1.89", "2.123"):
        hub, clock, factory = makeServer()
        plug = sim.SimPlug(clock, f"sim-{firmware}", firmware=firmware, relay=True, load_w=50.0)
        client = sim.SimPlugProtocol(plug, "server2.vesync.com", 17273)
        server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        sTransport = iosim.FakeTransport(server, isServer=True)
        cTransport = iosim.FakeTransport(client, isServer=False)
        pump = iosim.connect(server, sTransport, client, cTransport, greet=True)
        assert hub.get(plug.id).online and hub.get(plug.id).encrypted == (firmware != "1.89")
        out: list[Any] = []
        hub.switch(plug.id, False).addBoth(out.append)
        pump.flush()
        assert plug.relay is False and out[0].relay is False
        hub.refresh(plug.id).addBoth(out.append)
        pump.flush()
        assert out[1].voltage_v == sim.SimPlug(clock, "x").voltage_v or abs(out[1].voltage_v - 120.4) < 0.01
        plug.press()
        pump.flush()
        assert hub.get(plug.id).relay is True and hub.get(plug.id).relay_cause == h.CAUSE_BUTTON
        client.transport.loseConnection()
        pump.flush()
        assert not hub.get(plug.id).online


def test_unauthenticated_connections_are_bounded() -> None:
    """Beyond maxUnauthenticated connections without a login, new ones are closed at once; a login
    or a close frees a place."""
    hub, clock, factory = makeServer(maxUnauthenticated=2)
    (p1, t1), (p2, t2), (p3, t3) = rawServer(factory), rawServer(factory), rawServer(factory)
    assert not t1.disconnecting and not t2.disconnecting and t3.disconnecting
    assert hub.stats["rejected_too_many_unauthenticated"] == 1
    p1.dataReceived(PLUG_REQUEST)
    p1.dataReceived(frame(b'{"id":"first"}'))
    p4, t4 = rawServer(factory)
    assert not t4.disconnecting
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    p2.connectionLost(Failure(ConnectionDone()))
    p5, t5 = rawServer(factory)
    assert not t5.disconnecting
    p6, t6 = rawServer(factory)
    assert t6.disconnecting
    assert factory.unauthenticated == 2


def test_server_frames_short_and_16_bit_lengths() -> None:
    """Messages to a plug are single unmasked frames with 7-bit or 16-bit lengths, text or AES binary;
    anything of 64 KiB or more is refused rather than sent."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"p"}'))
    transport.clear()
    link = proto.session.connection
    for size in (10, 125, 126, 300, 65535, 70000):
        link.send(b"x" * size)
    frames = serverFrames(transport.value())
    assert [(op, len(p)) for op, p in frames] == [(1, 10), (1, 125), (1, 126), (1, 300), (1, 65535)]
    proto.encrypted = True
    transport.clear()
    link.send(b'{"uri":"/ka"}' * 20)
    ((op, body),) = serverFrames(transport.value())
    assert op == 2 and m.aesDecrypt(body) == b'{"uri":"/ka"}' * 20


def test_unmask_matches_rfc_xor_at_any_offset() -> None:
    """The server's own unmasking is RFC 6455's byte-by-byte XOR with the mask, wherever in the
    payload a piece starts (pieces of one frame arrive in separate reads)."""
    mask = b"\x9a\x01\xff\x37"
    payload = bytes(range(256)) * 3
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert ws.unmask(masked, mask, 0) == payload
    assert ws.unmask(b"", mask, 5) == b""
    for start in range(0, 9):
        for end in (start, start + 1, start + 5, 700):
            assert ws.unmask(masked[start:end], mask, start) == payload[start:end]


def test_frames_split_across_reads_and_fragmented_messages_unmasked() -> None:
    """A login fed one byte per read, a /ka split mid-payload with a ping and a fragmented message
    between, all with distinct masks: every piece is unmasked at its own offset."""
    hub, clock, factory = makeServer()
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    transport.clear()
    login = sim.maskedFrame(b'{"id":"p9","firmVersion":"1.89","relay":"open"}', False, mask=b"\xa1\xb2\xc3\xd4")
    for i in range(len(login)):
        proto.dataReceived(login[i:i + 1])
    assert hub.get("p9").online
    ka = sim.maskedFrame(b'{"uri":"/ka","rssi":-47}', False, mask=b"\x10\x20\x30\x41")
    proto.dataReceived(ka[:9])
    proto.dataReceived(ka[9:13] + ka[13:])
    first = sim.maskedFrame(b'{"uri":"/ka",', False, mask=b"\x05\x06\x07\x08")
    first = bytes((first[0] & 0x7F,)) + first[1:]  # FIN cleared: more frames follow
    ping = sim.maskedFrame(b"hi", False, mask=b"\x55\x66\x77\x88", opcode=9)
    rest = sim.maskedFrame(b'"rssi":-48}', False, mask=b"\x0f\x1e\x2d\x3c", opcode=0)
    proto.dataReceived(first + ping[:3])
    proto.dataReceived(ping[3:] + rest)
    frames = serverFrames(transport.value())
    assert (10, b"hi") in frames  # the pong echoes the unmasked ping payload
    replies = [json.loads(p)["uri"] for op, p in frames if op == 1]
    assert replies == ["/loginReply", "/kr", "/kr"]
    assert hub.get("p9").rssi_dbm == -48 and hub.stats["frames_rejected"] == 0


def _masked(payload: bytes, first: int = 0x81, lengthBytes: bytes | None = None, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """A masked frame with any first byte and, optionally, a forced length encoding."""
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if lengthBytes is None:
        n = len(payload)
        lengthBytes = bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + n.to_bytes(2, "big") if n < 65536 \
            else bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return bytes((first,)) + lengthBytes + mask + masked


_KA = b'{"uri":"/ka","rssi":-41}'
_LONG_KA = b'{"uri":"/ka","rssi":-42,"note":"' + b"n" * 300 + b'"}'
#: Reads after the login, each list one connection: common frames and every kind the fast way must leave alone.
_SCENARIOS: list[list[bytes]] = [
    [_masked(_KA)],
    [_masked(_LONG_KA)],
    [_masked(m.aesEncrypt(_KA), first=0x82)],
    [_masked(b'{"uri":"/ka","x":"\xff"}')],  # not UTF-8: Autobahn fails the connection
    [_masked(b'{"uri":"/ka","x":"\xed\xa0\x80"}')],  # an encoded surrogate is not UTF-8 either
    [_masked(_KA, first=0xC1)],  # a reserved bit
    [_masked(_KA, first=0x83)],  # a reserved opcode
    [bytes((0x81, len(_KA))) + _KA],  # not masked
    [_masked(_KA, lengthBytes=bytes((0x80 | 126, 0, len(_KA))))],  # length not minimally encoded
    [_masked(_KA) + _masked(_LONG_KA)],  # two frames in one read
    [_masked(_KA)[:5], _masked(_KA)[5:]],  # one frame in two reads
    [_masked(b"")],
    [_masked(b"not json")],
    [_masked(b"ping", first=0x89), _masked(_KA)],
    [_masked(b'{"uri":"/ka",', first=0x01), _masked(b'"rssi":-43}', first=0x80)],  # fragmented
    [_masked(b"x" * 70000)],  # over the frame limit
    [_masked(_KA, first=0x88)],  # a close frame with a nonsense body
]


def _scenario(fast: bool, reads: list[bytes]) -> dict[str, Any]:
    hub, clock, factory = makeServer()
    factory.protocol = type("Proto", (ws.PlugServerProtocol,), {"wholeFrames": fast})
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"pf","firmVersion":"1.89","relay":"open"}'))
    for data in reads:
        clock.advance(1)
        proto.dataReceived(data)
    plug = hub.get("pf")
    return {"written": transport.value(), "disconnecting": transport.disconnecting, "stats": dict(hub.stats),
            "traffic": dict(vars(proto.trafficStats)), "rssi": plug.rssi_dbm, "online": plug.online,
            "encrypted": proto.encrypted}


def test_whole_frame_reads_end_exactly_as_through_autobahn() -> None:
    """With or without the fast way for reads of one whole frame, every scenario ends the same:
    the bytes written, the connection dropped or not, the counters, Autobahn's traffic figures, the plug."""
    import pytest

    for reads in _SCENARIOS:
        fast, slow = _scenario(True, reads), _scenario(False, reads)
        assert fast == slow, reads[0][:40]
    assert _scenario(True, _SCENARIOS[0])["rssi"] == -41
    assert _scenario(True, _SCENARIOS[3])["disconnecting"] is True
    with pytest.raises(AssertionError):  # the comparison does see a difference in what is delivered
        assert _scenario(True, [_masked(_KA)]) == _scenario(False, [_masked(b'{"uri":"/ka","rssi":-40}')])


def test_whole_frame_reads_take_the_fast_way() -> None:
    """A plain /ka read never reaches Autobahn's frame parser (its frame callbacks are not called)."""
    hub, clock, factory = makeServer()
    calls: list[str] = []

    class Watched(ws.PlugServerProtocol):
        def onFrameBegin(self) -> None:
            calls.append("frame")
            super().onFrameBegin()

    factory.protocol = Watched
    proto, transport = rawServer(factory)
    proto.dataReceived(PLUG_REQUEST)
    proto.dataReceived(frame(b'{"id":"pw"}'))
    calls.clear()
    proto.dataReceived(_masked(_KA))
    proto.dataReceived(_masked(_LONG_KA))
    assert calls == [] and hub.get("pw").rssi_dbm == -42
    proto.dataReceived(_masked(_KA) + _masked(_KA))
    assert calls == ["frame", "frame"]
