"""
When the cyclic garbage collector runs in a daemon that holds thousands of long-lived connections.

CPython's full collection walks every tracked object: ~37 per connected plug, so ~200 ms at
10,000 plugs, during which the reactor answers nothing.  Those objects live for days; walking
them again every few minutes finds nothing.  Each plug also replaces a few objects every keep-alive
(its timeout, its Deferreds): they live minutes, so they outlive the young passes and pile up in the
older generations by the ten thousand, and every middle or full pass walks them (40-70 ms at 10,000
plugs).  L{GCPolicy} moves all of them out of the collector's way:

* after a login wave settles (no login for L{SETTLE} seconds, or at the latest L{MAX_DEFER}
  seconds after the first login not yet frozen, so constant churn is no excuse), it collects the
  young generations and calls C{gc.freeze()}: every surviving object goes to the permanent
  generation, which no automatic pass walks;
* every L{FREEZE_EVERY} seconds, and after every automatic pass (on the next reactor turn), it
  freezes whatever the young generations hold (C{gc.freeze()} moves lists, whatever their length):
  an automatic pass walks only what was allocated since the last freeze, never the burst of timers
  that thousands of plugs logged in together re-arm at once (50,000 objects, 33 ms at 10,000 plugs);
* objects freed by reference counting are freed whether frozen or not (connections break their
  own cycles when they close); only cyclic garbage among frozen objects (a cycle that lived longer
  than a freeze interval and died later) waits, for the I{sweep}:
  every L{SWEEP_EVERY} seconds, at a quiet moment (no login for L{SETTLE} seconds; forced once
  it is a whole period overdue), C{gc.unfreeze()}, a full collection, and C{gc.freeze()} again.
  So that such garbage can never pile up between sweeps, the memory in use is checked every
  L{GROWTH_CHECK} seconds: grown by L{SWEEP_GROWTH} since the last sweep or wave freeze, the next
  sweep is due at once (at a quiet moment; at once whatever the logins when it has grown twice
  that).  The start-up sweep sets no mark: what plugs add by connecting to a fresh daemon is not
  garbage, and a full pass over them while they log in would hold the reactor for hundreds of ms
  at 10,000 plugs; the first wave's freeze sets it (at the latest L{MAX_DEFER} after the first login).

Nothing here touches the network; the clock and the collector are injected (tests drive both).
Pauses are timed with C{gc.callbacks}; L{GCPolicy.figures} is what C{vesyncctl info} shows as
C{gc}.
"""

from __future__ import annotations

import gc as _gc
import sys
import threading
import time
from typing import Any, Callable

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

from vesyncd.core.model import ONLINE

log = Logger()

#: Seconds without a login after which a login wave counts as settled.
SETTLE = 30.0
#: Seconds after the first unfrozen login when the survivors are frozen even if logins go on.
MAX_DEFER = 300.0
#: Seconds between sweeps (unfreeze, full collection, freeze) that collect frozen cyclic garbage.
SWEEP_EVERY = 3600.0
#: CPython's own thresholds.  With the survivors of every pass frozen, each pass walks only what was
#: allocated since the previous one, so these set how often a pass runs, not how long it takes.
THRESHOLDS = (700, 10, 10)
#: Seconds between freezes of the young generations.
FREEZE_EVERY = 0.5
#: Seconds between checks of the memory in use (pymalloc's allocated blocks).
GROWTH_CHECK = 60.0
#: Growth of the memory in use since the last sweep (a fraction) that makes the next sweep due now.
SWEEP_GROWTH = 0.5


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
        #: Called after every pass with its generation.
        self.passEnded: Callable[[int], None] = lambda generation: None

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
        self.passEnded(generation)

    def asDict(self) -> dict[str, Any]:
        """The counters as plain numbers (milliseconds for pauses)."""
        return {"passes": list(self.passes),
                "longest_ms": [round(t * 1000, 3) for t in self.longest],
                "total_ms": [round(t * 1000, 1) for t in self.total],
                "collected": self.collected, "uncollectable": self.uncollectable}


