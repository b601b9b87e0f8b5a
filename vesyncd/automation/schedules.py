"""
L{Schedules}: every schedule, the clock call for each one's next run, running them, and catching up at
start-up on the runs missed while the daemon was down.

A run is noted in the schedule (C{last_run}, stored) before its switch is made, so a run is never
carried out twice, even across a restart; a one-off schedule disables itself when it runs.
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall

from vesyncd.automation import views
from vesyncd.automation.interfaces import IAutomationStore
from vesyncd.automation.model import SCHEDULE, Schedule
from vesyncd.automation.parse import AutomationError, AutomationRefused, parseAt, parseDate, parseDays, parseSwitch
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.switcher import Intent
from vesyncd.automation.timing import nextRun, previousRun


def newId(prefix: str, taken: Callable[[str], bool]) -> str:
    """A short random id that C{taken} does not know, e.g. C{"s3fa9c1"}."""
    while True:
        candidate = prefix + secrets.token_hex(3)
        if not taken(candidate):
            return candidate


class Schedules:
    """The schedules by id and by plug, each armed on the clock for its next run."""

    def __init__(self, clock: Any, config: AutomationConfig, store: IAutomationStore,
                 apply: Callable[[Intent], None], taken: Callable[[str], bool]) -> None:
        self.clock = clock
        self.config = config
        self.zone = config.zone
        self.store = store
        self.apply = apply
        self.taken = taken
        self.byId: dict[str, Schedule] = {}
        self.byPlug: dict[str, dict[str, Schedule]] = collections.defaultdict(dict)
        self.calls: dict[str, tuple[float, IDelayedCall]] = {}
        #: In a cluster: the other node holding a plug's connection, or None; that node runs its schedules.
        self.elsewhere: Callable[[str], str | None] = lambda plug: None

    def __len__(self) -> int:
        return len(self.byId)

    def _now(self) -> datetime:
        """The current moment in the local zone."""
        return datetime.fromtimestamp(self.clock.seconds(), self.zone)

    def _next(self, schedule: Schedule, after: datetime) -> datetime | None:
        """The schedule's next run after C{after}, with the configured zone and location."""
        return nextRun(schedule, after, zone=self.zone, location=self.config.location)

    # -- what users ask --------------------------------------------------------------------------

    def add(self, plug: str, on: Any, at: Any, days: Any = None, once: Any = None) -> dict[str, Any]:
        """Add and arm a schedule (see L{AutomationEngine.addSchedule}); returns its JSON."""
        target = parseSwitch(on, "switch")
        when = parseAt(at, self.config.location is not None)
        if once is not None and days not in (None, ""):
            raise AutomationError("--days", "give --days or --once, not both")
        schedule = Schedule(newId("s", self.taken), plug, target, when, parseDays(days),
                            parseDate(once) if once is not None else None, True, self.clock.seconds())
        if self._next(schedule, self._now()) is None:
            if once is not None:
                raise AutomationError("--once", f"{schedule.once} at {when.text()} is in the past")
            raise AutomationError("--at", f"the sun does not reach {when.kind} here within a year")
        if len(self.byPlug.get(plug, ())) >= self.config.max_schedules_per_plug:
            raise AutomationRefused("plug", f"{plug} has {self.config.max_schedules_per_plug} schedules, "
                                            "the most allowed")
        if len(self.byId) >= self.config.max_schedules:
            raise AutomationRefused("schedule", f"{len(self.byId)} schedules exist, the most allowed")
        self.put(schedule)
        self._save(schedule)
        self.arm(schedule)
        return self.view(schedule)

    def listing(self, plug: str | None = None) -> list[dict[str, Any]]:
        """Every schedule (of C{plug}, if given) as JSON, soonest next run first, unarmed ones last."""
        items = self.byPlug.get(plug, {}).values() if plug is not None else self.byId.values()
        shown = [self.view(s) for s in items]
        return sorted(shown, key=lambda v: (v["next_ts"] is None, v["next_ts"] or 0.0, v["id"]))

    def remove(self, scheduleId: Any) -> dict[str, Any]:
        """Remove a schedule; returns what it was."""
        schedule = self.get(scheduleId)
        shown = self.view(schedule)
        self._drop(schedule)
        self.store.delete(SCHEDULE, schedule.id, schedule.plug)
        return shown

    def setEnabled(self, scheduleId: Any, enabled: bool) -> dict[str, Any]:
        """Enable or disable a schedule; a one-off one in the past cannot be enabled again."""
        schedule = self.get(scheduleId)
        if enabled and schedule.once and self._next(schedule, self._now()) is None:
            raise AutomationRefused("id", f"schedule {schedule.id} was for {schedule.once.isoformat()}, in the past")
        if enabled != schedule.enabled:
            # Counted from now: runs missed while it was disabled are never caught up.
            schedule = replace(schedule, enabled=enabled, created=self.clock.seconds())
            self.put(schedule)
            self._save(schedule)
        self.arm(schedule)
        return self.view(schedule)

    def get(self, scheduleId: Any) -> Schedule:
        """The schedule with this id, or L{AutomationRefused} naming C{id}."""
        schedule = self.byId.get(scheduleId) if isinstance(scheduleId, str) else None
        if schedule is None:
            raise AutomationRefused("id", f"no schedule {str(scheduleId)[:20]!r}")
        return schedule

    def view(self, schedule: Schedule) -> dict[str, Any]:
        """A schedule's JSON, with its next run."""
        return views.scheduleJSON(schedule, self.nextTs(schedule.id), self.zone)

    def nextTs(self, scheduleId: str) -> float | None:
        """POSIX time of the schedule's next run, or None if it is not armed."""
        armed = self.calls.get(scheduleId)
        return armed[0] if armed else None

    def forgetPlug(self, plug: str) -> None:
        """Drop every schedule of C{plug} (the store is cleared by the caller)."""
        for schedule in list(self.byPlug.get(plug, {}).values()):
            self._drop(schedule)

    # -- the clock -------------------------------------------------------------------------------

    def put(self, schedule: Schedule) -> None:
        """Hold a schedule (new, loaded or changed), without arming it."""
        self.byId[schedule.id] = schedule
        self.byPlug[schedule.plug][schedule.id] = schedule

    def _drop(self, schedule: Schedule) -> None:
        """Stop holding a schedule and cancel its planned run."""
        self._unarm(schedule.id)
        self.byId.pop(schedule.id, None)
        mine = self.byPlug.get(schedule.plug, {})
        mine.pop(schedule.id, None)
        if not mine:
            self.byPlug.pop(schedule.plug, None)

    def _save(self, schedule: Schedule) -> None:
        """Queue the schedule's document for the store."""
        self.store.save(SCHEDULE, schedule.id, schedule.plug, schedule.toDoc())

    def _unarm(self, scheduleId: str) -> None:
        """Cancel the schedule's planned run, if any."""
        armed = self.calls.pop(scheduleId, None)
        if armed is not None and armed[1].active():
            armed[1].cancel()

    def arm(self, schedule: Schedule, after: float | None = None) -> None:
        """Plan the schedule's next run after C{after} (default now), if it is enabled and has one."""
        self._unarm(schedule.id)
        if not schedule.enabled:
            return
        now = self.clock.seconds()
        # After a long stall (a suspended host) runs further back than a minute are skipped, not replayed.
        moment = now if after is None else max(after, now - 60.0)
        nxt = self._next(schedule, datetime.fromtimestamp(moment, self.zone))
        if nxt is None:
            return
        ts = nxt.timestamp()
        self.calls[schedule.id] = (ts, self.clock.callLater(max(0.0, ts - now), self._run, schedule.id, ts))

    def armAll(self) -> None:
        """Arm every held schedule (at start-up, after L{catchUp})."""
        for schedule in list(self.byId.values()):
            self.arm(schedule)

    def stop(self) -> None:
        """Cancel every planned run."""
        for scheduleId in list(self.calls):
            self._unarm(scheduleId)

    def discard(self, scheduleId: str) -> None:
        """Stop holding a schedule without touching the store (another node changed it)."""
        schedule = self.byId.get(scheduleId)
        if schedule is not None:
            self._drop(schedule)

    def _run(self, scheduleId: str, ts: float) -> None:
        """Carry out the run planned for C{ts}: note it, switch, plan the next.

        For a plug connected to another node of a cluster the run is that node's: nothing is noted or
        switched here, so the node that takes the plug over later catches the run up if it was missed.
        """
        self.calls.pop(scheduleId, None)
        schedule = self.byId.get(scheduleId)
        if schedule is None or not schedule.enabled:
            return
        if self.elsewhere(schedule.plug) is not None:
            self.arm(schedule, after=ts)
            return
        schedule = schedule.ran(ts)
        self.put(schedule)
        self._save(schedule)
        self.apply(Intent(schedule.plug, schedule.on, f"schedule:{schedule.id}", ts, ts + self.config.catch_up))
        self.arm(schedule, after=ts)

    def catchUp(self, plug: str | None = None) -> list[Intent]:
        """Per plug (or for C{plug} only), the switch its most recent missed run asked for, if within the
        catch-up window.

        A run is missed if it came after the schedule's last run (or its creation) and not after now;
        every missed run is noted as done, and a missed one-off schedule is disabled.
        """
        now = self.clock.seconds()
        latest: dict[str, tuple[float, Schedule]] = {}
        for schedule in list(self.byId.values() if plug is None else self.byPlug.get(plug, {}).values()):
            if not schedule.enabled:
                continue
            before = previousRun(schedule, self._now(), zone=self.zone, location=self.config.location)
            since = max(schedule.created, schedule.last_run or schedule.created)
            if before is None or before.timestamp() <= since:
                continue
            ts = before.timestamp()
            schedule = schedule.ran(ts)
            self.put(schedule)
            self._save(schedule)
            if now - ts <= self.config.catch_up and ts > latest.get(schedule.plug, (-1.0, schedule))[0]:
                latest[schedule.plug] = (ts, schedule)
        return [Intent(s.plug, s.on, f"schedule:{s.id}", ts, ts + self.config.catch_up) for ts, s in latest.values()]
