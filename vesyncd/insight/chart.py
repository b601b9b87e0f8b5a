"""
Live power chart data per plug: the last hour as sampled, and the last 24 hours as 5-minute averages.

Both are bounded per plug whatever the sample rate:

  - the hour: at most one reading per 10 seconds (a newer reading in the same 10 s replaces the
    last), so at most 360 readings of 6 bytes (a 32-bit time, 16-bit deciwatts); a plug that
    reports every 3 minutes keeps ~20 (about 120 bytes plus two array headers);
  - the day: 288 five-minute slots of a 32-bit float sum and an 8-bit count (1,440 bytes,
    allocated at the plug's first reading), so each point is the mean of the readings in its
    5 minutes (up to 255 readings a slot; later ones in a full slot are not counted).

L{feed} turns the hub's events into readings for this and the baseline tracker.
"""

from __future__ import annotations

import array
import bisect
import math
from typing import Any, Protocol

from vesyncd.core.model import ENERGY, FORGOTTEN, RUNTIME, Event
from vesyncd.insight.baseline import deciwatts
from vesyncd.insight.ring import Ring, SlotRing

HOUR_SECONDS = 3600
#: Readings closer together than this replace one another in the hour's series.
HOUR_RESOLUTION = 10
MAX_HOUR_POINTS = HOUR_SECONDS // HOUR_RESOLUTION
DAY_SLOT_SECONDS = 300
DAY_SLOTS = 24 * 3600 // DAY_SLOT_SECONDS


class _Hour:
    """One plug's readings of the last hour: parallel arrays of POSIX seconds and deciwatts."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times = array.array("I")
        self.values = array.array("H")


class PowerHistory:
    """Per-plug live chart series: L{add} readings, read L{chart}."""

    def __init__(self) -> None:
        self.dayShape = SlotRing(DAY_SLOT_SECONDS, DAY_SLOTS, (("f", 0.0), ("B", 0)))
        self._hours: dict[str, _Hour] = {}
        self._days: dict[str, Ring] = {}

    def add(self, plug: str, at: float, watts: float) -> None:
        """Keep a power reading of C{plug} at POSIX time C{at}; negative or non-finite readings are ignored."""
        dw = deciwatts(watts)
        if dw is None or not math.isfinite(at) or not 0 <= at < 2**32:
            return
        self.addDeciwatts(plug, at, dw)

    def addDeciwatts(self, plug: str, at: float, dw: int) -> None:
        """L{add} for a reading already checked: C{dw} from L{deciwatts}, C{0 <= at < 2**32}."""
        hour = self._hours.get(plug)
        if hour is None:
            hour = self._hours[plug] = _Hour()
            self._days[plug] = self.dayShape.new()
        t = int(at)
        self._trim(hour, t)
        times, values = hour.times, hour.values
        if times and t < times[-1]:
            pass  # a late reading: the hour's series stays in time order, the day's average still counts it
        elif times and t // HOUR_RESOLUTION == times[-1] // HOUR_RESOLUTION:
            times[-1], values[-1] = t, dw
        else:
            if len(times) >= MAX_HOUR_POINTS:
                del times[0], values[0]
            times.append(t)
            values.append(dw)
        day = self._days[plug]
        p = self.dayShape.place(day, at)
        if p is not None:
            sums, counts = day.arrays
            if counts[p] < 255:
                sums[p] += dw / 10.0
                counts[p] += 1

    @staticmethod
    def _trim(hour: _Hour, now: int) -> None:
        """Drop readings more than an hour older than C{now}."""
        times = hour.times
        if not times or times[0] >= now - HOUR_SECONDS:
            return  # nothing to drop (most readings): no search
        old = bisect.bisect_left(times, now - HOUR_SECONDS)
        if old:
            del hour.times[:old], hour.values[:old]

    def chart(self, plug: str, now: float) -> dict[str, list[list[float]]]:
        """The plug's chart at C{now}: C{{"hour": [[t, w], ...], "day": [[t, w], ...]}}, oldest first.

        C{t} is POSIX seconds (an int: the reading's time in "hour", the 5-minute slot's start in
        "day"); C{w} is watts to 0.1 W (the slot's mean in "day").  Slots and seconds without a
        reading are left out, so a gap in the data is a gap in the arrays.  Unknown plug: both empty.
        """
        hour = self._hours.get(plug)
        day = self._days.get(plug)
        if hour is None or day is None:
            return {"hour": [], "day": []}
        lo = now - HOUR_SECONDS
        series = [[t, v / 10.0] for t, v in zip(hour.times, hour.values) if lo <= t <= now]
        sums, counts = day.arrays
        points = [[slot * DAY_SLOT_SECONDS, round(sums[p] / counts[p], 1)]
                  for slot, p in self.dayShape.live(day, now) if counts[p]]
        return {"hour": series, "day": points}

    def plugs(self) -> list[str]:
        """The plugs with readings kept."""
        return list(self._hours)

    def forget(self, plug: str) -> None:
        """Drop everything kept for C{plug}."""
        self._hours.pop(plug, None)
        self._days.pop(plug, None)


class PowerSink(Protocol):
    """What L{feed} hands readings to: L{PowerHistory} and L{vesyncd.insight.baseline.BaselineTracker}."""

    def add(self, plug: str, at: float, watts: float, /) -> None:
        """Keep a reading."""

    def addDeciwatts(self, plug: str, at: float, dw: int, /) -> None:
        """Keep a reading already checked: C{dw} from L{deciwatts}, C{0 <= at < 2**32}."""

    def forget(self, plug: str, /) -> None:
        """Drop a plug."""


def eventPower(event: Event) -> float | None:
    """The power reading in a hub event: C{power_w} of a runtime event, C{average_w} of an energy report."""
    if event.kind == RUNTIME:
        watts: Any = event.data.get("power_w")
    elif event.kind == ENERGY:
        watts = event.data.get("average_w")
    else:
        return None
    if isinstance(watts, bool) or not isinstance(watts, (int, float)):
        return None
    return float(watts)


def feed(event: Event, *sinks: PowerSink) -> None:
    """Hand a hub event's power reading to each sink, or make each forget a forgotten plug.

    Subscribe it to the hub: C{hub.subscribe(lambda e: feed(e, history, baselines))}.
    """
    if event.kind == FORGOTTEN:
        for sink in sinks:
            sink.forget(event.plug)
        return
    watts = eventPower(event)
    if watts is None:
        return
    at = event.at
    dw = deciwatts(watts)
    if dw is not None and 0 <= at < 2**32:  # the usual reading: checked and converted once for all sinks
        for sink in sinks:
            sink.addDeciwatts(event.plug, at, dw)
        return
    for sink in sinks:  # each sink decides about the odd one
        sink.add(event.plug, at, watts)
