"""
A test-only WebSocket echo endpoint with vesyncd's production plug-server options.

It subclasses L{vesyncd.plugs.server.PlugServerProtocol} and L{vesyncd.plugs.server.PlugServerFactory}, so the
Autobahn protocol options (64 KiB frame and message limits, masked client frames required,
no compression, failByDrop, no auto-ping) and vesyncd's own guards (8 KiB handshake cap,
handshake deadline, write-stall bound) are the production ones; only L{onMessage} differs: it
echoes each message back instead of speaking the plug protocol.  The login deadline and the frame
rate limit are plug-protocol rules (a conformance client sends no login and sends bursts), so the
echo endpoint turns those two off; everything at the WebSocket layer stays as in production.

Run: C{python -m bench.hardening.echo_server [--port 0] [--fail-by-drop yes|no]}; it prints
C{PORT <n>} once listening on 127.0.0.1 (it never listens anywhere else).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import reactor as _reactor

from vesyncd.plugs import server as ws
from vesyncd.core.hub import Hub


class EchoProtocol(ws.PlugServerProtocol):
    """The production plug protocol, answering each message with itself."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Echo the message as it came (text or binary)."""
        if self.closing:
            return
        self.sendMessage(payload, isBinary)


class EchoFactory(ws.PlugServerFactory):
    """The production factory with the echo protocol; C{failByDrop} may be overridden for study."""

    protocol = EchoProtocol

    def __init__(self, reactor: Any, failByDrop: bool | None = None) -> None:
        super().__init__(Hub(reactor), reactor=reactor, frameRate=1e9, loginTimeout=None)
        if failByDrop is not None:
            self.setProtocolOptions(failByDrop=failByDrop)


def listen(reactor: Any, port: int = 0, failByDrop: bool | None = None) -> Any:
    """Listen on 127.0.0.1:C{port}; returns the listening port."""
    return reactor.listenTCP(port, EchoFactory(reactor, failByDrop), interface="127.0.0.1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hardening.echo_server")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fail-by-drop", choices=("yes", "no", "production"), default="production")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop by itself after this long")
    args = p.parse_args(argv)
    fbd = {"yes": True, "no": False, "production": None}[args.fail_by_drop]
    lp = listen(_reactor, args.port, fbd)
    print(f"PORT {lp.getHost().port}", flush=True)
    _reactor.callLater(args.max_seconds, _reactor.stop)
    _reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
