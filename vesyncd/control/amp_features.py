"""
The AMP responders of the automation and energy-insight commands, mixed into
L{vesyncd.control.amp.Responders}; each calls the shared core and wraps its answer in the command's
response keys.  Lists are cut (halving) to what fits one AMP value, with the full count beside them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp

from vesyncd.control import automation_commands as a
from vesyncd.control import commands as c


def fitJSON(items: list[Any]) -> list[Any]:
    """The longest head of C{items} (halving) whose JSON fits one AMP value."""
    while items and len(c.JSON().toString(items)) > c.MAX_VALUE:
        items = items[: len(items) // 2]
    return items


def _key(name: str) -> Any:
    """A callback answering C{{name: result}}."""
    return lambda result: {name: result}


def _listed(name: str) -> Any:
    """A callback answering C{{name: fitted list, "total": its full length}}."""
    return lambda items: {name: fitJSON(list(items)), "total": len(items)}


class FeatureResponders(amp.CommandLocator):
    """Responders for automation and insight; C{core} is the logged-in connection's L{ControlCore}."""

    core: Any

    @a.SwitchFor.responder
    def switchFor(self, plug: str, state: str, duration: str) -> Deferred:
        """Switch now and back later."""
        return self.core.switchFor(plug, state, duration)

    @a.GetTimer.responder
    def getTimer(self, plug: str) -> Deferred:
        """The pending countdown."""
        return self.core.timer(plug).addCallback(_key("timer"))

    @a.CancelTimer.responder
    def cancelTimer(self, plug: str) -> Deferred:
        """Cancel the countdown."""
        return self.core.cancelTimer(plug).addCallback(_key("cancelled"))

    @a.AddSchedule.responder
    def addSchedule(self, plug: str, state: str, at: str, days: str | None = None,
                    once: str | None = None) -> Deferred:
        """Add a schedule."""
        return self.core.addSchedule(plug, state, at, days, once).addCallback(_key("schedule"))

    @a.ListSchedules.responder
    def listSchedules(self, plug: str | None = None) -> Deferred:
        """Schedules, cut to fit."""
        return self.core.schedules(plug).addCallback(_listed("schedules"))

    @a.RemoveSchedule.responder
    def removeSchedule(self, id: str) -> Deferred:
        """Remove a schedule."""
        return self.core.removeSchedule(id).addCallback(_key("schedule"))

    @a.EnableSchedule.responder
    def enableSchedule(self, id: str, enabled: bool) -> Deferred:
        """Enable or disable a schedule."""
        return self.core.enableSchedule(id, enabled).addCallback(_key("schedule"))

    @a.SetAway.responder
    def setAway(self, plug: str, start: str, end: str) -> Deferred:
        """Start away mode."""
        return self.core.setAway(plug, start, end).addCallback(_key("away"))

    @a.AwayOff.responder
    def awayOff(self, plug: str) -> Deferred:
        """Stop away mode."""
        return self.core.awayOff(plug).addCallback(_key("stopped"))

    @a.AddRule.responder
    def addRule(self, plug: str, when: str, watts: str, duration: str, then: str | None = None) -> Deferred:
        """Add a power rule."""
        return self.core.addRule(plug, when, watts, duration, then).addCallback(_key("rule"))

    @a.ListRules.responder
    def listRules(self, plug: str | None = None) -> Deferred:
        """Rules, cut to fit."""
        return self.core.rules(plug).addCallback(_listed("rules"))

    @a.RemoveRule.responder
    def removeRule(self, id: str) -> Deferred:
        """Remove a rule."""
        return self.core.removeRule(id).addCallback(_key("rule"))

    @a.EnableRule.responder
    def enableRule(self, id: str, enabled: bool) -> Deferred:
        """Enable or disable a rule."""
        return self.core.enableRule(id, enabled).addCallback(_key("rule"))

    @a.GetAutomation.responder
    def getAutomation(self, plug: str) -> Deferred:
        """A plug's automation (its schedule and rule lists are bounded per plug: 64 and 16)."""
        return self.core.automationOf(plug).addCallback(_key("automation"))

    @c.EnergySummary.responder
    def energySummary(self, plug: str) -> Deferred:
        """Period totals and the baseline."""
        return self.core.energySummary(plug)

    @c.CostTable.responder
    def costTable(self, month: str | None = None) -> Deferred:
        """The per-plug cost table (its plug list cut to fit)."""

        def fit(table: dict[str, Any]) -> dict[str, Any]:
            table = dict(table)
            table["plugs"] = fitJSON(list(table.get("plugs") or []))
            return {"table": table}

        return self.core.costTable(month).addCallback(fit)

    @c.Export.responder
    def export(self, plug: str, start: str, end: str) -> Deferred:
        """Hourly CSV of a few days."""
        return self.core.export(plug, start, end).addCallback(_key("csv"))

    @c.SwitchHistory.responder
    def switchHistory(self, plug: str, limit: int | None = None) -> Deferred:
        """The latest relay changes with their causes."""
        return self.core.switchHistory(plug, limit).addCallback(lambda items: {"switches": fitJSON(list(items))})
