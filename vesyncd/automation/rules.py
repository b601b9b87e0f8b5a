"""
Power rules: a L{RuleTracker} per rule turns power readings into firings (with hysteresis), a
L{RuleSet} holds the rules and their trackers, and a L{PowerPoller} reads the power of plugs with an
enabled rule on a budget.

Hysteresis: a condition begins when the power crosses the threshold and ends only when it has gone
back past the threshold by the band (10 % of the threshold, at least L{BAND_MIN_W} watts), so
readings wobbling around the threshold neither restart the wait nor fire twice.  A fired
C{above}/C{below} rule re-arms only after its condition has ended.  A C{done_below} rule ("the cycle
finished") arms only after the plug has drawn more than threshold plus band for a while, and fires
once per such cycle.
"""

from __future__ import annotations

import collections
import heapq
import math
from typing import Any, Callable, Iterable

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vesyncd.automation.model import ABOVE, DONE_BELOW, Rule

log = Logger()

#: Smallest hysteresis band, in watts; otherwise 10 % of the threshold.
BAND_MIN_W = 2.0
BAND_SHARE = 0.10

IDLE, PENDING, FIRED, STARTING, RUNNING, FINISHING = "idle", "pending", "fired", "starting", "running", "finishing"


def band(watts: float) -> float:
    """The hysteresis band of a threshold, in watts."""
    return max(BAND_MIN_W, BAND_SHARE * watts)


class RuleTracker:
    """One rule's state, moved by power readings; L{feed} says when the rule fires."""

    def __init__(self, rule: Rule, runningAfter: float = 60.0) -> None:
        self.rule = rule
        self.runningAfter = runningAfter
        self.state = IDLE
        self.since: float | None = None

    @property
    def running(self) -> bool | None:
        """For a C{done_below} rule, whether the plug is in a cycle; None for other rules."""
        return self.state in (RUNNING, FINISHING) if self.rule.when == DONE_BELOW else None

    def _go(self, state: str, at: float | None) -> None:
        """Enter C{state}, which began at C{at}."""
        self.state, self.since = state, at

    def feed(self, power: float, at: float) -> bool:
        """Account one reading of C{power} watts at C{at}; True when the rule fires now."""
        w, b, r = self.rule.watts, band(self.rule.watts), self.rule
        if r.when == DONE_BELOW:
            return self._feedDone(power, at, w, b)
        entered = power > w if r.when == ABOVE else power < w
        cleared = power < w - b if r.when == ABOVE else power > w + b
        if self.state == IDLE and entered:
            self._go(PENDING, at)
        elif self.state == PENDING and cleared:
            self._go(IDLE, None)
        elif self.state == FIRED and cleared:
            self._go(IDLE, None)
        if self.state == PENDING and self.since is not None and at - self.since >= r.seconds:
            self._go(FIRED, at)
            return True
        return False

    def _feedDone(self, power: float, at: float, w: float, b: float) -> bool:
        """The C{done_below} machine: idle -> starting -> running -> finishing -> fire, back to idle."""
        if self.state == IDLE and power > w + b:
            self._go(STARTING, at)
        elif self.state == STARTING and power < w:
            self._go(IDLE, None)
        elif self.state == RUNNING and power < w:
            self._go(FINISHING, at)
        elif self.state == FINISHING and power > w + b:
            self._go(RUNNING, at)
        if self.state == STARTING and self.since is not None and at - self.since >= self.runningAfter:
            self._go(RUNNING, at)
        if self.state == FINISHING and self.since is not None and at - self.since >= self.rule.seconds:
            self._go(IDLE, None)
            return True
        return False

    def interrupted(self) -> None:
        """The plug went offline: a wait in progress starts again (a cycle that was running still is)."""
        if self.state in (PENDING, STARTING):
            self._go(IDLE, None)
        elif self.state == FINISHING:
            self._go(RUNNING, None)


