"""
Parsing what users type for automation (durations, times of day, sun times, days, dates, watts) into
plain values, with errors that name the option to fix.

Every error is an L{AutomationError} (a C{ValueError}) whose C{field} is the option as the user typed
it (C{"--for"}, C{"--at"}, C{"--days"}, ...).  Front ends map C{code} to their own answer:
C{"usage"} (bad input, C{vesyncctl} exit code 2) or C{"refused"} (well-formed but not allowed now,
e.g. a bound is reached or an id is unknown: exit code 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, time
from typing import Any

#: Longest countdown, rule duration or sun offset accepted, in seconds (7 days).
MAX_DURATION = 7 * 86400
#: Largest offset from sunrise or sunset, in seconds.
MAX_SUN_OFFSET = 6 * 3600
#: Highest power threshold a rule may name, in watts (a Voltson plug is rated for 10-16 A at 230 V).
MAX_WATTS = 4000.0

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SETS = {"daily": tuple(range(7)), "weekdays": tuple(range(5)), "weekends": (5, 6)}
SUN_EVENTS = ("sunrise", "sunset")

_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,7})m)?(?:(\d{1,9})s)?")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_SUN = re.compile(r"(sunrise|sunset)(?:([+-])(.+))?")


class AutomationError(ValueError):
    """Bad automation input; C{field} names the option (e.g. C{"--at"}) and the message says why."""

    code = "usage"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AutomationRefused(AutomationError):
    """Well-formed input the engine will not take now: a bound is reached or an id is unknown."""

    code = "refused"


def _shown(value: Any) -> str:
    """A user value quoted for an error message, cut short (it may come from the network)."""
    return repr(str(value)[:40])


def parseDuration(value: Any, field: str = "--for", maximum: int = MAX_DURATION) -> int:
    """Whole seconds from C{90}, C{"90"}, C{"90s"}, C{"30m"}, C{"1h30m"}, C{"2h"} or C{"1d"}, 1 to C{maximum}."""
    if isinstance(value, bool):
        raise AutomationError(field, f"{_shown(value)} is not a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value != int(value):
            raise AutomationError(field, f"{_shown(value)} is not a whole number of seconds")
        seconds = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit() and len(text) <= 9:
            seconds = int(text)
        else:
            match = _DURATION.fullmatch(text)
            if not text or match is None:
                raise AutomationError(field, f"{_shown(value)} is not a duration like 90s, 30m, 1h30m or 2h")
            d, h, m, s = (int(g or 0) for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + s
    else:
        raise AutomationError(field, f"{_shown(value)} is not a duration")
    if not 1 <= seconds <= maximum:
        raise AutomationError(field, f"{_shown(value)} must be between 1 s and {formatDuration(maximum)}")
    return seconds


def formatDuration(seconds: int) -> str:
    """The short form L{parseDuration} reads back: C{5400} -> C{"1h30m"}, C{0} -> C{"0s"}."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parseClock(value: Any, field: str) -> time:
    """A time of day from C{"HH:MM"} or C{"HH:MM:SS"} (24-hour clock)."""
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise AutomationError(field, f"{_shown(value)} is not a time like 07:30 or 07:30:15")
    h, m, s = (int(g or 0) for g in match.groups())
    if h > 23 or m > 59 or s > 59:
        raise AutomationError(field, f"{_shown(value)} is not a time of day (00:00 to 23:59:59)")
    return time(h, m, s)


def formatClock(value: time) -> str:
    """A time of day as C{"HH:MM:SS"}."""
    return value.strftime("%H:%M:%S")


@dataclass(frozen=True)
class At:
    """When in a day a schedule runs: a local clock time, or a sun event plus an offset in seconds."""

    #: C{"time"}, C{"sunrise"} or C{"sunset"}.
    kind: str
    #: The local time of day (for C{"time"} only).
    clock: time | None = None
    #: Seconds after (positive) or before (negative) the sun event (for sun times only).
    offset: int = 0

    def text(self) -> str:
        """The canonical form L{parseAt} reads back: C{"07:30:00"}, C{"sunset"}, C{"sunrise-30m"}."""
        if self.kind == "time":
            assert self.clock is not None
            return formatClock(self.clock)
        if not self.offset:
            return self.kind
        return f"{self.kind}{'+' if self.offset > 0 else '-'}{formatDuration(abs(self.offset))}"


