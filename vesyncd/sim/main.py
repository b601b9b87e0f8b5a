"""
C{vesyncd-sim}: simulated Voltson plugs from the command line, for tests, demos and load.

    vesyncd-sim --server HOST:PORT --count N [--firmware 1.89|2.123] [--speed S] [--load W]
    vesyncd-sim --setup-mode --listen HOST:PORT

The plugs are L{vesyncd.sim.plug.SimPlug}s kept connected by L{vesyncd.sim.runner.Simulator};
with C{--events} each event is a JSON line on standard output and L{vesyncd.sim.commands} reads
commands from standard input.  Setup mode is L{vesyncd.sim.setupmode}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

from vesyncd.addresses import splitHostPort
from vesyncd.sim.commands import StdinCommands
from vesyncd.sim.plug import PROFILES
from vesyncd.sim.runner import Simulator
from vesyncd.sim.setupmode import runSetupMode

log = Logger()


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
        return runSetupMode(reactor, args, out)

    sim = Simulator(reactor, host, port, args.count, firmware=args.firmware, speed=args.speed,
                    load_w=args.load, seed=args.seed, start=args.start_index, onEvent=out)
    sim.start(args.spread)
    if args.events:
        stdio.StandardIO(StdinCommands(sim, out))
    if args.press_every > 0:
        task.LoopingCall(lambda: random.choice(sim.plugs).press()).start(args.press_every, now=False)
    log.info("simulating {n} plug(s), firmware {fw}, against {host}:{port}", n=args.count, fw=args.firmware,
             host=host, port=port)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
