"""
The reactor-pause monitor that runs inside a benchmarked server (L{bench.serve_vesyncd}).

A timer fires every C{interval} seconds (1 ms by default); each firing records how much later than
due it ran.  Anything that holds the reactor (a GC pass, a long callback, a slow write) shows as a
late firing of about its own length.  The figures: the longest pause, how many firings were late by
more than 10 ms and 50 ms, the firings made, and the time of the longest pause since the monitor
started.  It costs a wake-up per interval, so it runs only while a benchmark asks for it (the
server toggles it on a signal), never during the CPU measurements.
"""

from __future__ import annotations

import time
from typing import Any, Callable


class ReactorPauses:
    """Records the lateness of a timer that should fire every C{interval} seconds."""

    def __init__(self, reactor: Any, interval: float = 0.001, timer: Callable[[], float] = time.monotonic) -> None:
        self.reactor = reactor
        self.interval = interval
        self.timer = timer
        self._call: Any = None
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

    @property
    def running(self) -> bool:
        """Whether the timer is armed."""
        return self._call is not None

    def start(self) -> None:
        """Reset the figures and start the timer (restarts it if it runs)."""
        self.stop()
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
        self.due = now + self.interval
        self._call = self.reactor.callLater(self.interval, self._fire)

    def figures(self) -> dict[str, Any]:
        """The figures since the last start, in milliseconds and counts."""
        return {"pause_monitor_running": self.running, "pause_seconds": round(self.timer() - self.began, 1),
                "pause_firings": self.firings, "pause_longest_ms": round(self.longest * 1000, 3),
                "pause_longest_at_s": round(self.longestAt, 1), "pause_over_10ms": self.over10,
                "pause_over_50ms": self.over50}
