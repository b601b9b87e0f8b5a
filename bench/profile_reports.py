"""
Where a report's CPU goes: vesyncd with N plugs each sending a /report every 3 s, sampled by py-spy.

    python -m bench.profile_reports [--plugs 5000] [--seconds 30] [--out reports.txt] [--rate 250]

Starts vesyncd as L{bench.plugs} does (pinned, the daemon twistd builds), connects N plugs, runs
the report step (every plug a /report every 3 s, plus its /ka) and meanwhile samples the server
with C{py-spy record --threads --format raw} at C{--rate} Hz (all threads: the SQLite writer counts).
Prints the share of the busy samples (threads not waiting; inclusive: a sample counts for every
part on its stack, so parts nest) in each part of the report path: the WebSocket layer (Autobahn
and Twisted), decoding the JSON, the session and hub, the energy ledger, the persister, the events
fanned out to front ends (the hub's subscribers), the SQLite writer thread; then the top functions
by own time.  C{--from FILE} only analyses raw stacks recorded earlier.  The raw stacks are kept in C{--out}.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from bench.plugs import Load, Server

#: Parts of the report path: a sample counts for a part when any frame of its stack matches.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("SQLite writer thread", ("_write (vesyncd/storage/store.py", "vesyncd-store")),
    ("WebSocket layer (Autobahn, Twisted)", ("autobahn/", "twisted/internet/tcp.py", "twisted/internet/abstract.py")),
    ("decode (vesyncd.plugs.codec)", ("vesyncd/plugs/codec.py",)),
    ("session (vesyncd.core.session)", ("vesyncd/core/session.py",)),
    ("hub (vesyncd.core.hub)", ("vesyncd/core/hub.py",)),
    ("ledger and trust (energy, storage.ledger, core.trust)", ("vesyncd/core/energy.py", "vesyncd/storage/ledger.py",
                                                             "vesyncd/core/trust.py")),
    ("persister (storage.persister)", ("vesyncd/storage/persister.py",)),
    ("store queue (reactor side)", ("addReport (vesyncd/storage/store.py", "putPlug (vesyncd/storage/store.py",
                                    "flush (vesyncd/storage/store.py")),
    ("events fanned out (hub._emit subscribers)", ("_emit (vesyncd/core/hub.py",)),
    ("  web events", ("vesyncd/web/events.py",)),
    ("  MQTT bridge", ("vesyncd/mqtt/",)),
    ("  control watchers", ("vesyncd/control/",)),
    ("  automation / insight", ("vesyncd/automation/", "vesyncd/insight/")),
    ("gc (cyclic collector)", ("gcpolicy.py", "(garbage collection)")),
]


#: Exclusive attribution: each busy sample goes to the first of these met walking from its leaf to its root.
OWNERS: list[tuple[str, tuple[str, ...]]] = [
    ("insight / automation", ("vesyncd/insight/", "vesyncd/automation/")),
    ("web / MQTT / control", ("vesyncd/web/", "vesyncd/mqtt/", "vesyncd/control/")),
    ("persister", ("vesyncd/storage/persister.py",)),
    ("store queue", ("vesyncd/storage/store.py",)),
    ("ledger / energy / trust", ("vesyncd/storage/ledger.py", "vesyncd/core/energy.py", "vesyncd/core/trust.py",
                                 "vesyncd/core/periods.py")),
    ("hub", ("vesyncd/core/hub.py", "vesyncd/core/events.py", "vesyncd/core/model.py")),
    ("session", ("vesyncd/core/session.py", "vesyncd/core/policy.py")),
    ("decode / encode (codec)", ("vesyncd/plugs/codec.py",)),
    ("plug server adapter (vesyncd.plugs.server)", ("vesyncd/plugs/",)),
    ("Autobahn", ("autobahn/", "txaio/")),
    ("Twisted (reactor, TCP, logging)", ("twisted/",)),
    ("gc policy", ("vesyncd/gcpolicy.py",)),
]


def owner(frames: list[str]) -> str:
    """The part a busy sample's time belongs to (its innermost recognised frame; the writer thread whole)."""
    if any(frame.startswith(("Store._write (", "Store._prune")) for frame in frames):
        return "SQLite writer (thread)"
    for frame in reversed(frames):
        for name, keys in OWNERS:
            if any(k in frame for k in keys):
                return name
    return "other"


