"""
A fixed in-process workload for the per-message CPU of the plug path, repeatable on a busy machine.

    python -m bench.inproc [--plugs 1000] [--rounds 10] [--kind report|ka|both] [--profile FILE]

Builds the daemon exactly as C{twistd vesyncd} does (L{vesyncd.tap.makeService}, SQLite store,
insight, persister and every subscriber; no HTTP, DNS or MQTT listener), on the epoll reactor
with its clock replaced by a simulated one, and connects N plugs through in-memory transports
(the real Autobahn handshake and login).  Then, per round, every plug sends one masked C{/report}
frame (C{e} 3c, C{t} 3, as the load generator sends) and/or one C{/ka}, the simulated clock
moving 3 s per round so that the trust bound, the persister's and the store's timers run as at
the real cadence.  The frames are handed to the protocols a slice per reactor turn so the store's
writer thread gets its batches as in the daemon.

Prints the reactor thread's CPU per message (C{time.thread_time}: the part vesyncd's code pays
for on the event loop) and the process's (the SQLite writer thread too).  Under
C{valgrind --tool=callgrind} the instruction counts of this run are the same whatever else the
machine does (use small N); C{--profile FILE} writes cProfile stats of the message phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.split("\n\n")[0])
    p.add_argument("--plugs", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--kind", choices=["report", "ka", "both"], default="report")
    p.add_argument("--slice", type=int, default=100, help="frames handed over per reactor turn")
    p.add_argument("--profile", default=None, help="write cProfile stats of the message phase here")
    p.add_argument("--no-store", action="store_true", help="the in-memory ledger instead of SQLite")
    args = p.parse_args(argv)

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from bench.loadgen import KA_FRAMES, REPORT_FRAME, frame
    from vesyncd import tap
    from vesyncd.sim.plug import SimPlug, plugId, upgradeRequest

    state = tempfile.mkdtemp(prefix="vesyncd-inproc-")
    logfile = open(os.path.join(state, "vesyncd.log"), "a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(logfile)], redirectStandardIO=False)

    now = [1_790_000_000.0]
    reactor.seconds = lambda: now[0]  # type: ignore[method-assign]

    config = tap.Options()
    config.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", state,
                         "--max-new-plugs-per-minute", "10000000", "--no-dns", "--refresh-interval", "0",
                         "--no-http"])
    top = tap.makeService(config, reactor, persistent=not args.no_store)
    factory = top.plugListener.factory
    factory.frameRate = 1e9
    top.privilegedStartService()
    top.startService()

    import json as _json

    protos = []
    for i in range(args.plugs):
        addr = IPv4Address("TCP", "127.0.0.1", 20000 + i)
        proto = factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 17273))
        proto.makeConnection(transport)
        proto.dataReceived(upgradeRequest("127.0.0.1", 17273))
        sim = SimPlug(reactor, plugId("inproc", i))
        proto.dataReceived(frame(_json.dumps(sim.login(), separators=(",", ":")).encode()))
        transport.clear()
        protos.append((proto, transport))
    online = sum(1 for proto, _ in protos if proto.session is not None)

    kinds = {"report": [REPORT_FRAME], "ka": [None], "both": [REPORT_FRAME, None]}[args.kind]
    work: list[tuple[Any, Any, bytes]] = []
    for r in range(args.rounds):
        for i, (proto, transport) in enumerate(protos):
            for f in kinds:
                work.append((proto, transport, f if f is not None else KA_FRAMES[(i + r) % len(KA_FRAMES)]))
    step = 3.0 / max(1, (len(work) // args.rounds) // args.slice)
    result: dict[str, Any] = {}

    def warm() -> None:
        # Let the start-up's timers and first writes settle, then measure.
        now[0] += 5.0
        reactor.callLater(0, begin)

    def begin() -> None:
        import gc

        gc.collect()
        if args.profile:
            import cProfile

            result["prof"] = cProfile.Profile()
            result["prof"].enable()
        result["t0"] = (time.thread_time(), time.process_time(), time.perf_counter())
        feed(0)

    def feed(i: int) -> None:
        for proto, transport, data in work[i:i + args.slice]:
            proto.dataReceived(data)
            transport.clear()
        i += args.slice
        now[0] += step
        if i < len(work):
            reactor.callLater(0, feed, i)
        else:
            t0 = result["t0"]
            result["t1"] = (time.thread_time(), time.process_time(), time.perf_counter())
            if args.profile:
                result["prof"].disable()
                result["prof"].dump_stats(args.profile)
            reactor.stop()

    reactor.callLater(0, warm)
    reactor.run()
    stats = dict(top.hub.stats)
    t0, t1 = result["t0"], result["t1"]
    n = len(work)
    doc = {"plugs": online, "rounds": args.rounds, "kind": args.kind, "messages": n,
           "reactor_us_per_msg": round((t1[0] - t0[0]) * 1e6 / n, 2),
           "process_us_per_msg": round((t1[1] - t0[1]) * 1e6 / n, 2),
           "wall_us_per_msg": round((t1[2] - t0[2]) * 1e6 / n, 2),
           "reports": stats.get("reports"), "refused": {k: v for k, v in stats.items() if "refused" in k and v}}
    print(json.dumps(doc))
    shutil.rmtree(state, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # the store's writer thread is not stopped (the reactor has stopped)


if __name__ == "__main__":
    sys.exit(main())
