"""
Energy accounting kept in memory: the default L{IEnergyLedger} when no state directory is used.

The persistent ledger (C{vesyncd.storage.store}) keeps the same figures in SQLite with hourly, daily and
monthly rollups; this one keeps a lifetime counter and today's total per plug, which is all the
live views need.
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from vesyncd.core.interfaces import IEnergyLedger
from vesyncd.core.model import EnergySummary
from vesyncd.core.periods import UNITS, LocalDays, buckets, hostZone, zoneName

#: Hours of history kept per plug in memory (about 400 days).
MEMORY_HOURS = 400 * 24


@implementer(IEnergyLedger)
class MemoryLedger:
    """Lifetime and today's watt-hours per plug, in memory; the lifetime figure only grows."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        self._zone = zone or hostZone()
        self._localDay = LocalDays(self._zone)
        self._lifetime: dict[str, float] = {}
        self._today: dict[str, tuple[date, float]] = {}
        self._hours: dict[str, dict[int, float]] = {}

    def record(self, plugId: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Add one report's watt-seconds to the plug's lifetime and daily totals."""
        wh = wattSeconds / 3600.0
        self._lifetime[plugId] = self._lifetime.get(plugId, 0.0) + wh
        day = self._localDay(at)
        previous = self._today.get(plugId)
        total = previous[1] if previous and previous[0] == day else 0.0
        self._today[plugId] = (day, total + wh)
        hours = self._hours.setdefault(plugId, {})
        hour = int(at // 3600)
        hours[hour] = hours.get(hour, 0.0) + wh
        if len(hours) > MEMORY_HOURS:
            del hours[min(hours)]

    def history(self, plugId: str, period: str, value: str) -> Deferred:
        """Buckets of one day, month or year from the hours kept in memory (see L{IEnergyLedger})."""
        try:
            spans = buckets(period, value, self._zone)
        except ValueError as e:
            return fail(e)
        hours = self._hours.get(plugId, {})
        rows: list[dict[str, Any]] = []
        for start, end, label in spans:
            lo, hi = int(start.timestamp() // 3600), int(end.timestamp() // 3600)
            wh = sum(v for h, v in hours.items() if lo <= h < hi) if hi - lo < len(hours) else sum(
                hours.get(h, 0.0) for h in range(lo, hi))
            rows.append({"start": start.isoformat(), "label": label, "wh": round(wh, 6)})
        return succeed({"plug": plugId, "period": period, "value": value, "unit": UNITS[period],
                        "timezone": zoneName(self._zone), "buckets": rows,
                        "total_wh": round(sum(r["wh"] for r in rows), 6)})

    def hourly(self, plugId: str, startTs: float, endTs: float) -> Deferred:
        """The plug's hourly rows in C{[startTs, endTs)} from memory (see L{IEnergyLedger.hourly})."""
        hours = self._hours.get(plugId, {})
        return succeed([(float(h * 3600), wh) for h, wh in sorted(hours.items()) if startTs <= h * 3600 < endTs])

    def hourlyMany(self, plugIds: Sequence[str], startTs: float, endTs: float) -> Deferred:
        """L{hourly} of many plugs, from memory."""
        out = {}
        for plugId in plugIds:
            rows = [(float(h * 3600), wh) for h, wh in sorted(self._hours.get(plugId, {}).items())
                    if startTs <= h * 3600 < endTs]
            if rows:
                out[plugId] = rows
        return succeed(out)

    def summary(self, plugId: str, now: float) -> EnergySummary:
        """Today's total (zero once the day has turned) and the lifetime total."""
        today = self._today.get(plugId)
        todayWh = today[1] if today and today[0] == self._localDay(now) else 0.0
        return EnergySummary(today_wh=todayWh, lifetime_wh=self._lifetime.get(plugId, 0.0))

    def lifetime(self, plugId: str) -> float:
        """The lifetime total alone."""
        return self._lifetime.get(plugId, 0.0)

    def forget(self, plugId: str) -> None:
        """Drop the plug's totals."""
        self._lifetime.pop(plugId, None)
        self._today.pop(plugId, None)
        self._hours.pop(plugId, None)
