"""Tests for parsing automation input: durations, times, sun times, days, dates, watts and settings."""

from __future__ import annotations

from datetime import date, time

import pytest

from vesyncd.automation.model import Location, Rule, Schedule, Timer
from vesyncd.automation.parse import (At, AutomationError, AutomationRefused, formatDuration, parseAt, parseClock,
                                      parseDate, parseDays, parseDuration, parseSwitch, parseWatts)
from vesyncd.automation.settings import AutomationConfig
from tests.automation_helpers import BERLIN


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2h", 7200), ("1d", 86400),
                                           ("90", 90), (1800, 1800), (" 45S ", 45), ("1h0m5s", 3605)])
def test_duration_forms(text: object, seconds: int) -> None:
    """Each accepted duration form gives its number of seconds."""
    assert parseDuration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1x", "h", "-5m", "0s", 0, "8d", 1.5, True, None, "1m1h", "3 m"])
def test_bad_durations_name_the_field(text: object) -> None:
    """A bad, zero or over-long duration is a usage error naming the option given."""
    with pytest.raises(AutomationError) as e:
        parseDuration(text, "--for")
    assert e.value.field == "--for"
    assert e.value.code == "usage"
    assert str(e.value).startswith("--for: ")


def test_duration_bound_is_seven_days() -> None:
    """Seven days is the longest duration; one second more is refused."""
    assert parseDuration("7d") == 7 * 86400
    with pytest.raises(AutomationError):
        parseDuration(7 * 86400 + 1)


@pytest.mark.parametrize("seconds, text", [(5400, "1h30m"), (90, "1m30s"), (0, "0s"), (86400 + 1, "1d1s")])
def test_duration_round_trip(seconds: int, text: str) -> None:
    """formatDuration writes what parseDuration reads back."""
    assert formatDuration(seconds) == text
    if seconds:
        assert parseDuration(text) == seconds


def test_clock_times() -> None:
    """HH:MM and HH:MM:SS are read; impossible times name the field."""
    assert parseClock("7:05", "--at") == time(7, 5)
    assert parseClock("23:59:59", "--at") == time(23, 59, 59)
    for bad in ("24:00", "12:60", "12:00:60", "noon", "12", None):
        with pytest.raises(AutomationError) as e:
            parseClock(bad, "--from")
        assert e.value.field == "--from"


def test_at_forms() -> None:
    """--at takes clock times and sun times with signed offsets, and writes them back canonically."""
    assert parseAt("07:30", False) == At("time", clock=time(7, 30))
    assert parseAt("sunrise", True) == At("sunrise")
    assert parseAt("sunset-30m", True) == At("sunset", offset=-1800)
    assert parseAt("Sunrise+01:15", True) == At("sunrise", offset=4500)
    assert parseAt("sunset+1h30m", True).text() == "sunset+1h30m"
    assert parseAt("07:30", False).text() == "07:30:00"


def test_sun_times_need_a_location() -> None:
    """A sun time without a configured location is an error naming --at that says how to fix it."""
    with pytest.raises(AutomationError) as e:
        parseAt("sunset", False)
    assert e.value.field == "--at"
    assert "--latitude" in e.value.message


@pytest.mark.parametrize("text", ["sunset+7h", "sunrise+", "sunrise*5", "moonrise", "25:00"])
def test_bad_at_names_the_field(text: str) -> None:
    """Malformed or too-far sun offsets and bad times are errors naming --at."""
    with pytest.raises(AutomationError) as e:
        parseAt(text, True)
    assert e.value.field == "--at"


def test_days() -> None:
    """Day names, ranges and the three sets give weekday numbers (Monday 0); nothing means daily."""
    assert parseDays("mon,wed") == (0, 2)
    assert parseDays("weekdays") == (0, 1, 2, 3, 4)
    assert parseDays("weekends") == (5, 6)
    assert parseDays("daily") == parseDays(None) == tuple(range(7))
    assert parseDays("fri-mon") == (0, 4, 5, 6)
    assert parseDays("SAT, sun") == (5, 6)
    with pytest.raises(AutomationError) as e:
        parseDays("mon,funday")
    assert e.value.field == "--days" and "funday" in e.value.message


def test_dates_and_switches_and_watts() -> None:
    """--once dates, on/off and watt thresholds are read, and bad ones name their field."""
    assert parseDate("2026-12-24") == date(2026, 12, 24)
    for bad, field in (("2026-02-30", "--once"), ("24.12.2026", "--once")):
        with pytest.raises(AutomationError) as e:
            parseDate(bad)
        assert e.value.field == field
    assert parseSwitch("ON") is True and parseSwitch(False) is False
    with pytest.raises(AutomationError):
        parseSwitch("toggle")
    assert parseWatts("5", "--below") == 5.0
    for bad in ("0", "-3", "nan", "inf", "abc", True, "5000"):
        with pytest.raises(AutomationError) as e:
            parseWatts(bad, "--above")
        assert e.value.field == "--above"


def test_refused_is_an_automation_error() -> None:
    """A refusal is an AutomationError (and a ValueError) with its own code for exit status 1."""
    refused = AutomationRefused("plug", "too many")
    assert isinstance(refused, ValueError) and refused.code == "refused"


def test_stored_documents_round_trip() -> None:
    """Each item's stored document reads back as the same item."""
    timer = Timer("p1", True, 1000.5, 900.0)
    assert Timer.fromDoc("p1", timer.toDoc()) == timer
    schedule = Schedule("s1", "p1", False, parseAt("sunset-15m", True), (0, 4), None, False, 10.0, 20.0)
    assert Schedule.fromDoc("s1", "p1", schedule.toDoc()) == schedule
    once = Schedule("s2", "p1", True, parseAt("06:00", False), tuple(range(7)), date(2027, 1, 1))
    assert Schedule.fromDoc("s2", "p1", once.toDoc()) == once
    rule = Rule("r1", "p1", "done_below", 5.0, 180, "notify")
    assert Rule.fromDoc("r1", "p1", rule.toDoc()) == rule
    with pytest.raises(AutomationError):
        Rule("r2", "p1", "sideways", 5.0, 180, "notify")


def test_settings_from_options() -> None:
    """Daemon options give the settings; half a location or a bad number names the option."""
    config = AutomationConfig.fromOptions({"latitude": "52.52", "longitude": "13.405", "automation-catch-up": "600"},
                                          BERLIN)
    assert config.location == Location(52.52, 13.405) and config.catch_up == 600
    assert AutomationConfig.fromOptions({}, BERLIN).location is None
    cases = [({"latitude": "52"}, "--longitude"), ({"latitude": "95", "longitude": "0"}, "--latitude"),
             ({"automation-max-polls": "0"}, "--automation-max-polls"),
             ({"automation-poll-interval": "0.2"}, "--automation-poll-interval"),
             ({"automation-catch-up": "soon"}, "--automation-catch-up")]
    for options, field in cases:
        with pytest.raises(AutomationError) as e:
            AutomationConfig.fromOptions(options, BERLIN)
        assert e.value.field == field, options


def test_damaged_documents_are_refused() -> None:
    """A stored document with a non-finite or missing time, or a bad field, is refused, not run."""
    for doc in ({"switch": "on", "due": float("nan")}, {"switch": "on"}, {"switch": "maybe", "due": 5.0},
                {"switch": "on", "due": "soon"}):
        with pytest.raises(AutomationError):
            Timer.fromDoc("p1", doc)
    with pytest.raises(AutomationError):
        Schedule.fromDoc("s1", "p1", {"switch": "on", "at": "07:00", "last_run": float("inf")})
