"""Calendar periods for energy history: parsing C{day}/C{month}/C{year} values and their buckets."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, tzinfo

UNITS = {"day": "hour", "month": "day", "year": "month"}
FORMS = {"day": "YYYY-MM-DD", "month": "YYYY-MM", "year": "YYYY"}


def parsePeriod(period: str, value: str) -> tuple[date, date]:
    """The first day of the period and the first day after it.

    @raise ValueError: an unknown period or a value not of its form (YYYY-MM-DD, YYYY-MM, YYYY).
    """
    patterns = {"day": r"\d{4}-\d{2}-\d{2}", "month": r"\d{4}-\d{2}", "year": r"\d{4}"}
    if period not in patterns:
        raise ValueError(f"period {period!r} is not one of day, month, year")
    if not isinstance(value, str) or not re.fullmatch(patterns[period], value):
        raise ValueError(f"{period} {value!r} is not of the form {FORMS[period]}")
    parts = [int(x) for x in value.split("-")]
    if not 1 <= parts[0] <= 9998:
        raise ValueError(f"year {parts[0]} is out of range")
    if period == "day":
        try:
            first = date(*parts)
        except ValueError as e:
            raise ValueError(f"day {value!r}: {e}") from None
        return first, first + timedelta(days=1)
    if period == "month":
        if not 1 <= parts[1] <= 12:
            raise ValueError(f"month {value!r}: month must be 01-12")
        first = date(parts[0], parts[1], 1)
        return first, date(first.year + first.month // 12, first.month % 12 + 1, 1)
    first = date(parts[0], 1, 1)
    return first, date(parts[0] + 1, 1, 1)


def buckets(period: str, value: str, zone: tzinfo) -> list[tuple[datetime, datetime, str]]:
    """Every bucket of a period as (start, end, label), aware datetimes in C{zone}.

    Hours are real hours: a day with a daylight-saving change has 23 or 25 of them.
    """
    first, after = parsePeriod(period, value)
    result: list[tuple[datetime, datetime, str]] = []
    if period == "day":
        from datetime import timezone

        start = datetime(first.year, first.month, first.day, tzinfo=zone)
        end = datetime(after.year, after.month, after.day, tzinfo=zone)
        t = start.astimezone(timezone.utc)
        endUtc = end.astimezone(timezone.utc)
        while t < endUtc:
            local = t.astimezone(zone)
            result.append((local, (t + timedelta(hours=1)).astimezone(zone), local.strftime("%H:%M")))
            t += timedelta(hours=1)
    elif period == "month":
        d = first
        while d < after:
            n = d + timedelta(days=1)
            result.append((datetime(d.year, d.month, d.day, tzinfo=zone),
                           datetime(n.year, n.month, n.day, tzinfo=zone), d.isoformat()))
            d = n
    else:
        for month in range(1, 13):
            n = date(first.year + month // 12, month % 12 + 1, 1)
            result.append((datetime(first.year, month, 1, tzinfo=zone), datetime(n.year, n.month, 1, tzinfo=zone),
                           f"{first.year}-{month:02d}"))
    return result


def hostZone() -> tzinfo:
    """The host's time zone with its daylight-saving rules: C{$TZ}, else C{/etc/localtime}, else UTC."""
    import os
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        with open("/etc/timezone") as f:
            candidates.append(f.read().strip())
    except OSError:
        pass
    for key in candidates:
        if key:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def zoneName(zone: tzinfo) -> str:
    """A zone's IANA key where it has one."""
    return getattr(zone, "key", None) or str(zone)


class LocalDays:
    """The calendar date of a POSIX time in one zone, remembering the span of the last day asked.

    A plug's report asks for the local date of "now" twice (to add it to today's total and to read
    that total back), and for thousands of plugs "now" stays in one day for hours.  A time inside
    the remembered day is answered with a comparison; any other time is worked out with
    C{datetime.fromtimestamp} as before, and its day remembered only when it is plain: from one local
    midnight to the next is 24 hours, with the same UTC offset at its start, its end and the time
    asked (a day holding a daylight-saving change is never remembered: every time in it is worked
    out afresh).  The answers are always those of
    C{datetime.fromtimestamp(at, zone).date()}.
    """

    __slots__ = ("zone", "_lo", "_hi", "_day")

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._lo = self._hi = 0.0
        self._day: date | None = None

    @property
    def remembered(self) -> tuple[float, float] | None:
        """The C{[start, end)} POSIX times of the day remembered, if any."""
        return (self._lo, self._hi) if self._day is not None else None

    def __call__(self, at: float) -> date:
        if self._lo <= at < self._hi:
            return self._day  # type: ignore[return-value]
        local = datetime.fromtimestamp(at, tz=self.zone)
        day = local.date()
        start = datetime(day.year, day.month, day.day, tzinfo=self.zone)
        nextDay = day + timedelta(days=1)
        end = datetime(nextDay.year, nextDay.month, nextDay.day, tzinfo=self.zone)
        lo, hi = start.timestamp(), end.timestamp()
        if hi - lo == 86400 and start.utcoffset() == end.utcoffset() == local.utcoffset() and lo <= at < hi:
            self._lo, self._hi, self._day = lo, hi, day
        return day
