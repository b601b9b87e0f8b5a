"""
Load generator: many simulated plugs in one process, driven by JSON lines on stdin.

A lean asyncio client (no WebSocket library): it sends the exact upgrade request of a real plug
(L{vesyncd.sim.plug.upgradeRequest}), the login object of L{vesyncd.sim.plug.SimPlug}, and masked frames
built once per message kind, so that one process on one core can hold many thousands of plugs
and still measure the server rather than itself.  The Twisted client of C{vesyncd-sim} costs
several times more CPU per message; it stays the behavioural reference, this is the load.

Run by L{bench.plugs} (several processes pinned to CPU 1), one command per stdin line, one JSON
answer per command on stdout::

    {"cmd": "connect", "timeout": 30}      connect every plug at once, wait for every /loginReply
    {"cmd": "connect", "limit": 500}       the same for the first LIMIT plugs only
    {"cmd": "drop"}                        abort every connection (as a plug losing Wi-Fi does)
    {"cmd": "ka", "rate": 500, "seconds": 10}   /ka at RATE msgs/s round-robin; /kr latencies
    {"cmd": "cadence", "seconds": 30, "ka": 180, "report": 3}   the real cadence (see below)
    {"cmd": "flood", "seconds": 5, "window": 4} keep WINDOW /ka in flight per plug; count /kr
    {"cmd": "churn", "seconds": 60, "rate": 20}  drop and reconnect RATE plugs per second
    {"cmd": "quit"}

Every command is bounded in time; the process exits on C{quit}, end of input, or after
C{--lifetime} seconds whatever happens.  Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import os
import random
import resource
import socket
import struct
import sys
import time
from typing import Any

from vesyncd.sim.plug import WS_ACCEPT, SimPlug, plugId, upgradeRequest

MASK = b"\x5a\x3c\x96\x0f"
LINGER_RESET = struct.pack("ii", 1, 0)


def frame(payload: bytes, mask: bytes = MASK) -> bytes:
    """A final masked text frame (what a firmware 1.x plug sends)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, 0x80 | n)
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return header + mask + masked


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


KA_FRAMES = [frame(_dump({"uri": "/ka", "rssi": r})) for r in range(-50, -39)]
KR_FRAME = frame(_dump({"uri": "/kr"}))
REPORT_FRAME = frame(_dump({"uri": "/report", "e": "3c", "t": "3"}))


class _Clock:
    def seconds(self) -> float:
        return time.monotonic()


