"""
vesyncd-sim: simulated Voltson plugs, for tests, demos and load.

Each simulated plug behaves like an ESW01 on firmware 1.89 (plain JSON text frames) or 2.123
(AES binary frames): it sends the exact upgrade request of a real plug, logs in with a stable
generated id, sends C{/ka} with an RSSI about every 180 s, a C{/report} 3 s after each C{/kr}
with watt-seconds matching its load, answers C{/relay} and C{/getRuntime} with C{/runtimeInfo}
in the vendor's fixed-point encoding, answers a server C{/ka} with a bare C{/kr}, sends
C{/state} on a button press, and reconnects with exponential backoff and jitter (resolving the
server's name again each time) when the server goes away.  C{--speed} scales every timer.

The client side of WebSocket is written here rather than taken from Autobahn on purpose: the
simulator must put on the wire exactly the bytes a plug sends (a fixed key, the C{deviceVersion:5}
header, no Origin or User-Agent) and stay cheap at thousands of plugs in one process.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import random
import struct
import sys
import uuid
from typing import Any, Callable

from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from vesyncd.plugs import codec as m
from vesyncd.addresses import splitHostPort

log = Logger()

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = base64.b64encode(hashlib.sha1(WS_KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
KA_INTERVAL = 180.0
REPORT_DELAY = 3.0
MAX_BACKOFF = 60.0
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

    def _sendKeepalive(self) -> None:
        self.send({"uri": "/ka", "rssi": self.rssi + random.randint(-2, 2)})
        # A plug that gets no /kr gives up on the server and reconnects.
        if self._krDeadline is None or not self._krDeadline.active():
            self._krDeadline = self.clock.callLater(2 * KA_INTERVAL / self.speed, self._noReply)
        self.later(KA_INTERVAL * random.uniform(0.97, 1.03), self._sendKeepalive)

    def _noReply(self) -> None:
        self._krDeadline = None
        if self.protocol is not None:
            log.info("sim plug {plug}: no /kr from the server, reconnecting", plug=self.id)
            self.protocol.transport.abortConnection()

    def _sendReport(self) -> None:
        now = self.clock.seconds()
        seconds = max(1, int(round((now - self.lastReport) * self.speed)))
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
                self.later(random.uniform(1.0, KA_INTERVAL), self._sendKeepalive)
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
        self.opened: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(upgradeRequest(self.host, self.port))

    def dataReceived(self, data: bytes) -> None:
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
            self._open = True
            self.plug.connected(self)
        while self._open and self._parseFrame():
            pass

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
        self._open = False
        self.plug.disconnected()


class PlugRunner:
    """Keeps one simulated plug connected to its server, reconnecting with backoff and jitter."""

    def __init__(self, reactor: Any, plug: SimPlug, host: str, port: int) -> None:
        self.reactor = reactor
        self.plug = plug
        self.host = host
        self.port = port
        self.attempts = 0
        self.running = False
        self._retry: IDelayedCall | None = None

    def _endpoint(self) -> Any:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            # A name: resolved again on every attempt, as a plug looks up its server again.
            return endpoints.HostnameEndpoint(self.reactor, self.host, self.port, timeout=10)
        if address.version == 6:
            return endpoints.TCP6ClientEndpoint(self.reactor, self.host, self.port, timeout=10)
        return endpoints.TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=10)

    def start(self, delay: float = 0.0) -> None:
        """Start connecting (after C{delay} seconds)."""
        self.running = True
        self._retry = self.reactor.callLater(delay, self._connect)

    def stop(self) -> None:
        """Disconnect and stay disconnected."""
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self.plug.protocol is not None and self.plug.protocol.transport is not None:
            self.plug.protocol.transport.abortConnection()

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        factory = Factory.forProtocol(lambda: _RunnerProtocol(self))
        d = self._endpoint().connect(factory)
        d.addErrback(lambda f: self._lost())

    def _lost(self) -> None:
        if not self.running:
            return
        self.attempts += 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** min(self.attempts, 10)) / max(self.plug.speed, 1.0)
        self._retry = self.reactor.callLater(random.uniform(0.5, 1.0) * delay + 0.05, self._connect)


class _RunnerProtocol(SimPlugProtocol):
    def __init__(self, runner: PlugRunner) -> None:
        super().__init__(runner.plug, runner.host, runner.port)
        self.runner = runner

    def dataReceived(self, data: bytes) -> None:
        wasOpen = self._open
        super().dataReceived(data)
        if self._open and not wasOpen:
            self.runner.attempts = 0

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.runner._lost()


class Simulator:
    """A set of simulated plugs against one server."""

    def __init__(self, reactor: Any, host: str, port: int, count: int = 1, *, firmware: str = "1.89",
                 speed: float = 1.0, load_w: float = 20.0, seed: str = "sim", start: int = 0,
                 onEvent: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.reactor = reactor
        self.runners = []
        for i in range(start, start + count):
            plug = SimPlug(reactor, plugId(seed, i), firmware=firmware, speed=speed, load_w=load_w,
                           relay=bool(i % 2 == 0), onEvent=onEvent)
            self.runners.append(PlugRunner(reactor, plug, host, port))

    @property
    def plugs(self) -> list[SimPlug]:
        """The simulated plugs, in order."""
        return [r.plug for r in self.runners]

    def start(self, spread: float = 0.0) -> None:
        """Connect every plug, spread evenly over C{spread} seconds."""
        n = max(len(self.runners), 1)
        for i, runner in enumerate(self.runners):
            runner.start(spread * i / n)

    def stop(self) -> None:
        """Disconnect every plug."""
        for runner in self.runners:
            runner.stop()

    def find(self, ref: str) -> SimPlug:
        """A plug by index or id prefix."""
        if ref.isdigit() and int(ref) < len(self.runners):
            return self.runners[int(ref)].plug
        for plug in self.plugs:
            if plug.id.startswith(ref):
                return plug
        raise KeyError(ref)


class _StdinCommands(Protocol):
    """Line commands on standard input: C{press PLUG}, C{load PLUG WATTS}, C{status}."""

    def __init__(self, sim: Simulator, out: Callable[[dict[str, Any]], None]) -> None:
        self.sim = sim
        self.out = out
        self._buf = b""

    def dataReceived(self, data: bytes) -> None:
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self._command(line.decode("utf-8", "replace").split())

    def _command(self, words: list[str]) -> None:
        try:
            if words[:1] == ["press"]:
                self.sim.find(words[1]).press()
            elif words[:1] == ["load"]:
                self.sim.find(words[1]).load_w = float(words[2])
            elif words[:1] == ["status"]:
                for p in self.sim.plugs:
                    self.out({"event": "status", "plug": p.id, "online": p.loggedIn,
                              "relay": "on" if p.relay else "off", "load_w": p.load_w})
        except (IndexError, KeyError, ValueError) as e:
            self.out({"event": "error", "error": f"bad command {' '.join(words)!r}: {e}"})


def parseServer(text: str) -> tuple[str, int]:
    """C{HOST:PORT}, C{HOST} (port 17273) or C{[v6]:PORT}; raises ValueError otherwise."""
    return splitHostPort(text, 17273)


def buildParser() -> argparse.ArgumentParser:
    """The command line of C{vesyncd-sim}."""
    p = argparse.ArgumentParser(prog="vesyncd-sim", description="Simulated Etekcity Voltson plugs for vesyncd.")
    p.add_argument("--server", default="127.0.0.1:17273", help="HOST:PORT of the plug server (default %(default)s)")
    p.add_argument("--count", type=int, default=1, help="number of plugs (default %(default)s)")
    p.add_argument("--firmware", choices=sorted(PROFILES), default="1.89",
                   help="firmware profile: 1.89 plain JSON, 2.123 AES frames (default %(default)s)")
    p.add_argument("--speed", type=float, default=1.0, help="scale every timer by this factor (default %(default)s)")
    p.add_argument("--load", type=float, default=20.0, help="load in watts while on (default %(default)s)")
    p.add_argument("--seed", default="sim", help="seed of the stable plug ids (default %(default)s)")
    p.add_argument("--start-index", type=int, default=0, help="index of the first plug (for several processes)")
    p.add_argument("--spread", type=float, default=0.0, help="spread the first connections over S seconds")
    p.add_argument("--press-every", type=float, default=0.0, help="press a random plug's button every S seconds")
    p.add_argument("--events", action="store_true", help="print one JSON line per event; read commands on stdin")
    p.add_argument("--setup-mode", action="store_true",
                   help="behave like a factory-reset plug: wait for provisioning on --listen first")
    p.add_argument("--listen", default="127.0.0.1:41234", help="setup-mode listen HOST:PORT (default %(default)s)")
    p.add_argument("--server-port", type=int, default=17273,
                   help="port used after provisioning (plugs always use 17273; for tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run C{vesyncd-sim} until interrupted."""
    args = buildParser().parse_args(argv)
    if args.count < 1 or args.speed <= 0:
        print("vesyncd-sim: --count must be at least 1 and --speed positive", file=sys.stderr)
        return 2
    from twisted.internet import reactor, stdio
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    def out(obj: dict[str, Any]) -> None:
        if args.events:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    try:
        host, port = parseServer(args.server)
    except ValueError:
        print(f"vesyncd-sim: --server {args.server!r} is not HOST:PORT", file=sys.stderr)
        return 2

    if args.setup_mode:
        from vesyncd.sim.setupmode import runSetupMode

        return runSetupMode(reactor, args, out)

    sim = Simulator(reactor, host, port, args.count, firmware=args.firmware, speed=args.speed,
                    load_w=args.load, seed=args.seed, start=args.start_index, onEvent=out)
    sim.start(args.spread)
    if args.events:
        stdio.StandardIO(_StdinCommands(sim, out))
    if args.press_every > 0:
        task.LoopingCall(lambda: random.choice(sim.plugs).press()).start(args.press_every, now=False)
    log.info("simulating {n} plug(s), firmware {fw}, against {host}:{port}", n=args.count, fw=args.firmware,
             host=host, port=port)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
