"""
The reactor-pause monitor that runs inside a benchmarked server (L{bench.serve_vesyncd}).

A timer fires every C{interval} seconds (1 ms by default); each firing records how much later than
due it ran.  Anything that holds the reactor (a GC pass, a long callback, a slow write) shows as a
late firing of about its own length.  The figures: the longest pause, how many firings were late by
more than 10 ms and 50 ms, the firings made, and the time of the longest pause since the monitor
started.  It costs a wake-up per interval, so it runs only while a benchmark asks for it (the
server toggles it on a signal), never during the CPU measurements.

Where a long pause's time went (Linux): each firing also reads the reactor thread's
C{/proc/thread-self/schedstat} (time on a CPU, time runnable but waiting for one), and every
C{stealEvery} seconds the steal time of the CPUs in the process's affinity from C{/proc/stat}.  For
every pause over 10 ms the monitor adds up how much of it the thread ran, how much it waited in the
run queue (another thread or process had the core), how much it slept (not runnable: blocked, or
in C{epoll_wait} past its timeout), and the hypervisor's steal over the same stretch (read at the
first firing after the pause, so it covers the pause plus at most C{stealEvery}), and how long each of
the process's other threads (the SQLite writer, say) ran meanwhile.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable


#: The server's diagnosis switches (L{bench.serve_vesyncd}), which L{bench.pauses} passes on as given.
DIAGNOSIS_FLAGS: tuple[tuple[str, str], ...] = (
    ("--gc-trace", "record the largest containers each slow collector pass walked (slows every pass)"),
    ("--trace-stalls", "sample the reactor thread's stack while the pause monitor is overdue"),
    ("--split-pauses", "split each reactor pause over 10 ms into running, waiting for a CPU, sleeping and steal, "
                       "with the CPU time of the process's other threads meanwhile (Linux)"),
)


def addDiagnosisFlags(parser: Any) -> None:
    """Add the L{DIAGNOSIS_FLAGS} to an C{argparse} parser."""
    for flag, explanation in DIAGNOSIS_FLAGS:
        parser.add_argument(flag, action="store_true", help=f"{explanation} (diagnosis)")


def _schedstat(fd: int | None) -> tuple[int, int]:
    """(ns on a CPU, ns waiting in a run queue) of the thread that opened C{fd}; zeros without it."""
    if fd is None:
        return 0, 0
    fields = os.pread(fd, 128, 0).split()
    return int(fields[0]), int(fields[1])


def _steal(cpus: set[int]) -> float:
    """Seconds of hypervisor steal so far on C{cpus} (the eighth figure of a C{cpuN} line of /proc/stat)."""
    total = 0
    with open("/proc/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu") or line.startswith(b"cpu "):
                continue
            name, *values = line.split()
            if int(name[3:]) in cpus and len(values) > 7:
                total += int(values[7])
    return total / os.sysconf("SC_CLK_TCK")


class ReactorPauses:
    """Records the lateness of a timer that should fire every C{interval} seconds."""

    def __init__(self, reactor: Any, interval: float = 0.001, timer: Callable[[], float] = time.monotonic,
                 attribute: bool = False, stealEvery: float = 0.05) -> None:
        self.reactor = reactor
        self.interval = interval
        self.timer = timer
        self.attribute = attribute
        self.stealEvery = stealEvery
        self._call: Any = None
        self._fd: int | None = None
        self._cpus: set[int] = set()
        #: The process's other threads: tid -> (name, schedstat fd), listed again every second.
        self._others: dict[str, tuple[str, int]] = {}
        self._othersListed = 0.0
        self._othersRan: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the figures so far."""
        self.began = self.timer()
        self.due = self.began + self.interval
        self.firings = 0
        self.longest = 0.0
        self.longestAt = 0.0
        self.over10 = 0
        self.over50 = 0
        #: Of the pauses over 10 ms (firing to firing): seconds in all, ran, waited for a CPU, slept;
        #: steal around them; CPU time of the process's other threads meanwhile.
        self.split = {"pause": 0.0, "ran": 0.0, "runqueue": 0.0, "slept": 0.0, "steal": 0.0, "others": 0.0}
        self.worst: list[dict[str, Any]] = []
        self._last = self.began
        self._sched = _schedstat(self._fd)
        self._othersRan = self._readOthers()
        self._stealAt, self._stealSoFar = self.began, (_steal(self._cpus) if self._cpus else 0.0)

    @property
    def running(self) -> bool:
        """Whether the timer is armed."""
        return self._call is not None

    def start(self) -> None:
        """Reset the figures and start the timer (restarts it if it runs)."""
        self.stop()
        if self.attribute and self._fd is None and os.path.exists("/proc/thread-self/schedstat"):
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)  # the reactor thread's own
            self._cpus = set(os.sched_getaffinity(0))
        self.reset()
        self._call = self.reactor.callLater(self.interval, self._fire)

    def stop(self) -> None:
        """Stop the timer; the figures stay."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        now = self.timer()
        late = max(0.0, now - self.due)
        self.firings += 1
        if late > self.longest:
            self.longest, self.longestAt = late, now - self.began
        if late > 0.010:
            self.over10 += 1
        if late > 0.050:
            self.over50 += 1
        if self._fd is not None:
            self._account(now, late)
        self.due = now + self.interval
        self._call = self.reactor.callLater(self.interval, self._fire)

    def _listOthers(self) -> None:
        """Open the schedstat of every other thread of this process (threads come and go)."""
        tasks = set(os.listdir("/proc/self/task"))
        mine = os.readlink("/proc/thread-self").rsplit("/", 1)[-1]
        for tid in [t for t in self._others if t not in tasks]:
            os.close(self._others.pop(tid)[1])
        for tid in tasks - set(self._others) - {mine}:
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f.read().strip()
                self._others[tid] = (name, os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY))
            except OSError:
                continue

    def _readOthers(self) -> dict[str, int]:
        """ns on a CPU so far of each other thread of this process."""
        if self._fd is None:
            return {}
        if self.timer() - self._othersListed >= 1.0:
            self._othersListed = self.timer()
            self._listOthers()
        ran = {}
        for tid, (_name, fd) in list(self._others.items()):
            try:
                ran[tid] = _schedstat(fd)[0]
            except OSError:
                continue
        return ran

    def _account(self, now: float, late: float) -> None:
        """Split the stretch since the last firing into ran, waited and slept when it was a long pause."""
        others, before = self._readOthers(), self._othersRan
        self._othersRan = others
        sched = _schedstat(self._fd)
        ran, waited = (sched[0] - self._sched[0]) / 1e9, (sched[1] - self._sched[1]) / 1e9
        stretch, self._last, self._sched = now - self._last, now, sched
        if late > 0.010 or now - self._stealAt >= self.stealEvery:
            steal = _steal(self._cpus)
            stolen, window = steal - self._stealSoFar, now - self._stealAt
            self._stealAt, self._stealSoFar = now, steal
            if late > 0.010:
                row = {"ms": stretch * 1000, "ran_ms": ran * 1000, "runqueue_ms": waited * 1000,
                       "slept_ms": max(0.0, stretch - ran - waited) * 1000, "steal_ms": stolen * 1000,
                       "steal_window_ms": window * 1000}
                ranOthers = {self._others[t][0] + "/" + t: (v - before[t]) / 1e6 for t, v in others.items()
                             if t in before and t in self._others and v > before[t]}
                row["other_threads_ran_ms"] = sum(ranOthers.values())
                self.split["others"] += row["other_threads_ran_ms"] / 1000
                for key, value in (("pause", stretch), ("ran", ran), ("runqueue", waited),
                                   ("slept", max(0.0, stretch - ran - waited)), ("steal", stolen)):
                    self.split[key] += value
                entry: dict[str, Any] = {k: round(v, 2) for k, v in row.items()}
                entry["other_threads"] = {k: round(v, 2) for k, v in sorted(ranOthers.items(), key=lambda kv: -kv[1])[:3]}
                self.worst = sorted([*self.worst, entry], key=lambda r: -r["ms"])[:10]

    def figures(self) -> dict[str, Any]:
        """The figures since the last start, in milliseconds and counts."""
        return {"pause_monitor_running": self.running, "pause_seconds": round(self.timer() - self.began, 1),
                "pause_firings": self.firings, "pause_longest_ms": round(self.longest * 1000, 3),
                "pause_longest_at_s": round(self.longestAt, 1), "pause_over_10ms": self.over10,
                "pause_over_50ms": self.over50,
                **({"pause_split_ms": {k: round(v * 1000, 1) for k, v in self.split.items()},
                    "pause_worst": self.worst} if self._fd is not None else {})}
