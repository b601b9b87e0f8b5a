"""
Energy accounting kept in memory: the default L{IEnergyLedger} when no state directory is used.

The persistent ledger (C{vesyncd.store}) keeps the same figures in SQLite with hourly, daily and
monthly rollups; this one keeps a lifetime counter and today's total per plug, which is all the
live views need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from zope.interface import implementer

from .interfaces import IEnergyLedger


@dataclass(frozen=True)
class EnergySummary:
    """Watt-hours used today (in the configured time zone) and over the plug's whole life."""

    today_wh: float = 0.0
    lifetime_wh: float = 0.0


def localDate(at: float, zone: tzinfo | None) -> date:
    """The calendar date of POSIX time C{at} in C{zone} (the host's zone when None)."""
    return datetime.fromtimestamp(at, tz=zone).date() if zone else datetime.fromtimestamp(at).date()


@implementer(IEnergyLedger)
class MemoryLedger:
    """Lifetime and today's watt-hours per plug, in memory; the lifetime figure only grows."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        self._zone = zone
        self._lifetime: dict[str, float] = {}
        self._today: dict[str, tuple[date, float]] = {}

    def record(self, plugId: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Add one report's watt-seconds to the plug's lifetime and daily totals."""
        wh = wattSeconds / 3600.0
        self._lifetime[plugId] = self._lifetime.get(plugId, 0.0) + wh
        day = localDate(at, self._zone)
        previous = self._today.get(plugId)
        total = previous[1] if previous and previous[0] == day else 0.0
        self._today[plugId] = (day, total + wh)

    def summary(self, plugId: str, now: float) -> EnergySummary:
        """Today's total (zero once the day has turned) and the lifetime total."""
        today = self._today.get(plugId)
        todayWh = today[1] if today and today[0] == localDate(now, self._zone) else 0.0
        return EnergySummary(today_wh=todayWh, lifetime_wh=self._lifetime.get(plugId, 0.0))

    def forget(self, plugId: str) -> None:
        """Drop the plug's totals."""
        self._lifetime.pop(plugId, None)
        self._today.pop(plugId, None)
