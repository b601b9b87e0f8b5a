"""
One simulated Voltson plug: its behaviour (L{SimPlug}) and its side of the WebSocket (L{SimPlugProtocol}).

Each simulated plug behaves like an ESW01 on firmware 1.89 (plain JSON text frames) or 2.123
(AES binary frames): it sends the exact upgrade request of a real plug, logs in with a stable
generated id, sends C{/ka} with an RSSI about every 180 s, a C{/report} 3 s after each C{/kr}
with watt-seconds matching its load, answers C{/relay} and C{/getRuntime} with C{/runtimeInfo}
in the vendor's fixed-point encoding, answers a server C{/ka} with a bare C{/kr}, sends
C{/state} on a button press, and reconnects with exponential backoff and jitter (resolving the
server's name again each time) when the server goes away (L{vesyncd.sim.runner}).  C{speed}
scales every timer.

The client side of WebSocket is written here rather than taken from Autobahn on purpose: the
simulator must put on the wire exactly the bytes a plug sends (a fixed key, the C{deviceVersion:5}
header, no Origin or User-Agent) and stay cheap at thousands of plugs in one process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import struct
import uuid
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from vesyncd.plugs import codec as m

log = Logger()

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = base64.b64encode(hashlib.sha1(WS_KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
KA_INTERVAL = 180.0
REPORT_DELAY = 3.0
PROFILES = {
    "1.89": {"firmVersion": "1.89", "firmVersionCode": 89, "deviceVersion": "1.5", "deviceVersionCode": 5},
    "2.123": {"firmVersion": "2.123", "firmVersionCode": 123, "deviceVersion": "1.5", "deviceVersionCode": 5},
}
MAX_INBOUND = 64 * 1024


def plugId(seed: str, index: int) -> str:
    """A stable UUID for simulated plug C{index} of a simulator seeded with C{seed}."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vesyncd-sim:{seed}:{index}"))


def upgradeRequest(host: str, port: int, path: str = "/gnws") -> bytes:
    """The opening handshake exactly as a plug sends it (protocol.md §3.1)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "deviceVersion:5\r\n"
        "\r\n"
    ).encode("ascii")


def maskedFrame(payload: bytes, binary: bool, mask: bytes | None = None, opcode: int | None = None) -> bytes:
    """One final, masked client frame (text or binary) carrying C{payload}."""
    op = opcode if opcode is not None else (2 if binary else 1)
    mask = mask if mask is not None else os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | op, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class SimPlug:
    """The behaviour of one simulated plug, independent of any connection."""

    def __init__(self, clock: Any, ident: str, *, firmware: str = "1.89", load_w: float = 20.0,
                 voltage_v: float = 120.4, relay: bool = True, speed: float = 1.0, rssi: int = -45,
                 account: str = "0", onEvent: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.clock = clock
        self.id = ident
        self.firmware = firmware
        self.load_w = load_w
        self.voltage_v = voltage_v
        self.relay = relay
        self.speed = speed
        self.rssi = rssi
        self.account = account
        self.onEvent = onEvent
        self.protocol: SimPlugProtocol | None = None
        self.loggedIn = False
        self.lastReport = clock.seconds()
        self.commands: list[str] = []
        self.sent: list[dict[str, Any]] = []
        self._timers: list[IDelayedCall] = []
        self._krDeadline: IDelayedCall | None = None

    @property
    def encrypted(self) -> bool:
        """Firmware 2.x speaks AES binary frames."""
        return not self.firmware.startswith("1.")

    def _emit(self, kind: str, **data: Any) -> None:
        if self.onEvent is not None:
            self.onEvent({"event": kind, "plug": self.id, **data})

    def login(self) -> dict[str, Any]:
        """The login object, fields in the order every capture shows."""
        profile = PROFILES.get(self.firmware, {"firmVersion": self.firmware, "firmVersionCode": 0,
                                               "deviceVersion": "1.5", "deviceVersionCode": 5})
        return {
            "account": self.account, "id": self.id, "deviceName": "vesync_wifi_outlet",
            "deviceVersion": profile["deviceVersion"], "deviceVersionCode": profile["deviceVersionCode"],
            "type": "wifi-switch", "apptype": "switch-measure", "firmName": "cosytek_firm_a",
            "firmVersion": profile["firmVersion"], "firmVersionCode": profile["firmVersionCode"],
            "key": 0, "relay": m.relayWord(self.relay),
        }

    def send(self, obj: dict[str, Any]) -> None:
        """Send one message if connected."""
        if self.protocol is not None:
            self.sent.append(obj) if len(self.sent) < 1000 else None
            self.protocol.sendJSON(obj)

    def later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Run C{fn} after C{delay} simulated seconds, unless the connection ends first."""
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(self.clock.callLater(delay / self.speed, fn, *args))

    def connected(self, protocol: "SimPlugProtocol") -> None:
        """The upgrade succeeded: log in."""
        self.protocol = protocol
        self.send(self.login())

    def disconnected(self) -> None:
        """The connection is gone: stop every timer."""
        self.protocol = None
        self.loggedIn = False
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers = []
        if self._krDeadline is not None and self._krDeadline.active():
            self._krDeadline.cancel()
        self._krDeadline = None
        self._emit("disconnected")

    def sendKeepalive(self) -> None:
        """Send C{/ka} with this plug's RSSI and schedule the next one (and the wait for C{/kr})."""
        self.send({"uri": "/ka", "rssi": self.rssi + random.randint(-2, 2)})
        # A plug that gets no /kr gives up on the server and reconnects.
        if self._krDeadline is None or not self._krDeadline.active():
            self._krDeadline = self.clock.callLater(2 * KA_INTERVAL / self.speed, self._noReply)
        self.later(KA_INTERVAL * random.uniform(0.97, 1.03), self.sendKeepalive)

    def _noReply(self) -> None:
        self._krDeadline = None
        if self.protocol is not None:
            log.info("sim plug {plug}: no /kr from the server, reconnecting", plug=self.id)
            self.protocol.transport.abortConnection()

    def _sendReport(self) -> None:
        now = self.clock.seconds()
        # Wall seconds, whatever the speed: vesyncd refuses energy claimed for time that did not pass.
        seconds = max(1, int(round(now - self.lastReport)))
        self.lastReport = now
        watts = self.load_w if self.relay else 0.0
        self.send({"uri": "/report", "e": format(int(round(watts * seconds)), "x"), "t": format(seconds, "x")})

    def runtimeInfo(self) -> dict[str, Any]:
        """C{/runtimeInfo} for the current relay state, load and voltage."""
        watts = self.load_w if self.relay else 0.0
        return {"uri": "/runtimeInfo", "relay": m.relayWord(self.relay), "meastate": "idle",
                "power": m.encodePair(watts, watts), "voltage": m.encodePair(self.voltage_v, self.voltage_v),
                "current": "NaN"}

    def received(self, obj: dict[str, Any]) -> None:
        """React to one message from the server as a plug does."""
        uri = obj.get("uri")
        if uri == "/loginReply":
            if not self.loggedIn:
                self.loggedIn = True
                self.lastReport = self.clock.seconds()
                self._emit("online")
                # First /ka a little after login, spread so that thousands of plugs do not align.
                self.later(random.uniform(1.0, KA_INTERVAL), self.sendKeepalive)
        elif uri == "/kr":
            if self._krDeadline is not None and self._krDeadline.active():
                self._krDeadline.cancel()
            self._krDeadline = None
            self.later(REPORT_DELAY, self._sendReport)
        elif uri == "/ka":
            self.send({"uri": "/kr"})
        elif uri == "/relay":
            self.commands.append(str(obj.get("action")))
            action = obj.get("action")
            if action in (m.RELAY_ON, m.RELAY_OFF):
                new = action == m.RELAY_ON
                if new != self.relay:
                    self.relay = new
                    self.lastReport = self.clock.seconds()
                    self._emit("relay", relay="on" if new else "off", cause="server")
            self.send(self.runtimeInfo())
        elif uri == "/getRuntime":
            self.commands.append("getRuntime")
            self.send(self.runtimeInfo())

    def press(self) -> None:
        """A button press: toggle the relay and tell the server with C{/state}."""
        self.relay = not self.relay
        self._emit("relay", relay="on" if self.relay else "off", cause="button")
        self.send({"uri": "/state", "relay": m.relayWord(self.relay)})


