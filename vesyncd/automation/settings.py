"""
The automation engine's settings: one frozen value with the daemon's zone and location, the catch-up
window, the polling budget and the bounds, plus the twistd option table the wiring adds for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Mapping

from vesyncd.automation.model import Location
from vesyncd.automation.parse import AutomationError

#: Options for the daemon's C{Options} (twistd form: long name, short name, default, help).  The time
#: zone is the storage package's C{--timezone}, shared so energy days and schedules agree.
optParameters: list[list[Any]] = [
    ["latitude", None, None, "Degrees north (south negative) of the plugs, for sunrise and sunset schedules."],
    ["longitude", None, None, "Degrees east (west negative) of the plugs, for sunrise and sunset schedules."],
    ["automation-catch-up", None, "3600",
     "Seconds after a schedule's time within which a run missed while the daemon was down is caught up."],
    ["automation-poll-interval", None, "5",
     "Seconds between power readings of a plug with an enabled power rule (at least 1)."],
    ["automation-max-polls", None, "20",
     "Power readings per second at most, over all plugs with power rules."],
]


@dataclass(frozen=True)
class AutomationConfig:
    """Where and when the engine runs, and how much it may do."""

    #: The local zone of schedules and away windows.
    zone: tzinfo
    #: Where sunrise and sunset are computed for; None refuses sun schedules.
    location: Location | None = None
    #: Seconds after a missed schedule run within which it is still carried out at start-up.
    catch_up: float = 3600.0
    #: Seconds between power readings of one plug with an enabled rule.
    poll_interval: float = 5.0
    #: Power readings per second at most, over all plugs.
    max_polls_per_second: float = 20.0
    max_schedules_per_plug: int = 64
    max_rules_per_plug: int = 16
    max_schedules: int = 20_000
    max_rules: int = 5_000
    #: Countdown timers (one per plug) and away windows (one per plug), each, at most.
    max_timers: int = 20_000
    #: Seconds a plug stays on, and off, per random step of away mode (shortest, longest).
    away_on: tuple[float, float] = (600.0, 3600.0)
    away_off: tuple[float, float] = (600.0, 3600.0)
    #: Seconds a done-rule's plug must draw more than the threshold before the rule counts it as running.
    done_running_after: float = 60.0
    #: Seconds before a switch that failed on an online plug is tried again (three tries in all).
    retry_delay: float = 30.0

    def __post_init__(self) -> None:
        """Refuse values the engine cannot run with, naming the option."""
        checks = {"--automation-catch-up": (self.catch_up, 0.0),
                  "--automation-poll-interval": (self.poll_interval, 1.0),
                  "--automation-max-polls": (self.max_polls_per_second, 0.1)}
        for name, (value, least) in checks.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < least:
                raise AutomationError(name, f"{value!r} must be a number of at least {least:g}")
        for low, high in (self.away_on, self.away_off):
            if not 0 < low <= high:
                raise AutomationError("away", "away durations must be positive, shortest first")

    @classmethod
    def fromOptions(cls, options: Mapping[str, Any], zone: tzinfo) -> "AutomationConfig":
        """The settings from parsed daemon options (strings or numbers) and the configured zone."""
        lat, lon = options.get("latitude"), options.get("longitude")
        if (lat is None) != (lon is None):
            raise AutomationError("--latitude" if lat is None else "--longitude",
                                  "give both --latitude and --longitude, or neither")
        location = None
        if lat is not None:
            location = Location(_number(lat, "--latitude"), _number(lon, "--longitude"))
        return cls(zone=zone, location=location,
                   catch_up=_number(options.get("automation-catch-up", 3600), "--automation-catch-up"),
                   poll_interval=_number(options.get("automation-poll-interval", 5), "--automation-poll-interval"),
                   max_polls_per_second=_number(options.get("automation-max-polls", 20), "--automation-max-polls"))


def _number(value: Any, field: str) -> float:
    """A finite number from an option value, or an error naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise AutomationError(field, f"{str(value)[:40]!r} is not a number")
    return number