def parseAt(value: Any, hasLocation: bool, field: str = "--at") -> At:
    """A schedule time from C{"HH:MM[:SS]"}, C{"sunrise"}, C{"sunset+30m"}, C{"sunrise-01:15"} ...

    Sun times need a configured location: without one (C{hasLocation} false) they are an error
    naming C{field}.  Offsets are durations (C{30m}) or C{HH:MM}, at most 6 hours.
    """
    text = value.strip().lower() if isinstance(value, str) else value
    match = _SUN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return At("time", clock=parseClock(value, field))
    if not hasLocation:
        raise AutomationError(field, f"{match.group(1)} needs the daemon's location: start it with "
                                     "--latitude and --longitude")
    offset = 0
    if match.group(2):
        raw = match.group(3)
        if _CLOCK.fullmatch(raw):
            clock = parseClock(raw, field)
            offset = clock.hour * 3600 + clock.minute * 60 + clock.second
        else:
            offset = parseDuration(raw, field, maximum=MAX_SUN_OFFSET)
        if offset > MAX_SUN_OFFSET:
            raise AutomationError(field, f"offset {_shown(raw)} is more than {formatDuration(MAX_SUN_OFFSET)}")
        if match.group(2) == "-":
            offset = -offset
    return At(match.group(1), offset=offset)


def parseDays(value: Any, field: str = "--days") -> tuple[int, ...]:
    """Weekdays (Monday 0 ... Sunday 6) from C{"mon,wed"}, C{"mon-fri"}, C{"weekdays"}, C{"weekends"},
    C{"daily"}; None or an empty string means daily."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DAY_SETS["daily"]
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str) or len(value) > 100:
        raise AutomationError(field, f"{_shown(value)} is not a list of days")
    days: set[int] = set()
    for part in value.lower().replace(" ", "").split(","):
        if part in DAY_SETS:
            days.update(DAY_SETS[part])
        elif "-" in part and all(p in DAY_NAMES for p in part.split("-", 1)):
            first, last = (DAY_NAMES.index(p) for p in part.split("-", 1))
            days.update(d % 7 for d in range(first, last + (7 if last < first else 0) + 1))
        elif part in DAY_NAMES:
            days.add(DAY_NAMES.index(part))
        else:
            raise AutomationError(field, f"{_shown(part)} is not a day: use mon,tue,wed,thu,fri,sat,sun, "
                                         "a range like mon-fri, weekdays, weekends or daily")
    return tuple(sorted(days))


def formatDays(days: tuple[int, ...]) -> list[str]:
    """Weekday numbers as names: C{(0, 1)} -> C{["mon", "tue"]}."""
    return [DAY_NAMES[d] for d in days]


def parseDate(value: Any, field: str = "--once") -> date:
    """A calendar date from C{"YYYY-MM-DD"}."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise AutomationError(field, f"{_shown(value)} is not a date like 2026-12-24")
    try:
        return date.fromisoformat(value.strip())
    except ValueError as e:
        raise AutomationError(field, f"{_shown(value)} is not a date: {e}") from None


def parseSwitch(value: Any, field: str = "action") -> bool:
    """C{True} for C{"on"}/C{True}, C{False} for C{"off"}/C{False}."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    raise AutomationError(field, f"{_shown(value)} is not on or off")


def parseWatts(value: Any, field: str) -> float:
    """A power threshold in watts, above 0 and at most L{MAX_WATTS}."""
    try:
        watts = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        watts = math.nan
    if not (0 < watts <= MAX_WATTS):
        raise AutomationError(field, f"{_shown(value)} is not a power in watts (above 0, at most {MAX_WATTS:g})")
    return watts