class SimPlugProtocol(Protocol):
    """The client side of one plug connection: the upgrade, then masked frames."""

    def __init__(self, plug: SimPlug, host: str, port: int) -> None:
        self.plug = plug
        self.host = host
        self.port = port
        self._buffer = b""
        self._open = False

    def connectionMade(self) -> None:
        """Send the plug's exact upgrade request."""
        self.transport.write(upgradeRequest(self.host, self.port))

    def dataReceived(self, data: bytes) -> None:
        """Check the 101, then parse server frames; a peer that sends too much is cut off."""
        self._buffer += data
        if len(self._buffer) > MAX_INBOUND:
            self.transport.abortConnection()
            return
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 101") or WS_ACCEPT not in head:
                log.warn("sim plug {plug}: upgrade refused: {line!r}", plug=self.plug.id, line=lines[0][:100])
                self.transport.abortConnection()
                return
            self.upgraded()
        while self._open and self._parseFrame():
            pass

    def upgraded(self) -> None:
        """The server answered the upgrade with a valid 101: frames flow from now on."""
        self._open = True
        self.plug.connected(self)

    def _parseFrame(self) -> bool:
        buf = self._buffer
        if len(buf) < 2:
            return False
        first, second = buf[0], buf[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return False
            (length,), offset = struct.unpack("!H", buf[2:4]), 4
        elif length == 127:
            if len(buf) < 10:
                return False
            (length,), offset = struct.unpack("!Q", buf[2:10]), 10
        if second & 0x80:  # servers never mask
            self.transport.abortConnection()
            return False
        if len(buf) < offset + length:
            return False
        payload, self._buffer = buf[offset:offset + length], buf[offset + length:]
        opcode = first & 0x0F
        if opcode == 8:
            self.transport.loseConnection()
            return False
        if opcode == 9:
            self.transport.write(maskedFrame(payload, False, opcode=10))
            return True
        if opcode in (1, 2):
            if opcode == 2:
                try:
                    payload = m.aesDecrypt(payload)
                except m.ProtocolError:
                    return True
            try:
                obj = json.loads(payload)
            except ValueError:
                return True
            if isinstance(obj, dict):
                self.plug.received(obj)
        return True

    def sendJSON(self, obj: dict[str, Any]) -> None:
        """Send one compact JSON message, AES-encrypted on firmware 2.x."""
        payload = json.dumps(obj, separators=(",", ":")).encode()
        if self.plug.encrypted:
            self.transport.write(maskedFrame(m.aesEncrypt(payload), True))
        else:
            self.transport.write(maskedFrame(payload, False))

    def connectionLost(self, reason: Any = None) -> None:
        """Tell the plug its connection is gone."""
        self._open = False
        self.plug.disconnected()
