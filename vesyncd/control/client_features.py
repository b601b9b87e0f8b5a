"""
The client's automation and energy-insight calls, mixed into L{vesyncd.control.client.ControlClient};
each mirrors one command of L{vesyncd.control.automation_commands} or L{vesyncd.control.commands}.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.protocols import amp

from vesyncd.control import automation_commands as a
from vesyncd.control import commands as c


class FeatureClient:
    """Automation and insight calls; C{_call(command, key, **arguments)} is the client's one way to ask."""

    def _call(self, command: type[amp.Command], key: str | None, **kw: Any) -> Deferred:
        raise NotImplementedError  # pragma: no cover - ControlClient provides it

    def switchFor(self, plug: str, state: str, duration: str) -> Deferred:
        """Switch now and back after C{duration}: C{{"plug", "timer"}}."""
        return self._call(a.SwitchFor, None, plug=plug, state=state, duration=duration)

    def timer(self, plug: str) -> Deferred:
        """The plug's pending countdown, or None."""
        return self._call(a.GetTimer, "timer", plug=plug)

    def cancelTimer(self, plug: str) -> Deferred:
        """Cancel the countdown; False when there was none."""
        return self._call(a.CancelTimer, "cancelled", plug=plug)

    def addSchedule(self, plug: str, state: str, at: str, days: str | None = None,
                    once: str | None = None) -> Deferred:
        """Add a schedule; fires with its JSON."""
        optional = {k: v for k, v in (("days", days), ("once", once)) if v is not None}
        return self._call(a.AddSchedule, "schedule", plug=plug, state=state, at=at, **optional)

    def schedules(self, plug: str | None = None) -> Deferred:
        """C{{"schedules": [...], "total": N}} of every plug or one."""
        return self._call(a.ListSchedules, None, **({} if plug is None else {"plug": plug}))

    def removeSchedule(self, ident: str) -> Deferred:
        """Remove a schedule; fires with what it was."""
        return self._call(a.RemoveSchedule, "schedule", id=ident)

    def enableSchedule(self, ident: str, enabled: bool) -> Deferred:
        """Enable or disable a schedule."""
        return self._call(a.EnableSchedule, "schedule", id=ident, enabled=enabled)

    def setAway(self, plug: str, start: str, end: str) -> Deferred:
        """Start away mode; fires with its JSON."""
        return self._call(a.SetAway, "away", plug=plug, start=start, end=end)

    def awayOff(self, plug: str) -> Deferred:
        """Stop away mode; False when it was not on."""
        return self._call(a.AwayOff, "stopped", plug=plug)

    def addRule(self, plug: str, when: str, watts: str, duration: str, then: str | None = None) -> Deferred:
        """Add a power rule; fires with its JSON."""
        optional = {} if then is None else {"then": then}
        return self._call(a.AddRule, "rule", plug=plug, when=when, watts=watts, duration=duration, **optional)

    def rules(self, plug: str | None = None) -> Deferred:
        """C{{"rules": [...], "total": N}} of every plug or one."""
        return self._call(a.ListRules, None, **({} if plug is None else {"plug": plug}))

    def removeRule(self, ident: str) -> Deferred:
        """Remove a rule; fires with what it was."""
        return self._call(a.RemoveRule, "rule", id=ident)

    def enableRule(self, ident: str, enabled: bool) -> Deferred:
        """Enable or disable a rule."""
        return self._call(a.EnableRule, "rule", id=ident, enabled=enabled)

    def automation(self, plug: str) -> Deferred:
        """The plug's timer, schedules, rules, away window and next action."""
        return self._call(a.GetAutomation, "automation", plug=plug)

    def pricedEnergy(self, plug: str, period: str, value: str) -> Deferred:
        """One period of energy history with its cost."""
        return self._call(c.Energy, "history", plug=plug, period=period, value=value, cost=True)

    def energySummary(self, plug: str) -> Deferred:
        """C{{"periods", "baseline"}} of docs/energy.md."""
        return self._call(c.EnergySummary, None, plug=plug)

    def costTable(self, month: str | None = None) -> Deferred:
        """Every plug's energy and cost of a month (default: this month)."""
        return self._call(c.CostTable, "table", **({} if month is None else {"month": month}))

    def exportChunk(self, plug: str, start: date, end: date) -> Deferred:
        """Hourly CSV of local dates C{start} to C{end} (both included, at most L{c.MAX_EXPORT_DAYS})."""
        return self._call(c.Export, "csv", plug=plug, start=start.isoformat(), end=end.isoformat())

    @inlineCallbacks
    def export(self, plug: str, start: date, end: date) -> Any:
        """Hourly CSV of any range, asked for in pieces and joined under the first piece's header."""
        parts: list[str] = []
        first = start
        while first <= end:
            last = min(end, first + timedelta(days=c.MAX_EXPORT_DAYS - 1))
            piece = yield self.exportChunk(plug, first, last)
            lines = piece.splitlines(keepends=True)
            parts.extend(lines if not parts else lines[1:])
            first = last + timedelta(days=1)
        return "".join(parts)

    def switchHistory(self, plug: str, limit: int | None = None) -> Deferred:
        """The plug's latest relay changes with their causes, newest first."""
        return self._call(c.SwitchHistory, "switches", plug=plug, **({} if limit is None else {"limit": limit}))
