"""
The plain-Python baseline: a minimal plug server on the C{websockets} library (asyncio).

It does what vesyncd's plug server does on the hot paths and nothing else: answers the login
(the first frame) with C{/loginReply}, C{/ka} with C{/kr} and the time at once, ignores
C{/report}, answers a server C{/ka} probe's C{/kr} by ignoring it, and sends C{/relay} for
C{relay(plugId, on)} (the plug's C{/runtimeInfo} completes it).  The replies are built with the
same encoders as vesyncd (L{vesyncd.plugs.codec}), so both servers put the same bytes on the wire.
No rate limit, no deadlines, no validation beyond C{json.loads}: the best case for plain Python.

    python -m bench.peer_websockets --port 17300
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
from typing import Any

from websockets.asyncio.server import serve

from vesyncd.plugs import codec as m

#: Connected plugs by id, and the relay commands waiting for their /runtimeInfo.
PLUGS: dict[str, Any] = {}
WAITING: dict[str, list[asyncio.Future]] = {}


async def relay(plug: str, on: bool) -> bool:
    """Switch a plug and wait for its confirmation."""
    ws = PLUGS[plug]
    future = asyncio.get_running_loop().create_future()
    WAITING.setdefault(plug, []).append(future)
    await ws.send(m.relayCommand(on).decode())
    return await future


async def handler(ws: Any) -> None:
    plug = None
    try:
        async for frame in ws:
            obj = json.loads(frame)
            if not isinstance(obj, dict):
                continue
            uri = obj.get("uri")
            if plug is None:
                plug = str(obj.get("id"))
                PLUGS[plug] = ws
                await ws.send(m.loginReply(time.time()).decode())
            elif uri == "/ka":
                await ws.send(m.keepAliveReply(time.time()).decode())
            elif uri == "/runtimeInfo":
                waiting = WAITING.get(plug)
                if waiting:
                    waiting.pop(0).set_result(obj.get("relay") == m.RELAY_ON)
            # /report, /kr, /state ...: nothing to answer
    except Exception:
        pass
    finally:
        if plug is not None and PLUGS.get(plug) is ws:
            del PLUGS[plug]


async def run(host: str, port: int, backlog: int = 1024) -> None:
    async with serve(handler, host, port, compression=None, ping_interval=None, max_size=m.MAX_PAYLOAD,
                     max_queue=16, open_timeout=10, close_timeout=1, backlog=backlog):
        await asyncio.Future()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="minimal websockets plug server (benchmark baseline)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=1024, help="listen backlog (vesyncd's is 4096; bench.plugs gives the peer the same)")
    args = p.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        print("peer_websockets: benchmark servers listen on loopback only", file=sys.stderr)
        return 2
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(run(args.host, args.port, args.backlog))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