#: Leaf frames of a thread that waits (the reactor in epoll_wait, the writer thread for work).
IDLE_LEAVES = ("EPollReactor.doPoll (twisted/internet/epollreactor.py:227)", "Condition.wait (threading.py")


def idle(frames: list[str]) -> bool:
    """Whether a stack is a thread waiting rather than working."""
    return frames[-1].startswith(IDLE_LEAVES)


def parseRaw(path: str) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) stacks: (frames from root to leaf, samples)."""
    stacks = []
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        if count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def shares(stacks: list[tuple[list[str], int]]) -> dict[str, Any]:
    """Inclusive share (%) of every part, of all samples and of the busy (non-idle) ones; top own-time functions."""
    total = sum(n for _, n in stacks) or 1
    working = [(frames, n) for frames, n in stacks if not idle(frames)]
    busy = sum(n for _, n in working) or 1
    parts = {}
    for name, keys in PARTS:
        n = sum(c for frames, c in working if any(k in f for f in frames for k in keys))
        parts[name] = {"pct_of_samples": round(n * 100 / total, 1), "pct_of_busy": round(n * 100 / busy, 1)}
    own: collections.Counter[str] = collections.Counter()
    owners: collections.Counter[str] = collections.Counter()
    for frames, n in working:
        own[frames[-1]] += n
        owners[owner(frames)] += n
    top = [{"function": f, "pct_of_busy": round(n * 100 / busy, 1)} for f, n in own.most_common(25)]
    exclusive = {name: round(n * 100 / busy, 1) for name, n in owners.most_common()}
    return {"samples": total, "busy_samples": busy, "parts": parts, "exclusive_pct_of_busy": exclusive, "top_own": top}


def printShares(doc: dict[str, Any]) -> None:
    """The parts' shares and the top functions, one per line."""
    for name, share in doc["parts"].items():
        print(f"  {name:58s} {share['pct_of_samples']:5.1f} % of samples  {share['pct_of_busy']:5.1f} % of busy")
    print("exclusive (each busy sample to its innermost recognised part):")
    for name, share in doc["exclusive_pct_of_busy"].items():
        print(f"  {name:58s} {share:5.1f} % of busy")
    print("top functions by own busy samples:")
    for t in doc["top_own"]:
        print(f"  {t['pct_of_busy']:5.1f} %  {t['function'][:120]}")


def main(argv: list[str] | None = None) -> int:
    """Run, sample, print the shares and one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.profile_reports", description=__doc__.split("\n\n")[0])
    p.add_argument("--plugs", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=int, default=250)
    p.add_argument("--out", default="reports-profile.txt")
    p.add_argument("--from", dest="source", help="analyse this raw py-spy file instead of running")
    args = p.parse_args(argv)
    if args.source:
        doc = shares(parseRaw(args.source))
        printShares(doc)
        print(json.dumps(doc, separators=(",", ":")))
        return 0
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy)")
        return 1
    srv = Server("vesyncd")
    load = None
    try:
        load = Load(srv.port, args.plugs)
        online = sum(x["online"] for x in load.all("connect", timeout=120))
        time.sleep(2.0)
        rec = subprocess.Popen([spy, "record", "--pid", str(srv.pid), "--threads", "--format", "raw", "--rate",
                                str(args.rate), "--duration", str(int(args.seconds)), "--output", args.out,
                                "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        c0, t0 = srv.cpuSeconds(), time.monotonic()
        r = load.all("cadence", seconds=args.seconds, ka=180.0, report=3.0)
        cpu = (srv.cpuSeconds() - c0) / (time.monotonic() - t0) * 100
        try:
            rec.wait(args.seconds + 60)
        except subprocess.TimeoutExpired:
            rec.kill()
        reports = sum(x["sent_report"] for x in r)
    finally:
        if load is not None:
            load.close()
        srv.stop()
    if not os.path.exists(args.out):
        print(f"py-spy wrote nothing: {rec.stderr.read() if rec.stderr else ''}")
        return 1
    doc = {"plugs": online, "seconds": args.seconds, "reports": reports, "cpu_pct": round(cpu, 1),
           "cpu_us_per_report": round(cpu / 100 * args.seconds * 1e6 / max(reports, 1)), **shares(parseRaw(args.out))}
    print(f"{online} plugs reporting every 3 s: server cpu {doc['cpu_pct']} % of a core, "
          f"{doc['cpu_us_per_report']} us per report; {doc['samples']} samples ({doc['busy_samples']} busy)")
    printShares(doc)
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
