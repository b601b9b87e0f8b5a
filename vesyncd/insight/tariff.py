"""
Tariffs: a price per kWh for every minute of the week, a fixed daily charge, and dated changes.

A L{Tariff} is one contract: its currency, its daily charge, and its weekly price table as
segments of minutes of the week (Monday 00:00 is minute 0).  A L{TariffSchedule} is the list of
tariffs with the date each takes effect; the one in force on an hour's local date prices that
hour.  Build a schedule with L{vesyncd.insight.tariffconfig.tariffSchedule}, which validates.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

#: Minutes in a week; the weekly price table covers minutes [0, WEEK_MINUTES).
WEEK_MINUTES = 7 * 24 * 60
#: Day names in the order C{datetime.weekday()} numbers them (Monday = 0).
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Hour prices a schedule caches per zone (two years and a bit: a year's history and this year's totals).
CACHED_HOURS = 20_000


def minuteOfWeek(local: datetime) -> int:
    """The minute of the week of a local wall-clock time, Monday 00:00 being 0."""
    return local.weekday() * 1440 + local.hour * 60 + local.minute


def weekLabel(minute: int) -> str:
    """A minute of the week as text, e.g. C{"sat 07:00"}, for error messages."""
    minute %= WEEK_MINUTES
    day, rest = divmod(minute, 1440)
    return f"{DAY_NAMES[day]} {rest // 60:02d}:{rest % 60:02d}"


@dataclass(frozen=True)
class Tariff:
    """One contract: C{currency}, a fixed C{dailyCharge}, and weekly prices per kWh.

    C{segments} is a tuple of C{(startMinute, pricePerKwh)} sorted by start, the first starting at
    minute 0; each segment lasts until the next one starts (the last until the end of the week).
    C{start} is the first local date the tariff is in force (None: since always).
    """

    start: date | None
    currency: str
    dailyCharge: float
    segments: tuple[tuple[int, float], ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hourly: tuple[float | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.segments or self.segments[0][0] != 0:
            raise ValueError("a tariff's price table must start at minute 0 of the week")
        starts = tuple(s for s, _ in self.segments)
        if list(starts) != sorted(set(starts)) or starts[-1] >= WEEK_MINUTES:
            raise ValueError("a tariff's segments must start at increasing minutes within the week")
        object.__setattr__(self, "_starts", starts)
        # Most hours lie wholly inside one segment: price them with one lookup.
        hourly: list[float | None] = []
        for hour in range(168):
            first = self.priceAt(hour * 60)
            i = bisect.bisect_right(starts, hour * 60)
            nextStart = starts[i] if i < len(starts) else WEEK_MINUTES
            hourly.append(first if nextStart >= hour * 60 + 60 else None)
        object.__setattr__(self, "_hourly", tuple(hourly))

    @classmethod
    def flat(cls, price: float, currency: str, dailyCharge: float = 0.0, start: date | None = None) -> "Tariff":
        """A tariff with one price for every hour of the week."""
        return cls(start=start, currency=currency, dailyCharge=dailyCharge, segments=((0, price),))

    def priceAt(self, minute: int) -> float:
        """The price per kWh at a minute of the week."""
        i = bisect.bisect_right(self._starts, minute % WEEK_MINUTES) - 1
        return self.segments[i][1]

    def hourCost(self, local: datetime, wh: float) -> float:
        """The cost of C{wh} used in the hour that starts at wall-clock time C{local}, unrounded.

        The energy is spread evenly over the hour's 60 minutes, so an hour that straddles a window
        boundary (a zone offset of half an hour, or a window edge at :30) pays each price for its share.
        """
        m = minuteOfWeek(local)
        if m % 60 == 0:
            price = self._hourly[m // 60]
            if price is not None:
                return wh * price / 1000.0
        total = 0.0
        done = 0
        while done < 60:
            at = (m + done) % WEEK_MINUTES
            i = bisect.bisect_right(self._starts, at) - 1
            end = self._starts[i + 1] if i + 1 < len(self._starts) else WEEK_MINUTES
            piece = min(60 - done, end - at)
            total += self.segments[i][1] * piece
            done += piece
        return wh * total / 60.0 / 1000.0

    def meanPrice(self) -> float:
        """The time-weighted mean price per kWh over the week: what a constant load pays on average."""
        total = 0.0
        for i, (start, price) in enumerate(self.segments):
            end = self.segments[i + 1][0] if i + 1 < len(self.segments) else WEEK_MINUTES
            total += price * (end - start)
        return total / WEEK_MINUTES


class TariffSchedule:
    """Dated tariffs in one currency; the tariff in force on a local date prices that date's hours.

    Hours before the earliest tariff's date are priced by the earliest tariff (a schedule always
    prices every hour), so configuring a tariff for the first time prices all history.
    """

    def __init__(self, tariffs: list[Tariff]) -> None:
        if not tariffs:
            raise ValueError("a tariff schedule needs at least one tariff")
        ordered = sorted(tariffs, key=lambda t: t.start or date.min)
        currencies = {t.currency for t in ordered}
        if len(currencies) != 1:
            raise ValueError(f"tariffs must share one currency, not {sorted(currencies)}")
        self.currency: str = ordered[0].currency
        self.tariffs: tuple[Tariff, ...] = tuple(ordered)
        self._dates = [t.start or date.min for t in ordered]
        self._prices: dict[tzinfo, dict[float, float]] = {}

    def inForce(self, day: date) -> Tariff:
        """The tariff in force on local date C{day} (the earliest one before any tariff's date)."""
        i = bisect.bisect_right(self._dates, day) - 1
        return self.tariffs[max(i, 0)]

    def hourPrice(self, hourStart: float, zone: tzinfo) -> float:
        """The price per kWh of the hour starting at POSIX time C{hourStart} (its minutes' mean price).

        The hour's local start time in C{zone} picks the tariff (by date) and the price (by minute
        of the week).  Every plug's hour has the same price, so prices are cached per zone and hour
        (at most L{CACHED_HOURS}, then the cache starts again).
        """
        prices = self._prices.get(zone)
        if prices is None:
            prices = self._prices[zone] = {}
        price = prices.get(hourStart)
        if price is None:
            local = datetime.fromtimestamp(hourStart, tz=zone)
            price = self.inForce(local.date()).hourCost(local, 1000.0)
            if len(prices) >= CACHED_HOURS:
                prices.clear()
            prices[hourStart] = price
        return price

    def hourCost(self, hourStart: float, wh: float, zone: tzinfo) -> float:
        """The cost of C{wh} used in the hour starting at POSIX time C{hourStart}, unrounded."""
        return wh * self.hourPrice(hourStart, zone) / 1000.0

    def inForceAt(self, at: float, zone: tzinfo) -> Tariff:
        """The tariff in force at POSIX time C{at} (by its local date in C{zone})."""
        return self.inForce(datetime.fromtimestamp(at, tz=zone).date())

    def dailyCharge(self, day: date) -> float:
        """The fixed charge for local date C{day}."""
        return self.inForce(day).dailyCharge

    def toJSON(self) -> dict[str, Any]:
        """The schedule as JSON-native data, for C{info}-style views and logs."""
        return {"currency": self.currency,
                "tariffs": [{"from": t.start.isoformat() if t.start else None, "daily_charge": t.dailyCharge,
                             "mean_price_kwh": round(t.meanPrice(), 6),
                             "prices": [[weekLabel(s), p] for s, p in t.segments]} for t in self.tariffs]}
