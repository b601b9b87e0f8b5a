"""
The real daemon (L{vesyncd.tap.makeService}) for the hardening suite, with a stats file.

C{python -m bench.hardening.daemon --stats FILE --max-seconds N -- [vesyncd options]} builds the
daemon exactly as C{twistd vesyncd} does from the given options, and every 0.25 s writes to FILE
(atomically) the hub's counters, the number of plugs online, its RSS and its plug port.  It also
runs commands the suite drops into C{FILE.cmd} (C{{"op": "switch", "plug": ID, "on": true}}) and
records their outcome and latency, so a test can check that a command to a vanished plug fails
promptly.  It stops by itself after C{--max-seconds}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner, \
    textFileLogObserver

from bench.hardening.common import raiseFileLimit, rssKiB, writeJSON
from vesyncd import tap


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hardening.daemon")
    p.add_argument("--stats", required=True)
    p.add_argument("--log", default=None)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("options", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    raiseFileLimit()
    opts = [o for o in args.options if o != "--"]
    logFile = open(args.log or os.devnull, "a")
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(logFile), [LogLevelFilterPredicate(LogLevel.info)])], redirectStandardIO=False)
    options = tap.Options()
    options.parseOptions(opts)
    top = tap.makeService(options, reactor)
    top.startService()
    hub = top.hub
    statsPath = Path(args.stats)
    cmdPath = statsPath.with_suffix(".cmd")
    commands: list[dict[str, Any]] = []
    started = time.time()

    def runCommand() -> None:
        try:
            cmd = json.loads(cmdPath.read_text())
        except (OSError, ValueError):
            return
        os.unlink(cmdPath)
        t0 = time.monotonic()
        record: dict[str, Any] = {"cmd": cmd, "at": time.time()}
        commands.append(record)

        def done(result: Any) -> None:
            record["seconds"] = round(time.monotonic() - t0, 3)
            record["outcome"] = type(getattr(result, "value", result)).__name__

        hub.switch(cmd["plug"], cmd.get("on")).addBoth(done)

    def write() -> None:
        runCommand()
        status = hub.status()
        writeJSON(statsPath, {
            "pid": os.getpid(), "t": time.time(), "uptime": time.time() - started,
            "port": top.plugListener.port.getHost().port if top.plugListener.port else None,
            "online": status["plugs_online"], "known": status["plugs_known"], "stats": status["counters"],
            "rss_kib": rssKiB(), "cpu_s": round(time.process_time(), 3), "commands": commands,
        })

    task.LoopingCall(write).start(0.25)
    reactor.callLater(args.max_seconds, reactor.stop)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
