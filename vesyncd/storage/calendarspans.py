"""
A span of UTC hours cut into whole local months, whole local days and the hours left over, so the
ledger can sum it from the C{months} and C{days} rollups (a dozen rows for a year) instead of every
hourly row.

The rollups count an hour in the local day that holds its last second
(L{vesyncd.storage.schema.dayKey}), and a span of hours counts an hour by its start: the two agree
only when every local midnight of the span falls on a whole UTC hour (any zone whose offset is whole
hours, daylight saving included).  When one does not (a C{+05:30} zone), the span is left as hours.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import NamedTuple


class CalendarParts(NamedTuple):
    """A span of hours as hour spans C{[lo, hi)}, day labels and month labels (first, last: both included)."""

    hours: list[tuple[int, int]]
    days: list[tuple[str, str]]
    months: list[tuple[str, str]]


def _midnightHour(day: date, zone: tzinfo) -> int | None:
    """The hour number of C{day}'s local midnight, or None when it is not a whole UTC hour (or not
    where the local dates turn)."""
    at = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    if at % 3600 or datetime.fromtimestamp(at, zone).date() != day or \
            datetime.fromtimestamp(at - 1, zone).date() >= day:
        return None
    return int(at // 3600)


def _monthEnd(day: date) -> date:
    """The last day of C{day}'s month."""
    after = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return after - timedelta(days=1)


def calendarParts(lo: int, hi: int, zone: tzinfo) -> CalendarParts:
    """The hours C{[lo, hi)} as whole local months, whole local days and the hours before and after."""
    whole = CalendarParts([(lo, hi)] if hi > lo else [], [], [])
    if hi - lo < 24:
        return whole
    first = datetime.fromtimestamp(lo * 3600, zone).date()
    start = _midnightHour(first, zone)
    if start is None:
        return whole
    if start < lo:
        first += timedelta(days=1)
        start = _midnightHour(first, zone)
        if start is None:
            return whole
    last = first - timedelta(days=1)  # the last whole day, none yet
    end = start
    while True:
        after = _midnightHour(last + timedelta(days=2), zone)
        if after is None:
            return whole
        if after > hi:
            break
        last += timedelta(days=1)
        end = after
    if last < first:
        return whole
    hours = [(a, b) for a, b in ((lo, start), (end, hi)) if b > a]
    days: list[tuple[str, str]] = []
    months: list[tuple[str, str]] = []
    day = first
    while day <= last:
        monthEnd = _monthEnd(day)
        if day.day == 1 and monthEnd <= last:
            if months and _monthEnd(date.fromisoformat(months[-1][1] + "-01")) + timedelta(days=1) == day:
                months[-1] = (months[-1][0], day.isoformat()[:7])
            else:
                months.append((day.isoformat()[:7], day.isoformat()[:7]))
        else:
            days.append((day.isoformat(), min(monthEnd, last).isoformat()))
        day = min(monthEnd, last) + timedelta(days=1)
    return CalendarParts(hours, days, months)
