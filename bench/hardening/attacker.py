"""
A hostile peer for the plug server, bounded in count and time, on loopback only.

C{python -m bench.hardening.attacker --port P --slow 1000 --oversize 1000 --garbage 3000
--flood 0 --seconds 40 --out FILE} runs the attacks concurrently and writes FILE with what
happened to each kind: opened, refused (connect failed), closed by the server, how long the
server took to close, and whether any got a C{101}.

 - slow: a plug's upgrade request dripped one byte per second (the server must close it at its
   handshake deadline, 10 s);
 - oversize: an upgrade request whose headers exceed 8 KiB (closed without a 101);
 - garbage: random bytes and an immediate close;
 - flood: a logged-in plug sending C{/ka} frames as fast as it can (rate-limited, then closed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from typing import Any

from bench.hardening.common import LOOPBACK, percentile, raiseFileLimit
from vesyncd.sim import plug as sim


def _new() -> dict[str, Any]:
    return {"opened": 0, "refused": 0, "closed_by_server": 0, "got_101": 0, "still_open_at_end": 0,
            "close_seconds": []}


class Attacker:
    def __init__(self, port: int, deadline: float) -> None:
        self.port = port
        self.deadline = deadline
        self.stats: dict[str, dict[str, Any]] = {k: _new() for k in ("slow", "oversize", "garbage", "flood")}

    async def _open(self, kind: str) -> tuple[Any, Any] | None:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, self.port), 10)
        except (OSError, asyncio.TimeoutError):
            self.stats[kind]["refused"] += 1
            return None
        self.stats[kind]["opened"] += 1
        return r, w

    async def slow(self) -> None:
        st = self.stats["slow"]
        conn = await self._open("slow")
        if conn is None:
            return
        r, w = conn
        t0 = time.monotonic()
        request = sim.upgradeRequest("server2.vesync.com", 17273)
        try:
            for i in range(len(request)):
                if time.monotonic() > self.deadline:
                    st["still_open_at_end"] += 1
                    return
                w.write(request[i:i + 1])
                try:
                    data = await asyncio.wait_for(r.read(4096), 1.0)
                except asyncio.TimeoutError:
                    continue
                if data.startswith(b"HTTP/1.1 101"):
                    st["got_101"] += 1
                if not data:
                    break
            st["closed_by_server"] += 1
            st["close_seconds"].append(time.monotonic() - t0)
        except OSError:
            st["closed_by_server"] += 1
            st["close_seconds"].append(time.monotonic() - t0)
        finally:
            w.transport.abort()

    async def oversize(self) -> None:
        st = self.stats["oversize"]
        conn = await self._open("oversize")
        if conn is None:
            return
        r, w = conn
        t0 = time.monotonic()
        head = b"GET /gnws HTTP/1.1\r\nHost: server2.vesync.com:17273\r\nUpgrade: websocket\r\n"
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 200) for i in range(60))  # ~12.6 KiB
        try:
            w.write(head + pad)
            data = b""
            while time.monotonic() < self.deadline:
                chunk = await asyncio.wait_for(r.read(4096), max(0.1, self.deadline - time.monotonic()))
                if not chunk:
                    break
                data += chunk
            if b"101" in data[:20]:
                st["got_101"] += 1
            st["closed_by_server"] += 1
            st["close_seconds"].append(time.monotonic() - t0)
        except (OSError, asyncio.TimeoutError):
            st["closed_by_server"] += 1
            st["close_seconds"].append(time.monotonic() - t0)
        finally:
            w.transport.abort()

    async def garbage(self) -> None:
        conn = await self._open("garbage")
        if conn is None:
            return
        r, w = conn
        w.write(os.urandom(random.randint(1, 512)))
        w.transport.abort()

    async def flood(self, frames: int) -> None:
        """Log in as a plug, send C{frames} /ka at once, count the /kr answers and whether we were closed."""
        st = self.stats["flood"]
        st.update({"sent": 0, "answers": 0})
        conn = await self._open("flood")
        if conn is None:
            return
        r, w = conn
        t0 = time.monotonic()
        w.write(sim.upgradeRequest("server2.vesync.com", 17273))
        w.write(sim.maskedFrame(json.dumps({"id": "flooder-0", "firmVersion": "1.89"}).encode(), False))
        ka = sim.maskedFrame(b'{"uri":"/ka","rssi":-40}', False)
        w.write(ka * frames)
        st["sent"] = frames
        data = b""
        try:
            while time.monotonic() < min(self.deadline, t0 + 10):
                chunk = await asyncio.wait_for(r.read(65536), max(0.1, min(self.deadline, t0 + 10) - time.monotonic()))
                if not chunk:
                    st["closed_by_server"] += 1
                    st["close_seconds"].append(time.monotonic() - t0)
                    break
                data += chunk
        except OSError:  # reset: the server aborted the connection (unread answers are lost with it)
            st["closed_by_server"] += 1
            st["close_seconds"].append(time.monotonic() - t0)
        except asyncio.TimeoutError:
            pass
        finally:
            st["answers"] = data.count(b'"uri":"/kr"')
            w.transport.abort()

    async def run(self, slow: int, oversize: int, garbage: int, flood: int, concurrency: int) -> None:
        """Start every connection at its own moment: slow drips over the first 5 s, the others spread
        evenly over 80% of the window (a sustained attack, not a single burst), at most
        C{concurrency} oversize/garbage connections at once."""
        sem = asyncio.Semaphore(concurrency)
        window = max(1.0, (self.deadline - time.monotonic()) * 0.8)

        async def at(delay: float, make: Any, limited: bool) -> None:
            await asyncio.sleep(delay)
            if time.monotonic() >= self.deadline:
                return
            if limited:
                async with sem:
                    await make()
            else:
                await make()

        tasks = [asyncio.ensure_future(at(5.0 * i / max(slow, 1), self.slow, False)) for i in range(slow)]
        if flood:
            tasks.append(asyncio.ensure_future(self.flood(flood)))
        others = [self.oversize] * oversize + [self.garbage] * garbage
        random.shuffle(others)
        tasks += [asyncio.ensure_future(at(window * i / max(len(others), 1), make, True))
                  for i, make in enumerate(others)]
        await asyncio.wait(tasks, timeout=max(1.0, self.deadline - time.monotonic() + 5))
        for t in tasks:
            t.cancel()
        remaining = self.deadline - time.monotonic()
        if remaining > 0:  # the phase lasts its whole window, so the plugs' samples cover it
            await asyncio.sleep(remaining)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hardening.attacker")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--slow", type=int, default=1000)
    p.add_argument("--oversize", type=int, default=1000)
    p.add_argument("--garbage", type=int, default=3000)
    p.add_argument("--flood", type=int, default=0, help="frames the flooding plug sends (0: none)")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    raiseFileLimit()
    started = time.monotonic()
    attacker = Attacker(args.port, started + args.seconds)
    asyncio.run(attacker.run(args.slow, args.oversize, args.garbage, args.flood, args.concurrency))
    out: dict[str, Any] = {"seconds": round(time.monotonic() - started, 1)}
    for kind, st in attacker.stats.items():
        secs = st.pop("close_seconds")
        st["close_p50_s"] = percentile(secs, 50)
        st["close_max_s"] = max(secs) if secs else None
        out[kind] = st
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
