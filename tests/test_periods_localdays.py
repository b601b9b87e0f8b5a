"""L{vesyncd.core.periods.LocalDays}: the remembered day never changes an answer."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st

from vesyncd.core.periods import LocalDays

#: Zones whose days are not all 24 hours: daylight saving at 02:00 (New York), at midnight
#: (Santiago, Havana), half an hour (Lord Howe), odd offsets (Kathmandu, Chatham, St John's).
ZONES = ["UTC", "America/New_York", "America/Santiago", "America/Havana", "Australia/Lord_Howe",
         "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns", "Europe/Berlin", "Asia/Kolkata"]

#: 2020-01-01 .. 2040-01-01 UTC.
SPAN = (1_577_836_800, 2_208_988_800)


def plainDay(at: float, zone: ZoneInfo):
    return datetime.fromtimestamp(at, tz=zone).date()


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), start=st.integers(*SPAN),
       steps=st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=1, max_size=60))
def test_answersAreThoseOfFromtimestamp(zone: str, start: int, steps: list[int]) -> None:
    """Times walked forward and back from a random start, in zones with every kind of odd day,
    get the date C{datetime.fromtimestamp} gives."""
    tz = ZoneInfo(zone)
    days = LocalDays(tz)
    at = float(start)
    for step in steps:
        at += step
        assert days(at) == plainDay(at, tz), (zone, at)
        assert days(at + 0.5) == plainDay(at + 0.5, tz), (zone, at + 0.5)


def test_everyMinuteAroundChangesOfOffset() -> None:
    """Minute by minute (and a second either side of each minute) through the days around spring
    and autumn changes, including the ones at local midnight, the answers are those of
    C{fromtimestamp}."""
    cases = [("America/New_York", "2026-03-07"), ("America/New_York", "2026-10-31"),
             ("America/Santiago", "2026-04-03"), ("America/Santiago", "2026-09-04"),
             ("America/Havana", "2026-03-07"), ("America/Havana", "2026-10-31"),
             ("Australia/Lord_Howe", "2026-04-04"), ("Australia/Lord_Howe", "2026-10-03")]
    for zone, first in cases:
        tz = ZoneInfo(zone)
        days = LocalDays(tz)
        at = datetime.fromisoformat(first).replace(tzinfo=tz).timestamp()
        for minute in range(3 * 24 * 60):
            for t in (at + minute * 60 - 1, at + minute * 60, at + minute * 60 + 1):
                assert days(t) == plainDay(t, tz), (zone, t)


def test_aPlainDayIsRememberedAndAnOddOneIsNot() -> None:
    """A plain day's span is kept (later times in it need no work); a 23-hour day's is not."""
    tz = ZoneInfo("America/New_York")
    days = LocalDays(tz)
    noon = datetime(2026, 6, 1, 12, tzinfo=tz).timestamp()
    assert days(noon) == plainDay(noon, tz)
    assert days.remembered == (datetime(2026, 6, 1, tzinfo=tz).timestamp(),
                                    datetime(2026, 6, 2, tzinfo=tz).timestamp())
    spring = datetime(2026, 3, 8, 12, tzinfo=tz).timestamp()
    assert days(spring) == plainDay(spring, tz)
    lo, hi = days.remembered
    assert not lo <= spring < hi
