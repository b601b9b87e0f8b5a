"""
The energy and cost of the current ranges (today ... this year) from one sum per range, not from
every hourly row walked in the reactor thread.

A range is a span of hour numbers C{[lo, hi)}: the hours whose start lies in the local calendar span
(C{ceil(start / 3600)} to C{ceil(end / 3600)}, so an hour belongs to the range its start falls in,
as L{vesyncd.insight.ranges.periodTotals} counts it).  A ledger with C{hourSums} (the SQLite one)
sums each span in its writer thread: with no tariff, or one flat tariff, an SQL C{SUM} on the
C{(plug, hour)} key, priced as watt-hours x price; with time-of-use or dated tariffs it walks the
span's rows there, pricing each hour with L{HourPrices}.  Any other ledger gives its rows and
L{spanSums} sums them the same way.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from datetime import datetime, tzinfo
from typing import Callable, Iterable, Sequence

from vesyncd.insight.cost import Row
from vesyncd.insight.ranges import RANGE_NAMES, currentRanges
from vesyncd.insight.tariff import TariffSchedule

#: Hour prices one L{HourPrices} keeps (two years and a bit), then it starts again.
CACHED_PRICES = 20_000

Span = tuple[int, int]


def rangeHours(now: float, zone: tzinfo) -> dict[str, Span]:
    """Each current range (L{RANGE_NAMES}) as hour numbers C{[lo, hi)}: the hours starting in it."""
    ranges = currentRanges(now, zone)
    return {name: (math.ceil(ranges[name].startTs / 3600), math.ceil(ranges[name].endTs / 3600))
            for name in RANGE_NAMES}


def clip(spans: dict[str, Span], first: int, last: int) -> list[Span]:
    """The spans in L{RANGE_NAMES} order cut to C{[first, last)} (an empty one as C{(x, x)})."""
    out = []
    for name in RANGE_NAMES:
        lo, hi = spans[name]
        lo, hi = max(lo, first), min(hi, last)
        out.append((lo, max(lo, hi)))
    return out


def singlePrice(schedule: TariffSchedule | None) -> bool:
    """True when every hour has the same price (one tariff, one price), so a sum can be priced."""
    return schedule is not None and len(schedule.tariffs) == 1 and len(schedule.tariffs[0].segments) == 1


class HourPrices:
    """The price per kWh of an hour number, as L{TariffSchedule.hourPrice} gives it, remembered.

    Called from the store's writer thread only (or only from the reactor, with a memory ledger):
    its memory is its own, never the schedule's.
    """

    def __init__(self, schedule: TariffSchedule, zone: tzinfo) -> None:
        self.schedule = schedule
        self.zone = zone
        self._prices: dict[int, float] = {}

    def __call__(self, hour: int) -> float:
        """The price per kWh of hour number C{hour}."""
        price = self._prices.get(hour)
        if price is None:
            local = datetime.fromtimestamp(hour * 3600, tz=self.zone)
            # The very computation of TariffSchedule.hourPrice, so every figure is the same.
            price = self.schedule.inForce(local.date()).hourCost(local, 1000.0)
            if len(self._prices) >= CACHED_PRICES:
                self._prices.clear()
            self._prices[hour] = price
        return price


def spanSums(rows: Iterable[Row], spans: Sequence[Span],
             weight: Callable[[int], float] | None = None) -> list[tuple[float, float]]:
    """Per span of hour numbers, the rows' watt-hours and (with C{weight}) the sum of each row's
    watt-hours x C{weight(hour)}, in hour order; rows are C{(hourStart, wh)}."""
    ordered = sorted(rows)
    starts = [t for t, _ in ordered]
    out = []
    for lo, hi in spans:
        wh = weighted = 0.0
        for hourStart, value in ordered[bisect_left(starts, lo * 3600):bisect_left(starts, hi * 3600)]:
            wh += value
            if weight is not None:
                weighted += value * weight(int(hourStart // 3600))
        out.append((wh, weighted))
    return out


def fromStoreSums(sums: Sequence[tuple[int, float]]) -> list[tuple[float, float]]:
    """The ledger's C{(watt-seconds, weighted watt-hours)} per span as C{(wh, weighted)}."""
    return [(ws / 3600.0, weighted) for ws, weighted in sums]
