"""
Calendar ranges relative to now (today, yesterday, this ISO week, this month, this year) and the
energy and cost of hourly rows within each.

Ranges are local calendar spans in a zone, as aware datetimes C{[start, end)}: days are local
midnights (23 or 25 hours long around a daylight-saving change), the week starts on Monday
(ISO 8601), and "this" week, month and year run to their calendar end (hours not yet lived have
no rows, so the sum is the figure to date).
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date, datetime, timedelta, tzinfo
from itertools import accumulate
from typing import Any, Iterable, NamedTuple

from vesyncd.insight.cost import Row, roundCost
from vesyncd.insight.tariff import TariffSchedule

#: The names of the ranges L{currentRanges} gives, in the order L{periodTotals} reports them.
RANGE_NAMES = ("today", "yesterday", "week", "month", "year")
#: Decimal places of watt-hour figures (as the ledger's history).
WH_DIGITS = 6


class Range(NamedTuple):
    """A local calendar span C{[start, end)} as aware datetimes."""

    start: datetime
    end: datetime

    @property
    def startTs(self) -> float:
        """The start as POSIX seconds."""
        return self.start.timestamp()

    @property
    def endTs(self) -> float:
        """The end as POSIX seconds."""
        return self.end.timestamp()


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _days(first: date, after: date, zone: tzinfo) -> Range:
    return Range(_midnight(first, zone), _midnight(after, zone))


def localToday(now: float, zone: tzinfo) -> date:
    """The local date of POSIX time C{now} in C{zone}."""
    return datetime.fromtimestamp(now, tz=zone).date()


def today(now: float, zone: tzinfo) -> Range:
    """Today, local midnight to local midnight."""
    d = localToday(now, zone)
    return _days(d, d + timedelta(days=1), zone)


def yesterday(now: float, zone: tzinfo) -> Range:
    """Yesterday, local midnight to local midnight."""
    d = localToday(now, zone)
    return _days(d - timedelta(days=1), d, zone)


def thisWeek(now: float, zone: tzinfo) -> Range:
    """This ISO week: Monday 00:00 to the next Monday 00:00, local."""
    d = localToday(now, zone)
    monday = d - timedelta(days=d.weekday())
    return _days(monday, monday + timedelta(days=7), zone)


def thisMonth(now: float, zone: tzinfo) -> Range:
    """This calendar month, local."""
    d = localToday(now, zone)
    first = d.replace(day=1)
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return _days(first, after, zone)


def thisYear(now: float, zone: tzinfo) -> Range:
    """This calendar year, local."""
    d = localToday(now, zone)
    return _days(date(d.year, 1, 1), date(d.year + 1, 1, 1), zone)


def currentRanges(now: float, zone: tzinfo) -> dict[str, Range]:
    """Each range of L{RANGE_NAMES} at C{now}."""
    return {"today": today(now, zone), "yesterday": yesterday(now, zone), "week": thisWeek(now, zone),
            "month": thisMonth(now, zone), "year": thisYear(now, zone)}


def earliestStart(now: float, zone: tzinfo) -> int:
    """The POSIX second from which hourly rows are needed for L{periodTotals} at C{now}.

    Usually 1 January; earlier when yesterday or this week began in the year before.
    """
    return int(min(r.startTs for r in currentRanges(now, zone).values()))


def periodTotals(rows: Iterable[Row], now: float, zone: tzinfo,
                 schedule: TariffSchedule | None = None) -> dict[str, Any]:
    """Energy (and cost) of hourly rows in each current range.

    Gives C{{"today_wh", "yesterday_wh", "week_wh", "month_wh", "year_wh", "currency",
    "today_cost", "yesterday_cost", "week_cost", "month_cost", "year_cost"}}: watt-hours rounded to
    L{WH_DIGITS} decimals, costs as L{vesyncd.insight.cost.roundCost} (without the daily charge);
    with no C{schedule}, C{currency} and every cost are None.  Rows must reach back to
    L{earliestStart}; rows outside every range are ignored.
    """
    ranges = currentRanges(now, zone)
    ordered = sorted(rows)
    times = [t for t, _ in ordered]
    first = bisect_left(times, min(r.startTs for r in ranges.values()))
    last = bisect_left(times, max(r.endTs for r in ranges.values()))
    ordered, times = ordered[first:last], times[first:last]
    # Prefix sums over the rows in time order: each range's total is a difference of two of them.
    whSums = [0.0, *accumulate(v for _, v in ordered)]
    costSums = [0.0, *accumulate(schedule.hourCost(t, v, zone) for t, v in ordered)] if schedule else whSums
    wh: dict[str, float] = {}
    cost: dict[str, float] = {}
    for name, r in ranges.items():
        lo, hi = bisect_left(times, r.startTs), bisect_left(times, r.endTs)
        wh[name] = whSums[hi] - whSums[lo]
        cost[name] = costSums[hi] - costSums[lo]
    result: dict[str, Any] = {f"{name}_wh": round(wh[name], WH_DIGITS) for name in RANGE_NAMES}
    result["currency"] = schedule.currency if schedule is not None else None
    for name in RANGE_NAMES:
        result[f"{name}_cost"] = roundCost(cost[name]) if schedule is not None else None
    return result