class GCPolicy(service.Service):
    """Freezes the young generations every half second, after login waves and after every pass; sweeps
    frozen garbage at quiet moments, hourly or sooner when memory grows."""

    def __init__(self, clock: Any, collector: Any = _gc, timer: Callable[[], float] = time.perf_counter, *,
                 settle: float = SETTLE, maxDefer: float = MAX_DEFER, sweepEvery: float = SWEEP_EVERY,
                 thresholds: tuple[int, int, int] | None = THRESHOLDS, freezeEvery: float | None = FREEZE_EVERY,
                 blocks: Callable[[], int] = sys.getallocatedblocks) -> None:
        self.clock = clock
        self.collector = collector
        self.settle = settle
        self.maxDefer = maxDefer
        self.sweepEvery = sweepEvery
        self.thresholds = thresholds
        self.freezeEvery = freezeEvery
        self.blocks = blocks
        self.pauses = PauseCounters(timer)
        self.pauses.passEnded = self._passEnded
        self.freezes = 0
        #: Freezes of the young generations: periodic, and after automatic passes.
        self.youngFreezes = 0
        #: Sweeps brought forward because the memory in use grew.
        self.growthSweeps = 0
        self._sweepBlocks: int | None = None
        self.sweeps = 0
        self.lastSweepMs: float | None = None
        #: Unreachable objects the last sweep found (cyclic garbage among the frozen ones).
        self.lastSweepCollected: int | None = None
        self._timer = timer
        self._savedThresholds: tuple[int, ...] | None = None
        self._lastLogin: float | None = None
        self._firstUnfrozenLogin: float | None = None
        self._lastSweep = 0.0
        self._ownPass = False
        self._reactorThread: int | None = None
        self._settleCall: Any = None
        self._sweepCall: Any = None
        self._freezeCall: Any = None
        self._loops: list[task.LoopingCall] = []

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
        for every, what in ((self.freezeEvery, self._freezeYoung), (GROWTH_CHECK, self._checkGrowth)):
            if every:
                loop = task.LoopingCall(what)
                loop.clock = self.clock
                loop.start(every, now=False)
                self._loops.append(loop)

    def stopService(self) -> None:
        """Stop the timers, give back the thresholds and unfreeze what this policy froze."""
        service.Service.stopService(self)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
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
        self._ownPass = True
        try:
            self.collector.collect(1)
        finally:
            self._ownPass = False
        self.collector.freeze()
        self.freezes += 1
        self._firstUnfrozenLogin = None
        # What a login wave adds is the new normal, not garbage: growth is measured from here on.
        self._sweepBlocks = self.blocks()

    def sweep(self) -> None:
        """Unfreeze, collect everything (frozen cyclic garbage included) and freeze the survivors."""
        began = self._timer()
        self._ownPass = True
        try:
            self.collector.unfreeze()
            self.lastSweepCollected = self.collector.collect()
            self.collector.freeze()
        finally:
            self._ownPass = False
        self.lastSweepMs = round((self._timer() - began) * 1000, 3)
        if self.sweeps or self.freezes:
            # The start-up sweep measures a daemon no plug has reached yet: growth from there is the
            # plugs connecting, not garbage.  The first wave's freeze (or the next sweep) sets the mark.
            self._sweepBlocks = self.blocks()
        self.sweeps += 1
        self._lastSweep = self.clock.seconds()
        self._firstUnfrozenLogin = None
        log.debug("gc sweep took {ms} ms, found {collected} unreachable objects", ms=self.lastSweepMs,
                  collected=self.lastSweepCollected)

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

    def _grown(self, factor: float) -> bool:
        """Whether the memory in use grew by more than C{factor} since the last sweep."""
        return self._sweepBlocks is not None and self.blocks() > self._sweepBlocks * (1 + factor)

    def _checkGrowth(self) -> None:
        """Bring the next sweep forward when the memory in use grew by L{SWEEP_GROWTH} since the last."""
        if self._grown(SWEEP_GROWTH) and self._sweepCall is not None and self._sweepCall.getTime() > self.clock.seconds():
            self.growthSweeps += 1
            log.info("gc: memory in use grew by over {pct:.0f} % since the last sweep: sweeping early",
                     pct=SWEEP_GROWTH * 100)
            self._sweepCall.cancel()
            self._sweepCall = self.clock.callLater(0, self._sweepDue)

    def _sweepDue(self) -> None:
        self._sweepCall = None
        overdue = self.clock.seconds() - self._lastSweep >= 2 * self.sweepEvery or self._grown(2 * SWEEP_GROWTH)
        if self.sweeps == 0 or self.quiet() or overdue:
            self.sweep()
            self._sweepCall = self.clock.callLater(self.sweepEvery, self._sweepDue)
        else:
            self._sweepCall = self.clock.callLater(self.settle, self._sweepDue)

    def _passEnded(self, generation: int = 2) -> None:
        # Called from inside the collector, in whichever thread allocated (the SQLite writer's
        # too): freeze on a later reactor turn, and reach the reactor thread-safely from elsewhere.
        if threading.get_ident() != self._reactorThread:
            callFromThread = getattr(self.clock, "callFromThread", None)
            if callFromThread is not None and self.running:
                callFromThread(self._passEnded, generation)
            return
        if self.running and not self._ownPass and self._freezeCall is None:
            self._freezeCall = self.clock.callLater(0, self._freezeAfterPass)

    def _freezeAfterPass(self) -> None:
        """Freeze what the last automatic pass left (no pass of its own: that one just ran)."""
        self._freezeCall = None
        self._freezeYoung()

    def _freezeYoung(self) -> None:
        """Move whatever the young generations hold to the permanent one (no pass)."""
        self.collector.freeze()
        self.youngFreezes += 1

    # -- what it tells -----------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        """Passes and pauses per generation, freezes, sweeps and what the last sweep found, for
        C{vesyncctl info}.

        Not the number of objects frozen: C{gc.get_freeze_count} walks every one of them with the
        reactor held (~50 ms at 10,000 plugs), so each C{info} would pause every plug.
        """
        return {**self.pauses.asDict(), "freezes": self.freezes,
                "young_freezes": self.youngFreezes, "growth_sweeps": self.growthSweeps,
                "sweeps": self.sweeps, "last_sweep_ms": self.lastSweepMs,
                "last_sweep_collected": self.lastSweepCollected,
                "thresholds": list(self.collector.get_threshold())}


def makeServices(parent: service.MultiService, hub: Any, reactor: Any, info: Any) -> GCPolicy:
    """Add the policy under C{parent}, tell it of every login, and publish its figures as C{info.facts["gc"]}."""
    policy = GCPolicy(reactor)
    policy.setServiceParent(parent)
    hub.subscribe(lambda event: event.kind == ONLINE and policy.login(), remote=False)
    info.facts["gc"] = policy.figures
    return policy
