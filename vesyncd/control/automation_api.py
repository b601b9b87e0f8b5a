"""
The control plane's automation requests (countdowns, schedules, away mode, power rules), a part of
L{vesyncd.control.api.ControlCore}.

Plug references are resolved with the hub first (so an unknown plug is the usual C{UnknownPlug}); the
user's text goes to the automation engine unchanged, which parses it and raises errors naming the
option (mapped to L{c.UsageError} / L{c.Refused} by the core).  A daemon built without automation
answers every request with L{c.Refused}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from vesyncd.control import commands as c
from vesyncd.control.validate import optionalText, text

#: The rule kinds a client may name, and the engine keyword each becomes.
RULE_KINDS = {"above": "above", "below": "below", "done_below": "doneBelow", "done-below": "doneBelow"}


class AutomationRequests:
    """Automation requests over C{self.automation} (an C{AutomationEngine} or None) and C{self.hub}."""

    automation: Any
    hub: Any
    _call: Callable[..., Deferred]
    plugJSON: Callable[[Any], dict[str, Any]]

    def engine(self) -> Any:
        """The automation engine; L{c.Refused} when the daemon runs without one."""
        if self.automation is None:
            raise c.Refused("automation: this vesyncd runs without automation")
        return self.automation

    def plugId(self, ref: Any) -> str:
        """The id of the plug a client named (id, unique prefix or alias)."""
        return self.hub.resolve(text(ref, "plug")).id

    # -- countdowns ------------------------------------------------------------------------------

    def switchFor(self, ref: str, state: str, duration: str) -> Deferred:
        """Switch C{on}, C{off} or C{toggle} now and back after C{duration}: C{{"plug", "timer"}}."""

        def go() -> Deferred:
            engine = self.engine()
            plug = self.hub.resolve(text(ref, "plug"))
            if state not in ("on", "off", "toggle"):
                raise c.InvalidArgument("state must be on, off or toggle")
            on = (plug.relay is not True) if state == "toggle" else state == "on"
            d = engine.switchFor(plug.id, on, text(duration, "--for", 32))
            return d.addCallback(lambda timer: {"plug": self.plugJSON(self.hub.get(plug.id)), "timer": timer})

        return self._call(go)

    def timer(self, ref: str) -> Deferred:
        """A plug's pending countdown (None when there is none)."""
        return self._call(lambda: self.engine().timer(self.plugId(ref)))

    def cancelTimer(self, ref: str) -> Deferred:
        """Cancel a plug's countdown; fires with False when there was none."""
        return self._call(lambda: bool(self.engine().cancelTimer(self.plugId(ref))))

    # -- schedules -------------------------------------------------------------------------------

    def addSchedule(self, ref: str, state: str, at: str, days: str | None = None,
                    once: str | None = None) -> Deferred:
        """Add a schedule; fires with its JSON."""

        def go() -> dict[str, Any]:
            return self.engine().addSchedule(self.plugId(ref), text(state, "switch", 8), text(at, "--at", 64),
                                             optionalText(days, "--days", 64), optionalText(once, "--once", 16))

        return self._call(go)

    def schedules(self, ref: str | None = None) -> Deferred:
        """Every schedule, or one plug's."""
        return self._call(lambda: self.engine().schedulesOf(self.plugId(ref) if ref else None))

    def removeSchedule(self, ident: str) -> Deferred:
        """Remove a schedule; fires with what it was."""
        return self._call(lambda: self.engine().removeSchedule(text(ident, "id", 32)))

    def enableSchedule(self, ident: str, enabled: bool) -> Deferred:
        """Enable or disable a schedule; fires with its JSON."""

        def go() -> dict[str, Any]:
            engine = self.engine()
            change = engine.enableSchedule if enabled else engine.disableSchedule
            return change(text(ident, "id", 32))

        return self._call(go)

    # -- away mode -------------------------------------------------------------------------------

    def setAway(self, ref: str, start: str, end: str) -> Deferred:
        """Away mode between two times of day; fires with its JSON."""
        return self._call(lambda: self.engine().away(self.plugId(ref), text(start, "--from", 16),
                                                     text(end, "--to", 16)))

    def awayOff(self, ref: str) -> Deferred:
        """Stop away mode; fires with False when it was not on."""
        return self._call(lambda: bool(self.engine().awayOff(self.plugId(ref))))

    # -- power rules -----------------------------------------------------------------------------

    def addRule(self, ref: str, when: str, watts: str, duration: str, then: str | None = None) -> Deferred:
        """Add a power rule (C{when} above, below or done_below); fires with its JSON."""

        def go() -> dict[str, Any]:
            keyword = RULE_KINDS.get(when) if isinstance(when, str) else None
            if keyword is None:
                raise c.UsageError("when: a rule is --above, --below or --done-below")
            engine = self.engine()
            return engine.addRule(self.plugId(ref), **{keyword: text(watts, f"--{when.replace('_', '-')}", 32)},
                                  duration=text(duration, "--for", 32), then=optionalText(then, "--then", 16))

        return self._call(go)

    def rules(self, ref: str | None = None) -> Deferred:
        """Every rule, or one plug's."""
        return self._call(lambda: self.engine().rulesOf(self.plugId(ref) if ref else None))

    def removeRule(self, ident: str) -> Deferred:
        """Remove a rule; fires with what it was."""
        return self._call(lambda: self.engine().removeRule(text(ident, "id", 32)))

    def enableRule(self, ident: str, enabled: bool) -> Deferred:
        """Enable or disable a rule; fires with its JSON."""

        def go() -> dict[str, Any]:
            engine = self.engine()
            change = engine.enableRule if enabled else engine.disableRule
            return change(text(ident, "id", 32))

        return self._call(go)

    def automationOf(self, ref: str) -> Deferred:
        """A plug's timer, schedules, rules, away window and next action (the engine's C{describe})."""
        return self._call(lambda: self.engine().describe(self.plugId(ref)))
