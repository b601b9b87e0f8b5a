"""
Simulated plugs (L{vesyncd.sim.plug}) that time each C{/ka} -> C{/kr} round trip.

C{python -m bench.hardening.plugs --port P --count 100 --speed 60 --seconds 90 --out FILE}
runs C{count} simulated 1.89 plugs against 127.0.0.1:P for C{seconds} and then writes FILE:
every round trip as C{[wall time, seconds]}, and every disconnect after login as C{[wall time, id]}.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from twisted.internet import reactor

from bench.hardening.common import LOOPBACK, raiseFileLimit
from vesyncd.sim import plug as sim
from vesyncd.sim import runner as simrunner


class TimedPlug(sim.SimPlug):
    """A simulated plug that remembers when it sent C{/ka} and records the C{/kr} latency."""

    samples: list[list[float]] = []

    kaSent: float | None = None

    def sendKeepalive(self) -> None:
        self.kaSent = time.perf_counter() if self.protocol is not None else None
        super().sendKeepalive()

    def received(self, obj: dict[str, Any]) -> None:
        if obj.get("uri") == "/kr" and self.kaSent is not None:
            TimedPlug.samples.append([time.time(), time.perf_counter() - self.kaSent])
            self.kaSent = None
        super().received(obj)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hardening.plugs")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--speed", type=float, default=60.0)
    p.add_argument("--seconds", type=float, default=90.0)
    p.add_argument("--seed", default="hardening")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    raiseFileLimit()
    events: list[list[Any]] = []
    onlineOnce: set[str] = set()

    def onEvent(ev: dict[str, Any]) -> None:
        if ev["event"] == "online":
            onlineOnce.add(ev["plug"])
            events.append([time.time(), "online", ev["plug"]])
        elif ev["event"] == "disconnected" and ev["plug"] in onlineOnce:
            events.append([time.time(), "disconnected", ev["plug"]])

    runners = []
    for i in range(args.count):
        plug = TimedPlug(reactor, sim.plugId(args.seed, i), speed=args.speed, relay=i % 2 == 0, onEvent=onEvent)
        runner = simrunner.PlugRunner(reactor, plug, LOOPBACK, args.port)
        runner.start(2.0 * i / args.count)
        runners.append(runner)

    finished: list[bool] = []

    def finish() -> None:
        if finished:
            return
        finished.append(True)
        online = sum(1 for r in runners if r.plug.loggedIn)
        with open(args.out, "w") as f:
            json.dump({"samples": TimedPlug.samples, "events": events, "online_at_end": online,
                       "count": args.count}, f)
        for r in runners:
            r.stop()
        reactor.callLater(0.2, reactor.stop)

    reactor.callLater(args.seconds, finish)
    # SIGTERM ends the run early with the figures so far (the LAN part stops its victims this way).
    # Installed once the reactor runs: reactor.run() puts its own SIGTERM handler (a bare stop,
    # which would lose every sample) in place of one set before.
    reactor.callWhenRunning(reactor.callLater, 0, signal.signal, signal.SIGTERM,
                            lambda *_: reactor.callFromThread(finish))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
