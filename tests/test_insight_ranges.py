"""Current calendar ranges (yesterday, ISO week, month, year) at their boundaries, and their totals."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from vesyncd.insight.ranges import (RANGE_NAMES, currentRanges, earliestStart, periodTotals, thisMonth, thisWeek,
                                    thisYear, today, yesterday)
from vesyncd.insight.tariff import Tariff, TariffSchedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int) -> float:
    """POSIX time of a Berlin wall-clock time."""
    return datetime(*fields, tzinfo=BERLIN).timestamp()


def local(ts: float) -> datetime:
    """A POSIX time as a naive Berlin wall-clock time, for comparisons."""
    return datetime.fromtimestamp(ts, tz=BERLIN).replace(tzinfo=None)


def test_new_year_first_hour() -> None:
    """At 00:30 on 1 January yesterday and this week lie in the old year; month and year start now."""
    now = at(2027, 1, 1, 0, 30)  # a Friday
    assert local(yesterday(now, BERLIN).startTs) == datetime(2026, 12, 31)
    assert local(yesterday(now, BERLIN).endTs) == datetime(2027, 1, 1)
    assert local(thisWeek(now, BERLIN).startTs) == datetime(2026, 12, 28)
    assert local(thisWeek(now, BERLIN).endTs) == datetime(2027, 1, 4)
    assert local(thisMonth(now, BERLIN).startTs) == datetime(2027, 1, 1)
    assert local(thisYear(now, BERLIN).startTs) == datetime(2027, 1, 1)
    assert local(thisYear(now, BERLIN).endTs) == datetime(2028, 1, 1)
    assert local(earliestStart(now, BERLIN)) == datetime(2026, 12, 28)


def test_last_second_of_a_year() -> None:
    """At 23:59:59 on 31 December every range is still the old year's."""
    now = at(2026, 12, 31, 23, 59, 59)
    assert local(today(now, BERLIN).startTs) == datetime(2026, 12, 31)
    assert local(thisMonth(now, BERLIN).startTs) == datetime(2026, 12, 1)
    assert local(thisMonth(now, BERLIN).endTs) == datetime(2027, 1, 1)
    assert local(thisYear(now, BERLIN).startTs) == datetime(2026, 1, 1)


def test_week_starts_monday() -> None:
    """A Sunday evening is in the week that began the Monday before; the Monday after starts a new one."""
    sunday = at(2026, 3, 8, 23, 0)
    monday = at(2026, 3, 9, 0, 0)
    assert local(thisWeek(sunday, BERLIN).startTs) == datetime(2026, 3, 2)
    assert local(thisWeek(monday, BERLIN).startTs) == datetime(2026, 3, 9)


def test_month_boundary_and_leap_day() -> None:
    """On 1 March of a leap year, yesterday is 29 February and this month starts that midnight."""
    now = at(2028, 3, 1, 8, 0)
    assert local(yesterday(now, BERLIN).startTs) == datetime(2028, 2, 29)
    assert local(thisMonth(now, BERLIN).startTs) == datetime(2028, 3, 1)
    assert local(thisMonth(now, BERLIN).endTs) == datetime(2028, 4, 1)


def test_daylight_saving_days_are_local_midnights() -> None:
    """The day after the spring-forward day: yesterday lasted 23 hours; after fall-back, 25 hours."""
    spring = yesterday(at(2026, 3, 30, 12, 0), BERLIN)
    autumn = yesterday(at(2026, 10, 26, 12, 0), BERLIN)
    assert spring.endTs - spring.startTs == 23 * 3600
    assert autumn.endTs - autumn.startTs == 25 * 3600


def test_period_totals() -> None:
    """Hourly rows are summed into today, yesterday, week, month and year, with cost when a tariff is set."""
    now = at(2026, 3, 2, 10, 30)  # Monday 2 March
    rows = [
        (at(2026, 3, 2, 9), 100.0),  # today: this week, month and year
        (at(2026, 3, 1, 23), 200.0),  # yesterday (Sunday 1 March): last week, this month
        (at(2026, 2, 28, 0), 400.0),  # February: this year only
        (at(2025, 12, 31, 23), 800.0),  # last year: nothing
        (at(2026, 3, 2, 11), 1600.0),  # the future (a skewed clock): still this week's
    ]
    plain = periodTotals(rows, now, BERLIN)
    assert plain["today_wh"] == 1700.0
    assert plain["yesterday_wh"] == 200.0
    assert plain["week_wh"] == 1700.0
    assert plain["month_wh"] == 1900.0
    assert plain["year_wh"] == 2300.0
    assert plain["currency"] is None and plain["year_cost"] is None
    priced = periodTotals(rows, now, BERLIN, TariffSchedule([Tariff.flat(0.5, "EUR", dailyCharge=9)]))
    assert priced["currency"] == "EUR"
    assert priced["yesterday_cost"] == 0.1
    assert priced["year_cost"] == 1.15
    assert set(priced) == {f"{n}_wh" for n in RANGE_NAMES} | {f"{n}_cost" for n in RANGE_NAMES} | {"currency"}


def test_current_ranges_names() -> None:
    """currentRanges gives every named range, each starting before it ends."""
    ranges = currentRanges(at(2026, 6, 15, 12), BERLIN)
    assert tuple(ranges) == RANGE_NAMES
    assert all(r.startTs < r.endTs for r in ranges.values())
