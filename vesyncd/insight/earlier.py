"""
Each plug's energy and cost in the current ranges (today ... this year) over the hours before the
current one, read from the ledger and kept until the hour turns.

Earlier hours never change, so only the current hour is read again by the callers; when the hour or
the day turns, a range that is still the same local span (this month, or yesterday that was today)
only adds the hours since.  L{EarlierHours.sums} reads one plug; L{EarlierHours.sumsMany} reads
every plug not cached for this hour, grouped by the spans they still need, one ledger read per group
(C{hourSumsMany}), grouping, pricing and keeping them in the cooperator's slices.
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any, Iterator

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import Cooperator

from vesyncd.insight.cost import Row
from vesyncd.insight.periodsums import HourPrices, fromStoreSums, rangeHours, singlePrice, spanSums
from vesyncd.insight.ranges import RANGE_NAMES, localToday
from vesyncd.insight.tariff import TariffSchedule

#: A plug's cached sums: (UTC hour, local date) they were read at, the ranges as hour numbers then,
#: and each range's unrounded [wh, cost] over the hours before that hour.
Cached = tuple[tuple[int, date], dict[str, tuple[int, int]], dict[str, list[float]]]
#: Plugs whose sums are kept at most.
MAX_CACHED = 100_000


class EarlierHours:
    """The cached sums of the hours before the current one, per plug (see the module docstring)."""

    def __init__(self, ledger: Any, zone: tzinfo, schedule: TariffSchedule | None, cooperator: Cooperator) -> None:
        self.ledger = ledger
        self.zone = zone
        self.schedule = schedule
        self._cooperator = cooperator
        self._sums: dict[str, Cached] = {}
        self._ranges: tuple[tuple[int, date], dict[str, tuple[int, int]]] | None = None
        self._prices: HourPrices | None = None

    def forget(self, plugId: str) -> None:
        """Drop what is kept for a plug."""
        self._sums.pop(plugId, None)

    def spans(self, now: float) -> tuple[tuple[int, date], dict[str, tuple[int, int]]]:
        """The cache key (UTC hour, local date) at C{now} and the current ranges as hour numbers."""
        key = (int(now // 3600), localToday(now, self.zone))
        if self._ranges is None or self._ranges[0] != key:
            self._ranges = (key, rangeHours(now, self.zone))
        return self._ranges

    def _wanted(self, hour: int, spans: dict[str, tuple[int, int]],
                before: Cached | None) -> tuple[tuple[tuple[int, int], ...], list[list[float]]]:
        """Per range, the hours still to sum before C{hour} and the C{[wh, cost]} already known: a
        range the C{before} sums hold (the same local span: this month after the hour or the day
        turned, or yesterday that was today) is only summed over the hours since."""
        known = {}
        if before is not None and before[0][0] <= hour:
            known = {before[1][n]: (before[0][0], before[2][n]) for n in RANGE_NAMES}
        wanted: list[tuple[int, int]] = []
        base: list[list[float]] = []
        for name in RANGE_NAMES:
            lo, hi = spans[name]
            start = lo
            if (lo, hi) in known:
                since, sums = known[(lo, hi)]
                start = max(lo, min(hi, since))
                base.append(sums)
            else:
                base.append([0.0, 0.0])
            wanted.append((start, max(start, min(hi, hour))))
        return tuple(wanted), base

    def weight(self) -> tuple[bool, Any]:
        """Whether the tariff has one price for every hour, and the per-hour price weight to sum
        watt-hours with when it has not (None without a tariff or with a flat one)."""
        flat = singlePrice(self.schedule)
        return flat, (self.hourPrices() if self.schedule is not None and not flat else None)

    def hourPrices(self) -> HourPrices:
        """The tariff's price per hour number (an L{HourPrices}, made once): the ledger calls it in its
        writer thread (the memory ledger's sums on the reactor), never both."""
        if self._prices is None:
            assert self.schedule is not None
            self._prices = HourPrices(self.schedule, self.zone)
        return self._prices

    def _priced(self, wanted: tuple[tuple[int, int], ...], sums: list[tuple[float, float]],
                base: list[list[float]], flat: bool) -> dict[str, list[float]]:
        """Each range's C{[wh, cost]}: what was known plus the sums read (C{(wh, weighted)} per range)."""
        schedule = self.schedule
        out = {}
        for name, (lo, _), (wh, weighted), (baseWh, baseCost) in zip(RANGE_NAMES, wanted, sums, base):
            if schedule is None:
                cost = 0.0
            elif flat:
                cost = schedule.hourCost(lo * 3600, wh, self.zone)  # one price for every hour
            else:
                cost = weighted / 1000.0
            out[name] = [baseWh + wh, baseCost + cost]
        return out

    def _read(self, plugId: str, now: float, before: Cached | None = None) -> Deferred:
        """Each range's unrounded C{[wh, cost]} over the hours before the current one: one sum per range
        in the ledger's writer thread (or from its rows with a ledger that cannot sum), only over the
        hours since C{before} where it holds the same span (L{_wanted})."""
        (hour, _), spans = self.spans(now)
        wanted, base = self._wanted(hour, spans, before)
        flat, weight = self.weight()
        sumHours = getattr(self.ledger, "hourSums", None)
        if sumHours is not None:
            d = sumHours(plugId, wanted, weight).addCallback(fromStoreSums)
        else:
            lo, hi = min(s[0] for s in wanted), max(s[1] for s in wanted)
            d = self.ledger.hourly(plugId, lo * 3600, hi * 3600).addCallback(spanSums, wanted, weight)
        return d.addCallback(lambda sums: self._priced(wanted, sums, base, flat))

    def sumsMany(self, plugIds: list[str], now: float) -> Deferred:
        """L{sums} of every plug, for a ledger that sums many plugs at once (C{hourSumsMany}):
        the plugs not cached for this hour are grouped by the spans they still need (after the hour
        turns, nearly all need the same) and each group is summed in one read, instead of one read
        per plug (10,000 reads were ~2 s of CPU once an hour).  The plugs are grouped, and their sums
        priced and cached, in slices of the cooperator; fires with each plug's sums in C{plugIds}' order."""
        key, spans = self.spans(now)
        flat, weight = self.weight()
        results: dict[str, dict[str, list[float]]] = {}
        groups: dict[tuple[tuple[int, int], ...], list[tuple[str, list[list[float]]]]] = {}

        def group() -> Iterator[None]:
            for plugId in plugIds:
                cached = self._sums.get(plugId)
                if cached is not None and cached[0] == key:
                    results[plugId] = cached[2]
                else:
                    wanted, base = self._wanted(key[0], spans, cached)
                    groups.setdefault(wanted, []).append((plugId, base))
                yield None

        def price(read: dict[str, list[tuple[int, float]]], wanted: tuple[tuple[int, int], ...],
                  members: list[tuple[str, list[list[float]]]]) -> Deferred:
            empty = [(0, 0.0)] * len(wanted)

            def each() -> Iterator[None]:
                for plugId, base in members:
                    results[plugId] = self._keep(plugId, key, spans,
                                                 self._priced(wanted, fromStoreSums(read.get(plugId, empty)), base, flat))
                    yield None

            return self._cooperator.coiterate(each())

        def readGroups(_: Any) -> Deferred:
            return gatherResults([self.ledger.hourSumsMany([p for p, _ in members], wanted, weight).addCallback(
                price, wanted, members) for wanted, members in groups.items()], consumeErrors=True)

        d = self._cooperator.coiterate(group()).addCallback(readGroups)
        return d.addCallback(lambda _: [results[p] for p in plugIds])

    def sums(self, plugId: str, now: float) -> Deferred:
        """L{_read}'s sums, from the cache while the hour and day are the same."""
        key, spans = self.spans(now)
        cached = self._sums.get(plugId)
        if cached is not None and cached[0] == key:
            return succeed(cached[2])

        return self._read(plugId, now, cached).addCallback(lambda sums: self._keep(plugId, key, spans, sums))

    def _keep(self, plugId: str, key: tuple[int, date], spans: dict[str, tuple[int, int]],
              sums: dict[str, list[float]]) -> dict[str, list[float]]:
        """Cache a plug's sums read at C{key} (unless L{MAX_CACHED} other plugs are kept); return them."""
        if plugId in self._sums or len(self._sums) < MAX_CACHED:
            self._sums[plugId] = (key, spans, sums)
        return sums

    def withRows(self, sums: dict[str, list[float]], rows: list[Row],
                  spans: dict[str, tuple[int, int]], names: tuple[str, ...] = RANGE_NAMES) -> dict[str, list[float]]:
        """The earlier hours' C{[wh, cost]} per range plus the current hour's C{rows}, priced."""
        current = {name: list(sums[name]) for name in names}
        for start, wh in rows:
            cost = self.schedule.hourCost(start, wh, self.zone) if self.schedule is not None else 0.0
            for name in names:
                if spans[name][0] <= start // 3600 < spans[name][1]:
                    current[name][0] += wh
                    current[name][1] += cost
        return current

