"""
The control protocol's automation commands: countdown timers, schedules, away mode and power rules.

User text (durations, times, days, dates, watts) travels unchanged and the daemon's automation engine
parses it, so every client gets the same errors: L{c.UsageError} naming the option to fix (e.g.
C{"--at: ..."}) or L{c.Refused} (a bound is reached, an id is unknown).  Results are the engine's JSON
(docs/automation.md); lists are cut to what fits one AMP value.
"""

from __future__ import annotations

from twisted.protocols import amp

from vesyncd.control.commands import JSON, ControlCommand


class SwitchFor(ControlCommand):
    """Switch a plug C{on}, C{off} or C{toggle} now and back after C{duration} (e.g. C{30m}); answers the
    plug's confirmed state and the countdown timer."""

    arguments = [(b"plug", amp.Unicode()), (b"state", amp.Unicode()), (b"duration", amp.Unicode())]
    response = [(b"plug", JSON()), (b"timer", JSON())]


class GetTimer(ControlCommand):
    """A plug's countdown timer (JSON null when none is pending)."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"timer", JSON())]


class CancelTimer(ControlCommand):
    """Cancel a plug's countdown timer; C{cancelled} is false when there was none."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"cancelled", amp.Boolean())]


class AddSchedule(ControlCommand):
    """Switch a plug C{on} or C{off} at C{at} (C{HH:MM[:SS]}, C{sunrise[+-OFFSET]}, C{sunset[...]}) on
    C{days} (C{mon,tue}, C{weekdays}, ...) or C{once} on a date; answers the schedule."""

    arguments = [(b"plug", amp.Unicode()), (b"state", amp.Unicode()), (b"at", amp.Unicode()),
                 (b"days", amp.Unicode(optional=True)), (b"once", amp.Unicode(optional=True))]
    response = [(b"schedule", JSON())]


class ListSchedules(ControlCommand):
    """Every schedule (or one plug's), soonest first; C{total} counts those left out to fit."""

    arguments = [(b"plug", amp.Unicode(optional=True))]
    response = [(b"schedules", JSON()), (b"total", amp.Integer())]


class RemoveSchedule(ControlCommand):
    """Remove a schedule by id; answers what it was."""

    arguments = [(b"id", amp.Unicode())]
    response = [(b"schedule", JSON())]


class EnableSchedule(ControlCommand):
    """Enable (C{enabled} true) or disable a schedule by id; answers the schedule."""

    arguments = [(b"id", amp.Unicode()), (b"enabled", amp.Boolean())]
    response = [(b"schedule", JSON())]


class SetAway(ControlCommand):
    """Away mode: switch the plug on and off at random between C{start} and C{end} (C{HH:MM}) each day."""

    arguments = [(b"plug", amp.Unicode()), (b"start", amp.Unicode()), (b"end", amp.Unicode())]
    response = [(b"away", JSON())]


class AwayOff(ControlCommand):
    """Stop a plug's away mode; C{stopped} is false when it was not on."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"stopped", amp.Boolean())]


class AddRule(ControlCommand):
    """A power rule: C{when} is C{above}, C{below} or C{done_below}, C{watts} and C{duration} as the
    user typed them, C{then} C{off}, C{on} or C{notify} (default: off; notify for done_below)."""

    arguments = [(b"plug", amp.Unicode()), (b"when", amp.Unicode()), (b"watts", amp.Unicode()),
                 (b"duration", amp.Unicode()), (b"then", amp.Unicode(optional=True))]
    response = [(b"rule", JSON())]


class ListRules(ControlCommand):
    """Every rule (or one plug's) in the order they were added; C{total} counts those left out to fit."""

    arguments = [(b"plug", amp.Unicode(optional=True))]
    response = [(b"rules", JSON()), (b"total", amp.Integer())]


class RemoveRule(ControlCommand):
    """Remove a rule by id; answers what it was."""

    arguments = [(b"id", amp.Unicode())]
    response = [(b"rule", JSON())]


class EnableRule(ControlCommand):
    """Enable or disable a rule by id; answers the rule."""

    arguments = [(b"id", amp.Unicode()), (b"enabled", amp.Boolean())]
    response = [(b"rule", JSON())]


class GetAutomation(ControlCommand):
    """A plug's timer, schedules, rules, away window and next action (the engine's C{describe})."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"automation", JSON())]
