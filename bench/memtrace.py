"""
Where does a soak's memory go?  vesyncd under reconnect churn, its heaps sampled.

    python -m bench.memtrace [--plugs 10000] [--churn 50] [--seconds 600] [--every 30]
                             [--tracemalloc] [--experiment no-store] [--out DIR]

Every C{--every} seconds it records VmRSS and its anonymous part (C{/proc/PID/smaps_rollup}) and
asks the server (SIGUSR2, see L{bench.serve_vesyncd}) for glibc's heap (bytes in use and free
but held), SQLite's own allocations and pymalloc's arenas (bytes in use and free but held), all
in KiB.  Growth in "in use" figures is live data; growth in "free" figures or arenas with the
in-use figures flat is the allocators holding on to memory.  C{--tracemalloc} also takes
tracemalloc snapshots (SIGUSR1; slow, and it perturbs the heaps it measures) and prints the
allocation sites that grew most between the first sample after warm-up and the last.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import time
import tracemalloc
from typing import Any

from bench.plugs import Load, Server


def smaps(pid: int) -> dict[str, int]:
    """KiB figures from /proc/PID/smaps_rollup (Rss, Anonymous, ...)."""
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1])
    return out


def ask(srv: Server, sig: int, pattern: str, timeout: float = 60.0) -> str | None:
    """Signal the server for a tracemalloc snapshot; the file it writes in its state directory."""
    for old in glob.glob(os.path.join(srv.stateDir, pattern)):
        os.remove(old)
    os.kill(srv.pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = glob.glob(os.path.join(srv.stateDir, pattern))
        if found:
            time.sleep(0.5)  # let a large snapshot finish writing
            return found[0]
        time.sleep(0.1)
    return None


def sample(srv: Server, t: float, out: str, withTracemalloc: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"t": int(t)}
    row.update({k: v for k, v in smaps(srv.pid).items() if k in ("Rss", "Anonymous")})
    for key, value in srv.heap().items():
        if key.startswith(("malloc_", "sqlite_", "pymalloc_")) and key != "pymalloc_arenas":
            row[key] = value // 1024  # bytes -> KiB
        elif key.startswith("gc2_"):
            row[key] = value
    if withTracemalloc:
        snap = ask(srv, signal.SIGUSR1, "tracemalloc-*.snap")
        if snap:
            shutil.copy(snap, os.path.join(out, f"t{int(t):04d}.snap"))
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--plugs", type=int, default=10_000)
    p.add_argument("--churn", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--every", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=120.0)
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--experiment", action="append", default=[])
    p.add_argument("--out", default="memtrace-out")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    srv = Server("vesyncd", tracemalloc=args.tracemalloc, experiments=tuple(args.experiment))
    load = None
    rows = []
    try:
        rows.append(sample(srv, -1, args.out, False) | {"t": "idle"})
        print(json.dumps(rows[-1]), flush=True)
        load = Load(srv.port, args.plugs)
        load.all("connect", timeout=60)
        t0 = time.monotonic()
        while True:
            t = time.monotonic() - t0
            rows.append(sample(srv, t, args.out, args.tracemalloc))
            print(json.dumps(rows[-1]), flush=True)
            if t >= args.seconds:
                break
            dropped = sum(x["dropped"] for x in load.all("churn", seconds=args.every, rate=args.churn))
            rows[-1]["reconnects_next"] = dropped
    finally:
        if load is not None:
            load.close()
        srv.stop()
    timed = [r for r in rows if r["t"] != "idle"]
    warm = [r for r in timed if r["t"] >= args.warmup] or timed[-1:]
    first, last = warm[0], timed[-1]
    print(f"after warm-up: t={first['t']} -> t={last['t']} s (KiB)")
    for key in last:
        if key not in ("t", "reconnects_next") and key in first:
            print(f"  {key:>20}: {first[key]:>9} -> {last[key]:>9} ({last[key] - first[key]:+})")
    if args.tracemalloc:
        a = tracemalloc.Snapshot.load(os.path.join(args.out, f"t{first['t']:04d}.snap"))
        b = tracemalloc.Snapshot.load(os.path.join(args.out, f"t{last['t']:04d}.snap"))
        print("allocation sites that grew most:")
        for stat in b.compare_to(a, "lineno")[:25]:
            print(f"  {stat.size_diff:+10} B {stat.count_diff:+7}  {stat.traceback}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
