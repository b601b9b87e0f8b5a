"""Tests for the pure timing functions: local times across DST, next and previous runs, sun times, away windows."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from vesyncd.automation.model import Location, Schedule
from vesyncd.automation.parse import parseAt, parseDays
from vesyncd.automation.timing import awayWindow, nextRun, previousRun, resolveLocal, sunTime
from tests.automation_helpers import BERLIN, LONDON, NEW_YORK

LONDON_AT = Location(51.5074, -0.1278)
NEW_YORK_AT = Location(40.7128, -74.0060)


def daily(at: str, days: str | None = None, once: date | None = None, on: bool = True) -> Schedule:
    """A schedule at C{at} (sun times allowed)."""
    return Schedule("s1", "p1", on, parseAt(at, True), parseDays(days), once)


def runs(schedule: Schedule, start: datetime, count: int, location: Location | None = None) -> list[datetime]:
    """The next C{count} runs after C{start}, each computed from the one before."""
    out, after = [], start
    for _ in range(count):
        after = nextRun(schedule, after, location=location)
        assert after is not None
        out.append(after)
    return out


def utc(dt: datetime) -> datetime:
    """The same moment in UTC."""
    return dt.astimezone(timezone.utc)


def test_berlin_spring_forward_runs_once_at_three() -> None:
    """On 2026-03-29 Berlin skips 02:00-03:00: a 02:30 schedule runs once, at 03:00 CEST (01:00 UTC)."""
    got = runs(daily("02:30"), datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)
    assert [utc(g) for g in got] == [datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc),
                                     datetime(2026, 3, 30, 0, 30, tzinfo=timezone.utc),
                                     datetime(2026, 3, 31, 0, 30, tzinfo=timezone.utc)]


def test_berlin_fall_back_runs_once_at_first_occurrence() -> None:
    """On 2026-10-25 Berlin has 02:30 twice: the schedule runs at the first one (00:30 UTC) and not the second."""
    got = runs(daily("02:30"), datetime(2026, 10, 24, 12, tzinfo=BERLIN), 2)
    assert [utc(g) for g in got] == [datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc),
                                     datetime(2026, 10, 26, 1, 30, tzinfo=timezone.utc)]
    # Asked between the two occurrences (02:10 CET, after 02:30 CEST), it does not run again that day.
    between = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN)
    assert utc(nextRun(daily("02:30"), between)) == datetime(2026, 10, 26, 1, 30, tzinfo=timezone.utc)


def test_new_york_spring_forward_and_fall_back() -> None:
    """New York 2026: 02:30 on 8 March runs at 03:00 EDT; on 1 November it runs once, at 02:30 EDT."""
    spring = runs(daily("02:30"), datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2)
    assert [utc(g) for g in spring] == [datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc),
                                        datetime(2026, 3, 9, 6, 30, tzinfo=timezone.utc)]
    fall = runs(daily("01:30"), datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), 2)
    assert [utc(g) for g in fall] == [datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc),
                                      datetime(2026, 11, 2, 6, 30, tzinfo=timezone.utc)]


def test_resolve_local_is_plain_outside_changes() -> None:
    """An ordinary local time resolves to itself; one in a gap to the end of the gap."""
    assert resolveLocal(date(2026, 6, 1), time(7, 30), BERLIN) == datetime(2026, 6, 1, 7, 30, tzinfo=BERLIN)
    assert resolveLocal(date(2026, 3, 29), time(2, 59, 59), BERLIN).isoformat() == "2026-03-29T03:00:00+02:00"


def test_days_and_once() -> None:
    """Weekday schedules skip weekends; a one-off runs on its date only, and never once that is past."""
    friday = datetime(2026, 12, 4, 8, tzinfo=BERLIN)
    got = runs(daily("07:00", "weekdays"), friday, 2)
    assert [g.date() for g in got] == [date(2026, 12, 7), date(2026, 12, 8)]
    once = daily("07:00", once=date(2026, 12, 24))
    assert nextRun(once, friday) == datetime(2026, 12, 24, 7, tzinfo=BERLIN)
    assert nextRun(once, datetime(2026, 12, 24, 7, tzinfo=BERLIN)) is None
    assert previousRun(once, datetime(2026, 12, 25, tzinfo=BERLIN)) == datetime(2026, 12, 24, 7, tzinfo=BERLIN)
    assert previousRun(once, friday) is None


def test_previous_run() -> None:
    """previousRun gives the latest run at or before the moment, skipping days not in the schedule."""
    monday = datetime(2026, 12, 7, 6, tzinfo=BERLIN)
    assert previousRun(daily("07:00", "weekdays"), monday) == datetime(2026, 12, 4, 7, tzinfo=BERLIN)
    assert previousRun(daily("07:00"), datetime(2026, 12, 7, 7, tzinfo=BERLIN)) == datetime(2026, 12, 7, 7,
                                                                                             tzinfo=BERLIN)


@pytest.mark.parametrize("zone, where, day, event, expected", [
    (LONDON, LONDON_AT, date(2024, 6, 21), "sunrise", "04:43"),
    (LONDON, LONDON_AT, date(2024, 6, 21), "sunset", "21:21"),
    (LONDON, LONDON_AT, date(2024, 12, 21), "sunrise", "08:04"),
    (LONDON, LONDON_AT, date(2024, 12, 21), "sunset", "15:53"),
    (NEW_YORK, NEW_YORK_AT, date(2024, 6, 21), "sunrise", "05:25"),
    (NEW_YORK, NEW_YORK_AT, date(2024, 6, 21), "sunset", "20:31"),
])
def test_sun_times_match_the_published_table(zone: object, where: Location, day: date, event: str,
                                             expected: str) -> None:
    """Sunrise and sunset agree within 2 minutes with the published tables of timeanddate.com (NOAA's
    algorithm) for London (51.5074 N, 0.1278 W): 21 June 2024 04:43 BST / 21:21 BST, 21 December 2024
    08:04 GMT / 15:53 GMT; and New York City (40.7128 N, 74.0060 W): 21 June 2024 05:25 EDT / 20:31 EDT."""
    got = sunTime(event, day, where, zone)
    hh, mm = (int(x) for x in expected.split(":"))
    want = datetime.combine(day, time(hh, mm), tzinfo=zone)
    assert abs((got - want).total_seconds()) <= 120, got


def test_sun_schedule_with_offset_and_polar_night() -> None:
    """A sunset-30m schedule runs half an hour before sunset; where the sun does not rise there is no run."""
    got = nextRun(daily("sunset-30m"), datetime(2024, 6, 21, 12, tzinfo=LONDON), location=LONDON_AT)
    assert abs((got - sunTime("sunset", date(2024, 6, 21), LONDON_AT, LONDON)).total_seconds() + 1800) < 1
    polar = Location(89.0, 0.0)
    assert sunTime("sunrise", date(2024, 12, 21), polar, timezone.utc) is None
    assert nextRun(daily("sunrise", once=date(2024, 12, 21)), datetime(2024, 12, 1, tzinfo=timezone.utc),
                   location=polar) is None
    assert nextRun(daily("sunrise"), datetime(2024, 12, 1, tzinfo=timezone.utc)) is None  # no location


def test_away_window_crossing_midnight_and_dst() -> None:
    """A 22:00-02:00 window runs into the next day; at the spring-forward night it is an hour shorter."""
    begin, end = awayWindow(time(22), time(2), datetime(2026, 3, 28, 23, tzinfo=BERLIN), BERLIN)
    assert (begin.isoformat(), end.isoformat()) == ("2026-03-28T22:00:00+01:00", "2026-03-29T03:00:00+02:00")
    begin, end = awayWindow(time(22), time(2), datetime(2026, 3, 29, 12, tzinfo=BERLIN), BERLIN)
    assert begin.date() == date(2026, 3, 29) and end - begin == timedelta(hours=4)
    begin, end = awayWindow(time(18), time(23, 30), datetime(2026, 6, 1, 23, 30, tzinfo=BERLIN), BERLIN)
    assert begin == datetime(2026, 6, 2, 18, tzinfo=BERLIN)


ZONES = [BERLIN, NEW_YORK, LONDON]


@settings(max_examples=60, deadline=None)
@given(zone=st.sampled_from(ZONES), hh=st.integers(0, 23), mm=st.integers(0, 59),
       start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)))
def test_daily_schedule_runs_exactly_once_every_local_day(zone: object, hh: int, mm: int, start: datetime) -> None:
    """Over 40 days from any moment, a daily schedule runs exactly once per local day, always later than
    the previous run, at its wall time or (in a gap) at the first valid moment after it."""
    schedule = daily(f"{hh:02d}:{mm:02d}")
    after = start.replace(tzinfo=zone)
    got = runs(schedule, after, 40)
    stamps = [g.timestamp() for g in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == 40 and stamps[0] > after.timestamp()
    assert [g.date() for g in got] == [got[0].date() + timedelta(days=n) for n in range(40)]
    for g in got:
        assert (g.hour, g.minute) == (hh, mm) or g.replace(tzinfo=None) > datetime.combine(g.date(), time(hh, mm))
        assert previousRun(schedule, g) == g
