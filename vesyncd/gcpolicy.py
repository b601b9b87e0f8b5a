"""
When the cyclic garbage collector runs in a daemon that holds thousands of long-lived connections.

CPython's full collection walks every tracked object: ~37 per connected plug, so ~200 ms at
10,000 plugs, during which the reactor answers nothing.  Those objects live for days; walking
them again every few minutes finds nothing.  L{GCPolicy} moves them out of the collector's way:

* after a login wave settles (no login for L{SETTLE} seconds, or at the latest L{MAX_DEFER}
  seconds after the first login not yet frozen, so constant churn is no excuse), it collects the
  young generations and calls C{gc.freeze()}: every surviving object goes to the permanent
  generation, which no automatic pass walks;
* after every automatic full pass it freezes the survivors the same way (on the next reactor
  turn), so the next full pass walks only what was promoted since: its cost follows the recent
  growth, not the number of plugs;
* objects freed by reference counting are freed whether frozen or not (connections break their
  own cycles when they close); only cyclic garbage among frozen objects waits, for the I{sweep}:
  every L{SWEEP_EVERY} seconds, at a quiet moment (no login for L{SETTLE} seconds; forced once
  it is a whole period overdue), C{gc.unfreeze()}, a full collection, and C{gc.freeze()} again.

Nothing here touches the network; the clock and the collector are injected (tests drive both).
Pauses are timed with C{gc.callbacks}; L{GCPolicy.figures} is what C{vesyncctl info} shows as
C{gc}.
"""

from __future__ import annotations

import gc as _gc
import threading
import time
from typing import Any, Callable

from twisted.application import service
from twisted.logger import Logger

from vesyncd.core.model import ONLINE

log = Logger()

#: Seconds without a login after which a login wave counts as settled.
SETTLE = 30.0
#: Seconds after the first unfrozen login when the survivors are frozen even if logins go on.
MAX_DEFER = 300.0
#: Seconds between sweeps (unfreeze, full collection, freeze) that collect frozen cyclic garbage.
SWEEP_EVERY = 3600.0
#: Young-generation thresholds as CPython's own: a young pass walks at most ~7,000 objects
#: (a few ms).  The oldest generation's threshold stays too: with survivors frozen after each
#: full pass, that pass walks only objects promoted since (at most ~700 x 10 x 10), so its cost
#: is bounded by these numbers rather than by the number of plugs; raising it would make full
#: passes rarer but each one longer.
THRESHOLDS = (700, 10, 10)


class PauseCounters:
    """Passes per generation, their longest and total pause, and what they collected."""

    def __init__(self, timer: Callable[[], float]) -> None:
        self.timer = timer
        self.started = 0.0
        self.passes = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        self.collected = 0
        self.uncollectable = 0
        self.fullPassEnded: Callable[[], None] = lambda: None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """The C{gc.callbacks} entry: time each pass from its start to its stop."""
        if phase == "start":
            self.started = self.timer()
            return
        # Called twice for every pass, thousands of times a second under load: kept short.
        took = self.timer() - self.started
        generation = info["generation"]
        self.passes[generation] += 1
        self.total[generation] += took
        if took > self.longest[generation]:
            self.longest[generation] = took
        self.collected += info["collected"]
        self.uncollectable += info["uncollectable"]
        if generation == 2:
            self.fullPassEnded()

    def asDict(self) -> dict[str, Any]:
        """The counters as plain numbers (milliseconds for pauses)."""
        return {"passes": list(self.passes),
                "longest_ms": [round(t * 1000, 3) for t in self.longest],
                "total_ms": [round(t * 1000, 1) for t in self.total],
                "collected": self.collected, "uncollectable": self.uncollectable}


