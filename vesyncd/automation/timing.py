"""
When things happen, as pure functions of a schedule, a zone, a location and a moment: local times
across daylight-saving changes, sunrise and sunset, a schedule's next and previous run, and the away
window around a moment.  Nothing here reads a clock.

Local times follow one rule everywhere: a wall-clock time that happens twice (the fall-back hour) means
its first occurrence, and one that does not exist (the spring-forward gap) means the first valid
moment after the gap (02:30 on the spring-forward day in Europe/Berlin is 03:00 CEST).
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from astral import Observer
from astral.sun import sunrise, sunset

from vesyncd.automation.model import Location, Schedule

#: How many days ahead (or back) a recurring schedule is searched: enough for polar night.
SEARCH_DAYS = 400


def resolveLocal(day: date, clock: time, zone: tzinfo) -> datetime:
    """The moment (aware, in C{zone}) a wall-clock C{clock} on C{day} stands for.

    An ambiguous time is its first occurrence; a time in a gap is the moment the gap ends.
    """
    first = datetime.combine(day, clock, tzinfo=zone).replace(fold=0)
    utc = first.astimezone(timezone.utc)
    back = utc.astimezone(zone)
    if back.replace(tzinfo=None) == first.replace(tzinfo=None):
        return back
    # In a gap: fold=0 and fold=1 read the wall time with the offsets either side of the change,
    # so the change itself lies between the two readings; find it to the second.
    other = first.replace(fold=1).astimezone(timezone.utc)
    lo, hi = min(utc, other), max(utc, other)
    after = hi.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0).astimezone(zone) if hi.microsecond else hi.astimezone(zone)


# Every sun schedule asks for the same few days' sunrise and sunset (each one's previous and next run
# at start-up, then each run): computed once per day, location and zone, not once per schedule.
@functools.lru_cache(maxsize=256)
def sunTime(event: str, day: date, location: Location, zone: tzinfo) -> datetime | None:
    """Sunrise or sunset (C{event}) on local C{day} at C{location}, or None if the sun does not do it then."""
    observer = Observer(latitude=location.latitude, longitude=location.longitude)
    try:
        when = (sunrise if event == "sunrise" else sunset)(observer, date=day, tzinfo=zone)
    except ValueError:
        return None  # polar day or night: the sun does not cross the horizon that day
    return when.replace(microsecond=0).astimezone(zone)


def runOn(schedule: Schedule, day: date, zone: tzinfo, location: Location | None) -> datetime | None:
    """The moment C{schedule} runs for local C{day}, or None if it does not run for that day."""
    if schedule.once is not None:
        if day != schedule.once:
            return None
    elif day.weekday() not in schedule.days:
        return None
    at = schedule.at
    if at.kind == "time":
        assert at.clock is not None
        return resolveLocal(day, at.clock, zone)
    if location is None:
        return None
    base = sunTime(at.kind, day, location, zone)
    return None if base is None else (base + timedelta(seconds=at.offset)).astimezone(zone)


def nextRun(schedule: Schedule, after: datetime, *, zone: tzinfo | None = None,
            location: Location | None = None) -> datetime | None:
    """The first moment strictly after C{after} at which C{schedule} runs, in C{zone}.

    C{zone} defaults to C{after}'s own zone.  A one-off schedule whose run is not after C{after}
    gives None, as does a sun schedule without a location or whose sun event never happens in the
    next L{SEARCH_DAYS} days.  Whether the schedule is enabled is not considered.
    """
    zone = zone or after.tzinfo
    assert zone is not None, "after must be an aware datetime"
    local = after.astimezone(zone)
    # Aware datetimes in one zone compare by wall time, ignoring fold: compare in UTC instead.
    limit = after.astimezone(timezone.utc)
    # Start a day early: a sun time with a negative offset may fall on the day before its event.
    days = [schedule.once] if schedule.once else (local.date() + timedelta(days=n) for n in range(-1, SEARCH_DAYS))
    for day in days:
        when = runOn(schedule, day, zone, location)
        if when is not None and when.astimezone(timezone.utc) > limit:
            return when
    return None


def previousRun(schedule: Schedule, before: datetime, *, zone: tzinfo | None = None,
                location: Location | None = None) -> datetime | None:
    """The last moment at or before C{before} at which C{schedule} ran (or would have), in C{zone}."""
    zone = zone or before.tzinfo
    assert zone is not None, "before must be an aware datetime"
    local = before.astimezone(zone)
    limit = before.astimezone(timezone.utc)
    days = [schedule.once] if schedule.once else (local.date() - timedelta(days=n) for n in range(-1, 9))
    for day in days:
        when = runOn(schedule, day, zone, location)
        if when is not None and when.astimezone(timezone.utc) <= limit:
            return when
    return None


def awayWindow(start: time, end: time, moment: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """The away window that holds C{moment}, or else the next one, as (begin, end) in C{zone}.

    A window whose end is not after its start crosses midnight and ends on the next day.
    """
    local = moment.astimezone(zone)
    limit = moment.astimezone(timezone.utc)
    for offset in (-1, 0, 1):
        day = local.date() + timedelta(days=offset)
        begin = resolveLocal(day, start, zone)
        finish = resolveLocal(day + timedelta(days=1 if end <= start else 0), end, zone)
        if limit < finish.astimezone(timezone.utc):
            return begin, finish
    raise AssertionError("a window ends within two days of any moment")
