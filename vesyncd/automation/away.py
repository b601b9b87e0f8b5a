"""
Away mode: inside a plug's daily window, switch it on and off at random moments so a house looks lived
in; never on outside the window, and off when the window ends.

Each step is drawn from an injected C{random.Random} (seeded in tests): the first switch-on comes a
random wait after the window opens (at most the shortest off time), then the plug stays on for a
random time in the configured on range and off for one in the off range, until the step would pass
the window's end, which always switches it off.  The window is recomputed in local time every day, so
daylight-saving changes move it with the clock on the wall.
"""

from __future__ import annotations

import random
from datetime import datetime, tzinfo
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from vesyncd.automation.model import Away
from vesyncd.automation.timing import awayWindow

ON, OFF, END = "on", "off", "end"


class _Plan:
    """One plug's away window and its next step."""

    def __init__(self, away: Away) -> None:
        self.away = away
        self.call: IDelayedCall | None = None
        self.step = ON
        self.at = 0.0
        self.windowEnd = 0.0
        #: True once away mode switched the plug on and has not switched it off since.
        self.lit = False


class AwayMode:
    """Every plug's away plan; C{switch(plug, on)} carries out a step (with cause C{away})."""

    def __init__(self, clock: IReactorTime, zone: tzinfo, rng: random.Random, switch: Callable[[str, bool], None],
                 onRange: tuple[float, float] = (600.0, 3600.0),
                 offRange: tuple[float, float] = (600.0, 3600.0)) -> None:
        self.clock = clock
        self.zone = zone
        self.rng = rng
        self.switch = switch
        self.onRange = onRange
        self.offRange = offRange
        self.plans: dict[str, _Plan] = {}

    def __len__(self) -> int:
        return len(self.plans)

    def set(self, away: Away) -> None:
        """Start (or replace) away mode for C{away.plug}, from the current moment."""
        old = self.plans.pop(away.plug, None)
        plan = _Plan(away)
        if old is not None:
            self._cancel(old)
            plan.lit = old.lit
        self.plans[away.plug] = plan
        self._plan(plan)

    def get(self, plug: str) -> Away | None:
        """A plug's away window, or None."""
        plan = self.plans.get(plug)
        return plan.away if plan else None

    def remove(self, plug: str, switchOff: bool = True) -> bool:
        """Stop away mode for C{plug}; if it had switched the plug on, switch it off. False if it was not on."""
        plan = self.plans.pop(plug, None)
        if plan is None:
            return False
        self._cancel(plan)
        if plan.lit and switchOff:
            self.switch(plug, False)
        return True

    def nextChange(self, plug: str) -> tuple[float, bool] | None:
        """When away mode next switches C{plug}, and to what."""
        plan = self.plans.get(plug)
        if plan is None:
            return None
        return plan.at, plan.step == ON

    def window(self, plug: str) -> tuple[float, float] | None:
        """The POSIX begin and end of the plug's current (or next) window."""
        plan = self.plans.get(plug)
        if plan is None:
            return None
        begin, end = awayWindow(plan.away.start, plan.away.end, self._now(), self.zone)
        return begin.timestamp(), end.timestamp()

    def stop(self) -> None:
        """Cancel every pending step (the plans are kept in the store)."""
        for plan in self.plans.values():
            self._cancel(plan)

    def _now(self) -> datetime:
        """The current moment in the local zone."""
        return datetime.fromtimestamp(self.clock.seconds(), self.zone)

    def _cancel(self, plan: _Plan) -> None:
        """Cancel the plan's pending step, if any."""
        if plan.call is not None and plan.call.active():
            plan.call.cancel()
        plan.call = None

    def _plan(self, plan: _Plan) -> None:
        """Plan the first switch-on of the current or next window."""
        now = self.clock.seconds()
        begin, end = (t.timestamp() for t in awayWindow(plan.away.start, plan.away.end, self._now(), self.zone))
        plan.windowEnd = end
        start = max(now, begin)
        self._next(plan, ON, start + self.rng.uniform(0.0, min(self.offRange[0], (end - start) / 2)))

    def _next(self, plan: _Plan, step: str, at: float) -> None:
        """Plan C{step} at C{at}, or the end of the window if that comes first."""
        if at >= plan.windowEnd:
            step, at = END, plan.windowEnd
        plan.step, plan.at = step, at
        plan.call = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._fire, plan)

    def _fire(self, plan: _Plan) -> None:
        """Carry out a planned step and plan the one after it."""
        plan.call = None
        now = self.clock.seconds()
        if plan.step == ON:
            plan.lit = True
            self.switch(plan.away.plug, True)
            self._next(plan, OFF, now + self.rng.uniform(*self.onRange))
        elif plan.step == OFF:
            plan.lit = False
            self.switch(plan.away.plug, False)
            self._next(plan, ON, now + self.rng.uniform(*self.offRange))
        else:
            plan.lit = False
            self.switch(plan.away.plug, False)
            self._plan(plan)
