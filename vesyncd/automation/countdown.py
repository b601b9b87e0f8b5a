"""
L{Countdowns}: every plug's countdown timer (at most one per plug), the clock call that runs it,
and the switch it makes when it is due.

A timer is stored when it is set and deleted only once its switch is confirmed or given up (the
L{Switcher} settles it), so a timer that came due while the daemon was down runs at start-up, and
one whose switch is waiting for an offline plug outlives a restart.
"""

from __future__ import annotations

from typing import Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from vesyncd.automation.interfaces import IAutomationStore
from vesyncd.automation.model import TIMER, Timer
from vesyncd.automation.parse import AutomationRefused
from vesyncd.automation.switcher import Intent, Switcher


class Countdowns:
    """The pending timers by plug, each armed on the clock for its deadline."""

    def __init__(self, clock: IReactorTime, store: IAutomationStore, switcher: Switcher, maxTimers: int) -> None:
        self.clock = clock
        self.store = store
        self.switcher = switcher
        self.maxTimers = maxTimers
        self._timers: dict[str, Timer] = {}
        self._calls: dict[str, IDelayedCall] = {}

    def __len__(self) -> int:
        return len(self._timers)

    def __contains__(self, plug: object) -> bool:
        return plug in self._timers

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._timers))

    def get(self, plug: str) -> Timer | None:
        """The plug's pending timer, or None."""
        return self._timers.get(plug)

    def set(self, plug: str, on: bool, delay: float) -> Timer:
        """Switch C{plug} to C{on} C{delay} seconds from now, replacing its timer (and the old timer's
        switch if that still waits for the plug); stored and armed.

        @raise AutomationRefused: the plug has no timer and C{maxTimers} are pending already.
        """
        if plug not in self._timers and len(self._timers) >= self.maxTimers:
            raise AutomationRefused("--for", f"{len(self._timers)} timers are pending, the most allowed")
        now = self.clock.seconds()
        self._cancelCall(plug)
        self.switcher.drop(plug, TIMER)
        timer = self._timers[plug] = Timer(plug, on, now + delay, now)
        self.store.save(TIMER, plug, plug, timer.toDoc())
        self.arm(plug)
        return timer

    def cancel(self, plug: str) -> bool:
        """Cancel the plug's timer and its waiting switch, and delete it from the store; False if it had none."""
        if self._timers.pop(plug, None) is None:
            return False
        self._cancelCall(plug)
        self.switcher.drop(plug, TIMER)
        self.store.delete(TIMER, plug, plug)
        return True

    def hold(self, timer: Timer) -> None:
        """Hold a timer as stored (read at start-up, or saved by another node): not armed, not saved."""
        self._cancelCall(timer.plug)
        self._timers[timer.plug] = timer

    def discard(self, plug: str) -> None:
        """Drop the plug's timer from memory and the clock; the store and any waiting switch are left."""
        self._timers.pop(plug, None)
        self._cancelCall(plug)

    def arm(self, plug: str) -> None:
        """Plan the plug's timer on the clock (at once if its deadline has passed); nothing if it has none."""
        timer = self._timers.get(plug)
        if timer is None:
            return
        self._cancelCall(plug)
        self._calls[plug] = self.clock.callLater(max(0.0, timer.due - self.clock.seconds()), self._due, timer)

    def armAll(self) -> None:
        """Arm every held timer."""
        for plug in list(self._timers):
            self.arm(plug)

    def stop(self) -> None:
        """Cancel every clock call (the timers stay held and stored)."""
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()

    def _cancelCall(self, plug: str) -> None:
        call = self._calls.pop(plug, None)
        if call is not None and call.active():
            call.cancel()

    def _due(self, timer: Timer) -> None:
        """Switch the plug; the timer stays held and stored until the plug confirms or it is given up."""
        self._calls.pop(timer.plug, None)

        def settled(done: bool) -> None:
            if self._timers.get(timer.plug) is timer:
                del self._timers[timer.plug]
                self.store.delete(TIMER, timer.plug, timer.plug)

        self.switcher.apply(Intent(timer.plug, timer.on, TIMER, timer.due, None, settled))
