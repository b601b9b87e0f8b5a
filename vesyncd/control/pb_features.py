"""
The Perspective Broker methods of the automation and energy-insight requests, mixed into
L{vesyncd.control.pb.ControlPerspective}; each mirrors one AMP command and calls the shared core.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred


class FeaturePerspective:
    """Automation and insight methods of a logged-in PB client; C{core} is the L{ControlCore}."""

    core: Any

    def remote_switchFor(self, plug: str, state: str, duration: str) -> Deferred:
        """Switch now and back after C{duration}: C{{"plug", "timer"}}."""
        return self.core.switchFor(plug, state, duration)

    def remote_timer(self, plug: str) -> Deferred:
        """The pending countdown (None)."""
        return self.core.timer(plug)

    def remote_cancelTimer(self, plug: str) -> Deferred:
        """Cancel the countdown; False when there was none."""
        return self.core.cancelTimer(plug)

    def remote_addSchedule(self, plug: str, state: str, at: str, days: str | None = None,
                           once: str | None = None) -> Deferred:
        """Add a schedule."""
        return self.core.addSchedule(plug, state, at, days, once)

    def remote_schedules(self, plug: str | None = None) -> Deferred:
        """Schedules of every plug or one."""
        return self.core.schedules(plug)

    def remote_removeSchedule(self, ident: str) -> Deferred:
        """Remove a schedule."""
        return self.core.removeSchedule(ident)

    def remote_enableSchedule(self, ident: str, enabled: bool = True) -> Deferred:
        """Enable or disable a schedule."""
        return self.core.enableSchedule(ident, enabled)

    def remote_away(self, plug: str, start: str, end: str) -> Deferred:
        """Start away mode."""
        return self.core.setAway(plug, start, end)

    def remote_awayOff(self, plug: str) -> Deferred:
        """Stop away mode."""
        return self.core.awayOff(plug)

    def remote_addRule(self, plug: str, when: str, watts: str, duration: str, then: str | None = None) -> Deferred:
        """Add a power rule."""
        return self.core.addRule(plug, when, watts, duration, then)

    def remote_rules(self, plug: str | None = None) -> Deferred:
        """Rules of every plug or one."""
        return self.core.rules(plug)

    def remote_removeRule(self, ident: str) -> Deferred:
        """Remove a rule."""
        return self.core.removeRule(ident)

    def remote_enableRule(self, ident: str, enabled: bool = True) -> Deferred:
        """Enable or disable a rule."""
        return self.core.enableRule(ident, enabled)

    def remote_automation(self, plug: str) -> Deferred:
        """A plug's timer, schedules, rules, away window and next action."""
        return self.core.automationOf(plug)

    def remote_energySummary(self, plug: str) -> Deferred:
        """C{{"periods", "baseline"}}."""
        return self.core.energySummary(plug)

    def remote_costTable(self, month: str | None = None) -> Deferred:
        """Every plug's cost in a month."""
        return self.core.costTable(month)

    def remote_export(self, plug: str, start: str, end: str) -> Deferred:
        """Hourly CSV of a few days."""
        return self.core.export(plug, start, end)

    def remote_switchHistory(self, plug: str, limit: int | None = None) -> Deferred:
        """The latest relay changes with their causes."""
        return self.core.switchHistory(plug, limit)
