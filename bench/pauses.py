"""
The longest pause of vesyncd's reactor with N plugs at the real cadence (issue target: <= 10 ms
at 10,000 plugs over 10 minutes, GC or anything else).

    python -m bench.pauses [--plugs 10000] [--seconds 600] [--gc-policy on|off] [--split-pauses]

One fresh vesyncd (pinned as in L{bench.plugs}); N plugs log in at once; then the reactor-pause
monitor (L{bench.pausemon}: a 1 ms timer, its lateness is the pause) runs while every plug keeps
the real cadence (a /ka every 180 s at a random phase, a /report 3 s after each /kr, and the
daemon's default power refresh: every plug read once a minute) for C{--seconds}, in windows of at most 60 s.  Prints, per window, the longest pause and the cyclic
collector's passes, then the totals and one JSON line.  The login wave itself is not in the
window: the target is about a settled installation (the GC policy freezes that wave 30 s after it).
C{--gc-policy off} measures the same with CPython's collector defaults, for comparison.
C{--split-pauses} also says, for the pauses over 10 ms, how long the reactor thread ran, waited for
its core, or slept, the steal on that core around them, and which of the daemon's other threads ran.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

from bench.pausemon import DIAGNOSIS_FLAGS, addDiagnosisFlags
from bench.plugs import Load, Server
from vesyncd.tap import Options

TARGET_MS = 10.0
#: The daemon's default C{--refresh-interval}, which the pauses are measured with.
REFRESH_S = float(Options().defaults["refresh-interval"])


def measure(plugs: int, seconds: float, say: Callable[[str], None] = print, gcPolicy: str = "on",
            window: float = 60.0, diagnosis: tuple[str, ...] = (),
            experiments: tuple[str, ...] = ()) -> dict[str, Any]:
    """One vesyncd, C{plugs} logged in, C{seconds} of real cadence with the pause monitor on;
    C{diagnosis} holds server switches from L{DIAGNOSIS_FLAGS}."""
    # The daemon's default power refresh (the /ka and CPU steps turn it off, the peer has none): every
    # plug's power is read once a minute, as in an installation.
    srv = Server("vesyncd", extra=("--gc-policy", gcPolicy, *diagnosis, f"--daemon-arg=--refresh-interval={REFRESH_S:g}")
                 + tuple(f"--experiment={e}" for e in experiments))
    load = None
    try:
        load = Load(srv.port, plugs)
        t0 = time.monotonic()
        online = sum(x["online"] for x in load.all("connect", timeout=120))
        say(f"pauses: {online}/{plugs} logged in in {time.monotonic() - t0:.1f} s (gc policy {gcPolicy})")
        h0 = srv.heap()
        srv.pauseMonitor(True)
        windows: list[dict[str, Any]] = []
        began = time.monotonic()
        lost = unanswered = 0
        while time.monotonic() - began < seconds:
            chunk = min(window, seconds - (time.monotonic() - began))
            if chunk < 1:
                break
            srv.pauseMonitor(True)  # figures per window
            r = load.all("cadence", seconds=chunk, ka=180.0, report=0.0)
            h = srv.heap()
            lost += sum(x["lost"] for x in r)
            unanswered += sum(x["unanswered"] for x in r)
            row = {"t": round(time.monotonic() - began), "longest_ms": h.get("pause_longest_ms"),
                   "over_10ms": h.get("pause_over_10ms"), "firings": h.get("pause_firings"),
                   "gc_passes": [h.get(f"gc{g}_passes", 0) for g in range(3)],
                   "gc_longest_ms": [h.get(f"gc{g}_longest_ms", 0) for g in range(3)],
                   "frozen": h.get("gc_frozen")}
            if "pause_split_ms" in h:
                row["split_ms"], row["worst"] = h["pause_split_ms"], h["pause_worst"]
            windows.append(row)
            say(f"  t={row['t']:>4} s: longest pause {row['longest_ms']} ms ({row['over_10ms']} over 10 ms), "
                f"gc passes so far {row['gc_passes']}, longest {row['gc_longest_ms']} ms, frozen {row['frozen']}")
        srv.pauseMonitor(False)
        h1 = srv.heap()
        longest = max((w["longest_ms"] or 0 for w in windows), default=None)
        result = {"plugs": plugs, "online": online, "seconds": round(time.monotonic() - began), "gc_policy": gcPolicy,
                  "longest_pause_ms": longest, "over_10ms": sum(w["over_10ms"] or 0 for w in windows),
                  "gc_passes_in_run": [h1.get(f"gc{g}_passes", 0) - h0.get(f"gc{g}_passes", 0) for g in range(3)],
                  "gc_full_longest_ms_since_start": h1.get("gc2_longest_ms"), "frozen": h1.get("gc_frozen"),
                  "gcpolicy": h1.get("gcpolicy"), "gc_slow_passes": h1.get("gc_slow_passes", []),
                  "stall_stacks": h1.get("stall_stacks", []), "lost": lost, "unanswered": unanswered,
                  "target_ms": TARGET_MS, "windows": windows}
        for row in result["gc_slow_passes"][:10]:
            say(f"  slow collector pass since start: generation {row['gen']}, {row['ms']} ms wall, "
                f"{row['cpu_ms']} ms CPU of its thread ({row['thread']}), counts before {row['counts_before']}, "
                f"collected {row['collected']}" + (f", largest containers walked {row['biggest']}" if "biggest" in row else ""))
        if "--split-pauses" in diagnosis:
            split = {key: round(sum(w.get("split_ms", {}).get(key, 0.0) for w in windows), 1)
                     for key in ("pause", "ran", "runqueue", "slept", "steal", "others")}
            result["split_ms"] = split
            result["worst"] = sorted((r for w in windows for r in w.get("worst", [])), key=lambda r: -r["ms"])[:10]
            say(f"  pauses over 10 ms, {split['pause']} ms in all: the reactor thread ran {split['ran']} ms, waited "
                f"for a CPU {split['runqueue']} ms, slept {split['slept']} ms; steal on its CPUs around them "
                f"{split['steal']} ms; the process's other threads ran {split['others']} ms meanwhile")
            for r in result["worst"]:
                say(f"    {r['ms']} ms: ran {r['ran_ms']}, run queue {r['runqueue_ms']}, slept {r['slept_ms']}, "
                    f"steal {r['steal_ms']} in the {r['steal_window_ms']} ms around it; other threads "
                    f"{r.get('other_threads')}")
        for stack, samples in result["stall_stacks"]:
            say(f"  during long pauses ({samples} samples): {stack}")
        say(f"pauses: longest reactor pause {longest} ms over {result['seconds']} s at {online} plugs "
            f"(target <= {TARGET_MS:g} ms); full GC passes in the run {result['gc_passes_in_run'][2]}; "
            f"lost {lost}, unanswered {unanswered}")
        return result
    finally:
        if load is not None:
            load.close()
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: one measurement, its JSON line last."""
    p = argparse.ArgumentParser(prog="python -m bench.pauses", description=__doc__.split("\n\n")[0])
    p.add_argument("--plugs", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--gc-policy", choices=["on", "off"], default="on")
    p.add_argument("--experiment", action="append", default=[],
                   help="a tuning of the server to try (bench.serve_vesyncd --experiment), e.g. switch-interval=0.001")
    addDiagnosisFlags(p)
    args = p.parse_args(argv)
    diagnosis = tuple(flag for flag, _ in DIAGNOSIS_FLAGS if getattr(args, flag[2:].replace("-", "_")))
    print(json.dumps(measure(args.plugs, args.seconds, gcPolicy=args.gc_policy, diagnosis=diagnosis,
                             experiments=tuple(args.experiment)), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