def percentiles(samples: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max (milliseconds) of latencies in seconds."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000  # noqa: E731
    return {"n": len(s), "p50_ms": round(pick(0.50), 3), "p90_ms": round(pick(0.90), 3),
            "p99_ms": round(pick(0.99), 3), "max_ms": round(s[-1] * 1000, 3)}


class Plug(asyncio.Protocol):
    """One plug connection; answers the server as L{vesyncd.sim.plug.SimPlug} does."""

    __slots__ = ("gen", "index", "transport", "buf", "open", "loggedIn", "pending", "relay", "started", "kaOnKr")

    def __init__(self, gen: "Generator", index: int) -> None:
        self.gen = gen
        self.index = index
        self.transport: Any = None
        self.buf = b""
        self.open = False
        self.loggedIn = False
        self.pending: collections.deque[float] = collections.deque()
        self.relay = gen.relays[index]
        self.started = time.monotonic()
        self.kaOnKr = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Dropping a plug resets its connection (no FIN, no TIME_WAIT left on the client side
            # to slow the next storm's port search), whatever the event loop's abort does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        transport.write(self.gen.upgrade)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head, buf = buf[:end], buf[end + 4:]
            if not head.startswith(b"HTTP/1.1 101") or WS_ACCEPT not in head:
                self.gen.failures += 1
                self.transport.abort()
                return
            self.open = True
            self.transport.write(self.gen.loginFrames[self.index])
        pos, n = 0, len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                self.transport.abort()
                return
            if n < start + length:
                break
            payload = buf[start:start + length]
            pos = start + length
            self._message(payload)
        self.buf = buf[pos:]

    def _message(self, payload: bytes) -> None:
        gen = self.gen
        if b'"/kr"' in payload:
            now = time.monotonic()
            gen.krCount += 1
            if self.pending:
                gen.latencies.append(now - self.pending.popleft())
            if self.kaOnKr and gen.flooding:
                self.pending.append(now)
                self.transport.write(KA_FRAMES[self.index % 11])
        elif b'"/loginReply"' in payload:
            if not self.loggedIn:
                self.loggedIn = True
                gen.loggedIn(self)
        elif b'"/ka"' in payload:
            self.transport.write(KR_FRAME)
        elif b'"/relay"' in payload:
            self.relay = b'"open"' in payload
            gen.relays[self.index] = self.relay
            gen.relayCount += 1
            self.transport.write(gen.runtime[self.relay])
        elif b'"/getRuntime"' in payload:
            self.transport.write(gen.runtime[self.relay])

    def connection_lost(self, exc: Any) -> None:
        self.gen.lost(self)

    def sendKa(self) -> None:
        if self.transport is not None and self.loggedIn:
            self.pending.append(time.monotonic())
            self.transport.write(KA_FRAMES[self.index % 11])


class Generator:
    """N plugs against one server, from one source address."""

    def __init__(self, host: str, port: int, count: int, start: int, seed: str, source: str | None) -> None:
        self.host, self.port, self.source = host, port, source
        self.count = count
        self.loop = asyncio.get_running_loop()
        self.upgrade = upgradeRequest(host, port)
        clock = _Clock()
        self.relays = [bool((start + i) % 2 == 0) for i in range(count)]
        self.ids = [plugId(seed, start + i) for i in range(count)]
        self.loginFrames = [frame(_dump(SimPlug(clock, self.ids[i], relay=self.relays[i]).login()))
                            for i in range(count)]
        sim = SimPlug(clock, "x")
        self.runtime = {}
        for relay in (True, False):
            sim.relay = relay
            self.runtime[relay] = frame(_dump(sim.runtimeInfo()))
        self.plugs: list[Plug | None] = [None] * count
        self.latencies: list[float] = []
        self.loginTimes: list[float] = []
        self.failures = 0
        self.lostAfterLogin = 0
        self.krCount = 0
        self.relayCount = 0
        self.flooding = False
        self.online = 0
        self._allIn: asyncio.Future | None = None
        self._want = count
        self._closing = False

    # -- connections -------------------------------------------------------------------------

    def loggedIn(self, plug: Plug) -> None:
        self.online += 1
        self.loginTimes.append(time.monotonic() - plug.started)
        if self._allIn is not None and self.online >= self._want and not self._allIn.done():
            self._allIn.set_result(None)

    def lost(self, plug: Plug) -> None:
        if plug.loggedIn:
            self.online -= 1
            if not self._closing:
                self.lostAfterLogin += 1
        if self.plugs[plug.index] is plug:
            self.plugs[plug.index] = None
            if not self._closing and not plug.loggedIn:
                self.failures += 1
                self.loop.call_later(0.05, self._connectOne, plug.index)
        plug.transport = None

    def _connectOne(self, i: int) -> None:
        if self._closing or self.plugs[i] is not None:
            return
        plug = Plug(self, i)
        self.plugs[i] = plug
        kw = {"local_addr": (self.source, 0)} if self.source else {}
        task = self.loop.create_task(self.loop.create_connection(lambda: plug, self.host, self.port, **kw))
        task.add_done_callback(lambda t, p=plug: self._connected(t, p))

    def _connected(self, task: asyncio.Task, plug: Plug) -> None:
        if task.cancelled() or task.exception() is not None:
            self.failures += 1
            if self.plugs[plug.index] is plug:
                self.plugs[plug.index] = None
                if not self._closing:
                    self.loop.call_later(0.05, self._connectOne, plug.index)

    async def connect(self, timeout: float, limit: int | None = None) -> dict[str, Any]:
        """Connect every plug (or the first C{limit}) at once; retry failed attempts; wait until
        all of them are logged in."""
        self._closing = False
        self.loginTimes = []
        failures0 = self.failures
        want = self.count if limit is None else min(self.count, limit)
        self._want = want
        t0 = time.monotonic()
        self._allIn = self.loop.create_future()
        for i in range(want):
            self._connectOne(i)
        if self.online >= want:
            self._allIn.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._allIn), timeout)
        except asyncio.TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        return {"online": self.online, "count": want, "seconds": round(elapsed, 4),
                "failures": self.failures - failures0, "login": percentiles(self.loginTimes),
                "t0": t0, "t_end": time.monotonic()}

    async def drop(self) -> dict[str, Any]:
        self._closing = True
        for plug in self.plugs:
            if plug is not None and plug.transport is not None:
                plug.transport.abort()
        await asyncio.sleep(0.2)
        self.plugs = [None] * self.count
        return {"online": self.online}

    # -- traffic -----------------------------------------------------------------------------

    def _live(self, limit: int | None = None) -> list[Plug]:
        live = [p for p in self.plugs if p is not None and p.loggedIn and p.transport is not None]
        return live[:limit] if limit is not None else live

    async def ka(self, rate: float, seconds: float, limit: int | None = None) -> dict[str, Any]:
        """/ka at C{rate} per second, round-robin over the plugs; latency of each /kr."""
        self.latencies = []
        live = self._live(limit)
        kr0, lost0 = self.krCount, self.lostAfterLogin
        sent, t0, k = 0, time.monotonic(), 0
        while live:
            now = time.monotonic()
            if now - t0 >= seconds:
                break
            due = int((now - t0) * rate) - sent
            for _ in range(due):
                live[k % len(live)].sendKa()
                k += 1
            sent += max(due, 0)
            await asyncio.sleep(0.0005)
        await asyncio.sleep(0.5)
        unanswered = sum(len(p.pending) for p in live)
        return {"sent": sent, "answered": self.krCount - kr0, "unanswered": unanswered,
                "lost": self.lostAfterLogin - lost0, "latency": percentiles(self.latencies),
                "samples": self.latencies[:: max(1, len(self.latencies) // 20000)]}

    async def cadence(self, seconds: float, kaEvery: float, reportEvery: float,
                      limit: int | None = None) -> dict[str, Any]:
        """Every plug sends /ka every C{kaEvery} s at a random phase and /report every
        C{reportEvery} s (the vendor's /report follows each /kr by 3 s; C{reportEvery} 0 does that)."""
        self.latencies = []
        live = self._live(limit)
        kr0, lost0 = self.krCount, self.lostAfterLogin
        t0 = time.monotonic()
        events: list[tuple[float, int, int]] = []
        for i, p in enumerate(live):
            phase = random.uniform(0, kaEvery)
            t = phase
            while t < seconds:
                events.append((t, 0, i))
                if reportEvery <= 0 and t + 3.0 < seconds:
                    events.append((t + 3.0, 1, i))
                t += kaEvery * random.uniform(0.97, 1.03)
            if reportEvery > 0:
                t = random.uniform(0, reportEvery)
                while t < seconds:
                    events.append((t, 1, i))
                    t += reportEvery
        events.sort()
        sentKa = sentReport = 0
        j = 0
        while j < len(events):
            now = time.monotonic() - t0
            if now >= seconds:
                break
            while j < len(events) and events[j][0] <= now:
                _t, kind, i = events[j]
                p = live[i]
                if p.transport is not None:
                    if kind == 0:
                        p.sendKa()
                        sentKa += 1
                    else:
                        p.transport.write(REPORT_FRAME)
                        sentReport += 1
                j += 1
            await asyncio.sleep(0.002)
        remaining = seconds - (time.monotonic() - t0)
        if remaining > 0:
            await asyncio.sleep(remaining)
        await asyncio.sleep(0.5)
        return {"sent_ka": sentKa, "sent_report": sentReport, "answered": self.krCount - kr0,
                "unanswered": sum(len(p.pending) for p in live), "lost": self.lostAfterLogin - lost0,
                "online": self.online, "latency": percentiles(self.latencies)}

    async def flood(self, seconds: float, window: int, limit: int | None = None) -> dict[str, Any]:
        """Keep C{window} /ka in flight on every plug for C{seconds}; count the /kr."""
        live = self._live(limit)
        self.latencies = []
        self.flooding = True
        for p in live:
            p.kaOnKr = True
            for _ in range(window):
                p.sendKa()
        async def topUp(until: float) -> None:
            # Frames a rate-limited server dropped are never answered: forget them and refill.
            while time.monotonic() < until:
                await asyncio.sleep(0.1)
                stale = time.monotonic() - 0.5
                for p in live:
                    while p.pending and p.pending[0] < stale:
                        p.pending.popleft()
                    for _ in range(window - len(p.pending)):
                        p.sendKa()

        await topUp(time.monotonic() + 1.0)  # ramp up
        kr0, t0 = self.krCount, time.monotonic()
        await topUp(t0 + seconds)
        kr1, t1 = self.krCount, time.monotonic()
        self.flooding = False
        for p in live:
            p.kaOnKr = False
        await asyncio.sleep(1.0)
        for p in live:
            p.pending.clear()
        return {"replies": kr1 - kr0, "seconds": round(t1 - t0, 3), "rate": round((kr1 - kr0) / (t1 - t0), 1),
                "lost": self.lostAfterLogin, "online": self.online}

    async def churn(self, seconds: float, rate: float) -> dict[str, Any]:
        """Drop C{rate} random logged-in plugs per second; each reconnects at once."""
        t0, dropped = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            n = int((time.monotonic() - t0) * rate) - dropped  # due so far (rate may be < 10/s)
            for p in random.sample(self._live(), max(0, min(n, self.online))):
                self.plugs[p.index] = None
                p.transport.abort()
                dropped += 1
                self.loop.call_later(0.01, self._connectOne, p.index)
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 10
        while self.online < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"dropped": dropped, "online": self.online}


async def serve(args: argparse.Namespace) -> None:
    gen = Generator(args.host, args.port, args.count, args.start, args.seed, args.source)
    reader = asyncio.StreamReader()
    await gen.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd.pop("cmd")
        if name == "quit":
            break
        t = time.monotonic()
        if name == "connect":
            result = await gen.connect(cmd.get("timeout", 30.0), cmd.get("limit"))
        elif name == "drop":
            result = await gen.drop()
        elif name == "ka":
            result = await gen.ka(cmd["rate"], cmd["seconds"], cmd.get("limit"))
        elif name == "cadence":
            result = await gen.cadence(cmd["seconds"], cmd.get("ka", 180.0), cmd.get("report", 0.0), cmd.get("limit"))
        elif name == "flood":
            result = await gen.flood(cmd["seconds"], cmd.get("window", 4), cmd.get("limit"))
        elif name == "churn":
            result = await gen.churn(cmd["seconds"], cmd["rate"])
        elif name == "status":
            result = {"online": gen.online, "relays": gen.relayCount, "failures": gen.failures}
        else:
            result = {"error": f"unknown command {name}"}
        result["cmd"] = name
        result["took"] = round(time.monotonic() - t, 4)
        out.write(json.dumps(result) + "\n")
        out.flush()
    await gen.drop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="bench load generator (driven by JSON lines on stdin)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed", default="bench")
    p.add_argument("--source", default=None, help="loopback source address to bind (127.0.0.N)")
    p.add_argument("--lifetime", type=float, default=1800.0, help="exit after this many seconds regardless")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                   help="event loop: uvloop (libuv: less client CPU per connection and message) when installed")
    args = p.parse_args(argv)
    for addr in (args.host, args.source):
        if addr is not None and not ipaddress.ip_address(addr).is_loopback:
            print("loadgen: only loopback addresses are allowed", file=sys.stderr)
            return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.count + 100 > hard:
        print(f"loadgen: {args.count} plugs need more than the {hard} file descriptors allowed", file=sys.stderr)
        return 2

    async def bounded() -> None:
        try:
            await asyncio.wait_for(serve(args), args.lifetime)
        except asyncio.TimeoutError:
            pass

    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("loadgen: uvloop is not installed (pip install -e .[bench]); using asyncio's loop",
                  file=sys.stderr)
        else:
            uvloop.run(bounded())
            return 0
    asyncio.run(bounded())
    return 0


if __name__ == "__main__":
    sys.exit(main())