class GCPolicy(service.Service):
    """Freezes long-lived objects after login waves and full passes; sweeps frozen garbage at quiet moments."""

    def __init__(self, clock: Any, collector: Any = _gc, timer: Callable[[], float] = time.perf_counter, *,
                 settle: float = SETTLE, maxDefer: float = MAX_DEFER, sweepEvery: float = SWEEP_EVERY,
                 thresholds: tuple[int, int, int] | None = THRESHOLDS) -> None:
        self.clock = clock
        self.collector = collector
        self.settle = settle
        self.maxDefer = maxDefer
        self.sweepEvery = sweepEvery
        self.thresholds = thresholds
        self.pauses = PauseCounters(timer)
        self.pauses.fullPassEnded = self._fullPassEnded
        self.freezes = 0
        self.sweeps = 0
        self.lastSweepMs: float | None = None
        self._timer = timer
        self._savedThresholds: tuple[int, ...] | None = None
        self._lastLogin: float | None = None
        self._firstUnfrozenLogin: float | None = None
        self._lastSweep = 0.0
        self._sweeping = False
        self._reactorThread: int | None = None
        self._settleCall: Any = None
        self._sweepCall: Any = None
        self._freezeCall: Any = None

    # -- service ---------------------------------------------------------------------------------
    def startService(self) -> None:
        """Install the thresholds and the pause timer; collect and freeze what start-up built."""
        service.Service.startService(self)
        self._reactorThread = threading.get_ident()
        if self.thresholds is not None:
            self._savedThresholds = self.collector.get_threshold()
            self.collector.set_threshold(*self.thresholds)
        self.collector.callbacks.append(self.pauses)
        # Once the reactor runs and before plugs connect, a full pass is as cheap as it will ever be.
        self._sweepCall = self.clock.callLater(0, self._sweepDue)

    def stopService(self) -> None:
        """Stop the timers, give back the thresholds and unfreeze what this policy froze."""
        service.Service.stopService(self)
        for name in ("_settleCall", "_sweepCall", "_freezeCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        if self.pauses in self.collector.callbacks:
            self.collector.callbacks.remove(self.pauses)
        if self._savedThresholds is not None:
            self.collector.set_threshold(*self._savedThresholds)
            self._savedThresholds = None
        self.collector.unfreeze()

    # -- what the daemon tells it ------------------------------------------------------------------
    def login(self) -> None:
        """A plug logged in: the wave it belongs to is frozen once logins settle."""
        now = self.clock.seconds()
        self._lastLogin = now
        if self._firstUnfrozenLogin is None:
            self._firstUnfrozenLogin = now
        if self.running and self._settleCall is None:
            self._settleCall = self.clock.callLater(self.settle, self._settleDue)

    def quiet(self) -> bool:
        """No login for the last C{settle} seconds."""
        return self._lastLogin is None or self.clock.seconds() - self._lastLogin >= self.settle

    # -- actions -----------------------------------------------------------------------------------
    def freeze(self) -> None:
        """Collect the young generations (cheap), then freeze every object that survives."""
        self.collector.collect(1)
        self.collector.freeze()
        self.freezes += 1
        self._firstUnfrozenLogin = None

    def sweep(self) -> None:
        """Unfreeze, collect everything (frozen cyclic garbage included) and freeze the survivors."""
        began = self._timer()
        self._sweeping = True
        try:
            self.collector.unfreeze()
            self.collector.collect()
            self.collector.freeze()
        finally:
            self._sweeping = False
        self.lastSweepMs = round((self._timer() - began) * 1000, 3)
        self.sweeps += 1
        self._lastSweep = self.clock.seconds()
        self._firstUnfrozenLogin = None
        log.debug("gc sweep took {ms} ms, {frozen} objects frozen", ms=self.lastSweepMs,
                  frozen=self.collector.get_freeze_count())

    def _settleDue(self) -> None:
        self._settleCall = None
        if self._firstUnfrozenLogin is None:
            return
        now = self.clock.seconds()
        if self.quiet() or now - self._firstUnfrozenLogin >= self.maxDefer:
            self.freeze()
            return
        wait = min(self.settle - (now - (self._lastLogin or now)), self._firstUnfrozenLogin + self.maxDefer - now)
        self._settleCall = self.clock.callLater(max(wait, 0.0), self._settleDue)

    def _sweepDue(self) -> None:
        self._sweepCall = None
        overdue = self.clock.seconds() - self._lastSweep >= 2 * self.sweepEvery
        if self.sweeps == 0 or self.quiet() or overdue:
            self.sweep()
            self._sweepCall = self.clock.callLater(self.sweepEvery, self._sweepDue)
        else:
            self._sweepCall = self.clock.callLater(self.settle, self._sweepDue)

    def _fullPassEnded(self) -> None:
        # Called from inside the collector, in whichever thread allocated (the SQLite writer's
        # too): freeze on a later reactor turn, and reach the reactor thread-safely from elsewhere.
        if threading.get_ident() != self._reactorThread:
            callFromThread = getattr(self.clock, "callFromThread", None)
            if callFromThread is not None and self.running:
                callFromThread(self._fullPassEnded)
            return
        if self.running and not self._sweeping and self._freezeCall is None:
            self._freezeCall = self.clock.callLater(0, self._freezeAfterPass)

    def _freezeAfterPass(self) -> None:
        self._freezeCall = None
        self.freeze()

    # -- what it tells -----------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        """Passes and pauses per generation, freezes, sweeps and objects frozen, for C{vesyncctl info}."""
        return {**self.pauses.asDict(), "frozen": self.collector.get_freeze_count(), "freezes": self.freezes,
                "sweeps": self.sweeps, "last_sweep_ms": self.lastSweepMs,
                "thresholds": list(self.collector.get_threshold())}


def makeServices(parent: service.MultiService, hub: Any, reactor: Any, info: Any) -> GCPolicy:
    """Add the policy under C{parent}, tell it of every login, and publish its figures as C{info.facts["gc"]}."""
    policy = GCPolicy(reactor)
    policy.setServiceParent(parent)
    hub.subscribe(lambda event: event.kind == ONLINE and policy.login(), remote=False)
    info.facts["gc"] = policy.figures
    return policy