class RuleSet:
    """The rules by id and by plug, with a tracker for each enabled one."""

    def __init__(self, runningAfter: float = 60.0) -> None:
        self.runningAfter = runningAfter
        self.rules: dict[str, Rule] = {}
        self.trackers: dict[str, RuleTracker] = {}
        self.byPlug: dict[str, dict[str, Rule]] = collections.defaultdict(dict)

    def __len__(self) -> int:
        return len(self.rules)

    def put(self, rule: Rule) -> None:
        """Add or replace a rule; a replaced or disabled rule's state starts afresh."""
        self.remove(rule.id)
        self.rules[rule.id] = rule
        self.byPlug[rule.plug][rule.id] = rule
        if rule.enabled:
            self.trackers[rule.id] = RuleTracker(rule, self.runningAfter)

    def remove(self, ruleId: str) -> Rule | None:
        """Drop a rule; returns it, or None if there was none."""
        rule = self.rules.pop(ruleId, None)
        self.trackers.pop(ruleId, None)
        if rule is not None:
            plugRules = self.byPlug.get(rule.plug, {})
            plugRules.pop(ruleId, None)
            if not plugRules:
                self.byPlug.pop(rule.plug, None)
        return rule

    def ofPlug(self, plug: str) -> list[Rule]:
        """A plug's rules in the order they were added."""
        return list(self.byPlug.get(plug, {}).values())

    def armed(self, plug: str) -> bool:
        """True if the plug has an enabled rule (its power must be polled)."""
        return any(r.id in self.trackers for r in self.byPlug.get(plug, {}).values())

    def feed(self, plug: str, power: float, at: float) -> list[tuple[Rule, bool, bool | None]]:
        """Feed a reading to a plug's trackers; per rule that fired or changed C{running}:
        C{(rule, fired, running-or-None-if-unchanged)}."""
        changes = []
        for rule in self.ofPlug(plug):
            tracker = self.trackers.get(rule.id)
            if tracker is None:
                continue
            before = tracker.running
            fired = tracker.feed(power, at)
            after = tracker.running
            if fired or after != before:
                changes.append((rule, fired, after if after != before else None))
        return changes

    def interrupted(self, plug: str) -> None:
        """The plug went offline: restart every wait in progress on it."""
        for rule in self.ofPlug(plug):
            tracker = self.trackers.get(rule.id)
            if tracker is not None:
                tracker.interrupted()

    def state(self, ruleId: str) -> tuple[str, bool | None]:
        """A rule's state name (C{"disabled"} when it is) and, for done-rules, whether a cycle runs."""
        tracker = self.trackers.get(ruleId)
        return ("disabled", None) if tracker is None else (tracker.state, tracker.running)


class PowerPoller:
    """Reads the power of armed plugs every C{interval} seconds each, at most C{maxPerSecond} in total.

    The bound is exact over any window: the times of the last reads are kept, and a read is made only
    if fewer than C{perWindow} were made in the C{window} seconds before it (one second, or longer for
    a budget under one read a second).  A tick every C{tick} seconds makes at most its share of them,
    so reads spread over the second; armed plugs are read in order of how long they have waited, so a
    budget smaller than the demand serves every plug in turn.  An offline plug and one whose last read
    is still unanswered are skipped until their next turn.
    """

    def __init__(self, clock: IReactorTime, refresh: Callable[[str], Deferred], isOnline: Callable[[str], bool],
                 interval: float = 5.0, maxPerSecond: float = 20.0, tick: float = 0.25) -> None:
        self.clock = clock
        self.refresh = refresh
        self.isOnline = isOnline
        self.interval = interval
        self.maxPerSecond = maxPerSecond
        self.tick = tick
        self.window = max(1.0, 1.0 / maxPerSecond)
        self.perWindow = max(1, int(maxPerSecond * self.window + 1e-9))
        self.perTick = max(1, math.ceil(maxPerSecond * tick - 1e-9))
        self._recent: collections.deque[float] = collections.deque()
        self.due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._busy: set[str] = set()
        self._loop: task.LoopingCall | None = None
        self.started = False
        self.polls = 0
        self.failures = 0

    def arm(self, plug: str) -> None:
        """Start reading C{plug}'s power (at once if the budget allows)."""
        if plug not in self.due:
            self.due[plug] = self.clock.seconds()
            heapq.heappush(self._heap, (self.due[plug], plug))
        self._run()

    def disarm(self, plug: str) -> None:
        """Stop reading C{plug}'s power."""
        self.due.pop(plug, None)
        self._run()

    def armedPlugs(self) -> Iterable[str]:
        """The plugs being read."""
        return list(self.due)

    def start(self) -> None:
        """Begin ticking whenever a plug is armed."""
        self.started = True
        self._run()

    def stop(self) -> None:
        """Stop ticking (reads in flight finish on their own)."""
        self.started = False
        self._run()

    def _run(self) -> None:
        """Tick only while started with a plug armed, so an idle engine leaves the clock alone."""
        running = self._loop is not None and self._loop.running
        if self.started and self.due and not running:
            self._loop = task.LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.tick, now=False)
        elif running and not (self.started and self.due):
            assert self._loop is not None
            self._loop.stop()
            self._heap = [(d, p) for d, p in self._heap if self.due.get(p) == d]
            heapq.heapify(self._heap)

    def _tick(self) -> None:
        """Spend this tick's budget on the plugs that waited longest."""
        now = self.clock.seconds()
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        spent = 0
        while self._heap and self._heap[0][0] <= now and spent < self.perTick and len(self._recent) < self.perWindow:
            due, plug = heapq.heappop(self._heap)
            if self.due.get(plug) != due:
                continue  # disarmed, or re-queued under a newer time
            self.due[plug] = now + self.interval
            heapq.heappush(self._heap, (self.due[plug], plug))
            if plug in self._busy or not self.isOnline(plug):
                continue
            spent += 1
            self._recent.append(now)
            self._read(plug)

    def _read(self, plug: str) -> None:
        """Ask for one reading; the result reaches the rules through the hub's 'runtime' event."""
        self.polls += 1
        self._busy.add(plug)

        def failed(f: Any) -> None:
            self.failures += 1
            log.debug("automation: power reading of {plug} failed: {error}", plug=plug, error=f.getErrorMessage())

        self.refresh(plug).addErrback(failed).addBoth(lambda _: self._busy.discard(plug))
