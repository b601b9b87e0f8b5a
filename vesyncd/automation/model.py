"""
The automation items as values: a countdown L{Timer}, a L{Schedule}, an L{Away} window and a power
L{Rule}, each with the JSON document it is stored as (C{toDoc}/C{fromDoc}).

A stored document is read back through the same parsers as user input, so a damaged row is refused
with an L{AutomationError} instead of running something nobody asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, time
from typing import Any

from vesyncd.automation.parse import (At, AutomationError, formatClock, formatDays, parseAt, parseClock,
                                      parseDate, parseDays, parseDuration, parseSwitch, parseWatts)

#: Store kinds, the first part of every stored item's key.
TIMER = "timer"
SCHEDULE = "schedule"
AWAY = "away"
RULE = "rule"
KINDS = (TIMER, SCHEDULE, AWAY, RULE)

#: What a rule watches for.
ABOVE = "above"
BELOW = "below"
DONE_BELOW = "done_below"
RULE_WHEN = (ABOVE, BELOW, DONE_BELOW)
#: What a rule does when it fires.
RULE_THEN = ("off", "on", "notify")


@dataclass(frozen=True)
class Location:
    """Where the daemon is, for sunrise and sunset: degrees north and east (south and west negative)."""

    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not -90 <= self.latitude <= 90:
            raise AutomationError("--latitude", f"{self.latitude!r} is not between -90 and 90")
        if not -180 <= self.longitude <= 180:
            raise AutomationError("--longitude", f"{self.longitude!r} is not between -180 and 180")


def _time(value: Any, field: str) -> float:
    """A stored POSIX time, refused unless it is a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AutomationError(field, f"{str(value)[:40]!r} is not a time")
    return float(value)


def _switchText(on: bool) -> str:
    """C{"on"} or C{"off"}."""
    return "on" if on else "off"


@dataclass(frozen=True)
class Timer:
    """Switch C{plug} to C{on} at POSIX time C{due} (one per plug)."""

    plug: str
    on: bool
    due: float
    created: float

    def toDoc(self) -> dict[str, Any]:
        """The stored JSON document."""
        return {"switch": _switchText(self.on), "due": self.due, "created": self.created}

    @classmethod
    def fromDoc(cls, plug: str, doc: dict[str, Any]) -> "Timer":
        """The timer a stored document describes."""
        return cls(plug, parseSwitch(doc.get("switch")), _time(doc.get("due"), "due"),
                   _time(doc.get("created", 0.0), "created"))


@dataclass(frozen=True)
class Schedule:
    """Switch C{plug} to C{on} at C{at} on C{days} (or only on the date C{once}) in the local zone."""

    id: str
    plug: str
    on: bool
    at: At
    days: tuple[int, ...] = tuple(range(7))
    once: date | None = None
    enabled: bool = True
    created: float = 0.0
    #: POSIX time of the last run the engine carried out (or caught up), None before the first.
    last_run: float | None = None

    def toDoc(self) -> dict[str, Any]:
        """The stored JSON document."""
        return {"switch": _switchText(self.on), "at": self.at.text(), "days": formatDays(self.days),
                "once": self.once.isoformat() if self.once else None, "enabled": self.enabled,
                "created": self.created, "last_run": self.last_run}

    @classmethod
    def fromDoc(cls, id: str, plug: str, doc: dict[str, Any]) -> "Schedule":
        """The schedule a stored document describes (sun times are read even without a location)."""
        once = doc.get("once")
        return cls(id, plug, parseSwitch(doc.get("switch")), parseAt(doc.get("at"), hasLocation=True),
                   parseDays(doc.get("days")), parseDate(once) if once else None, bool(doc.get("enabled", True)),
                   _time(doc.get("created", 0.0), "created"),
                   _time(doc["last_run"], "last_run") if doc.get("last_run") is not None else None)

    def ran(self, at: float) -> "Schedule":
        """This schedule after a run at C{at}: a one-off one is disabled."""
        return replace(self, last_run=at, enabled=self.enabled and self.once is None)


@dataclass(frozen=True)
class Away:
    """Switch C{plug} on and off at random each day between C{start} and C{end} (may cross midnight)."""

    plug: str
    start: time
    end: time
    created: float = 0.0

    def toDoc(self) -> dict[str, Any]:
        """The stored JSON document."""
        return {"from": formatClock(self.start), "to": formatClock(self.end), "created": self.created}

    @classmethod
    def fromDoc(cls, plug: str, doc: dict[str, Any]) -> "Away":
        """The away window a stored document describes."""
        return cls(plug, parseClock(doc.get("from"), "--from"), parseClock(doc.get("to"), "--to"),
                   _time(doc.get("created", 0.0), "created"))


@dataclass(frozen=True)
class Rule:
    """When C{plug}'s power is above/below C{watts} for C{seconds}, do C{then} (C{off}, C{on}, C{notify})."""

    id: str
    plug: str
    when: str
    watts: float
    seconds: int
    then: str
    enabled: bool = True
    created: float = 0.0

    def __post_init__(self) -> None:
        if self.when not in RULE_WHEN:
            raise AutomationError("when", f"{self.when[:20]!r} is not one of {', '.join(RULE_WHEN)}")
        if self.then not in RULE_THEN:
            raise AutomationError("--then", f"{str(self.then)[:20]!r} is not one of {', '.join(RULE_THEN)}")

    def toDoc(self) -> dict[str, Any]:
        """The stored JSON document."""
        return {"when": self.when, "watts": self.watts, "for": self.seconds, "then": self.then,
                "enabled": self.enabled, "created": self.created}

    @classmethod
    def fromDoc(cls, id: str, plug: str, doc: dict[str, Any]) -> "Rule":
        """The rule a stored document describes."""
        return cls(id, plug, str(doc.get("when")), parseWatts(doc.get("watts"), "watts"),
                   parseDuration(doc.get("for"), "--for"), str(doc.get("then")), bool(doc.get("enabled", True)),
                   _time(doc.get("created", 0.0), "created"))
