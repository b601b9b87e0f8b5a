"""
Cost: hourly energy rows priced with a L{TariffSchedule}, per hour and per history bucket.

Pricing is a pure function of the hourly rows and the schedule: nothing priced is stored, so a
changed tariff re-prices history the next time it is asked for, and a dated change re-prices only
the hours on and after its date (earlier hours keep the tariff that was in force then).

Rows are C{(hourStart, wh)}: the hour's start as POSIX seconds (UTC, a multiple of 3600) and the
watt-hours used in it, as the store's C{hours} table keeps them (L{rowsFromStore} converts).

Rounding: each hour's cost is kept unrounded; a bucket's C{cost} is its hours' sum rounded to
L{COST_DIGITS} decimals (half to even), and C{total_cost} is the sum of the bucket costs shown,
rounded again to the same digits, so a table's column adds up to its total.  The fixed daily
charge is never in C{cost} or C{total_cost}: it is C{daily_charge_total}, for the household.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Iterable

from vesyncd.core.periods import buckets, parsePeriod
from vesyncd.insight.tariff import TariffSchedule

#: Decimal places of every cost figure (0.0001 of the currency's unit).
COST_DIGITS = 4
#: Hours in an average year (365.25 days), for yearly figures of a constant load.
YEAR_HOURS = 8766

Row = tuple[float, float]


def roundCost(value: float) -> float:
    """A cost rounded to L{COST_DIGITS} decimals, as every reported cost is."""
    return round(value, COST_DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0


def rowsFromStore(pairs: Iterable[tuple[int, int]]) -> list[Row]:
    """Rows from the store's C{(hour, ws)} pairs: hour numbers since the epoch and watt-seconds."""
    return [(hour * 3600, ws / 3600.0) for hour, ws in pairs]


def hourSpan(period: str, value: str, zone: tzinfo) -> tuple[int, int]:
    """The POSIX seconds C{[start, end)} of a day, month or year in C{zone}: the rows to price it.

    @raise ValueError: as L{vesyncd.core.periods.parsePeriod}.
    """
    spans = buckets(period, value, zone)
    return int(spans[0][0].timestamp()), int(spans[-1][1].timestamp())


def rowsCost(rows: Iterable[Row], schedule: TariffSchedule, zone: tzinfo,
             start: float | None = None, end: float | None = None) -> float:
    """The unrounded cost of the rows whose hour starts in C{[start, end)} (all rows when None)."""
    total = 0.0
    for hourStart, wh in rows:
        if (start is None or hourStart >= start) and (end is None or hourStart < end):
            total += schedule.hourCost(hourStart, wh, zone)
    return total


def dailyCharges(schedule: TariffSchedule, first: date, after: date, upTo: date | None = None) -> float:
    """The unrounded sum of the daily charges of local dates C{first} up to C{after} (excluded).

    Dates after C{upTo} (today, for a period still running) are not charged yet.
    """
    total = 0.0
    day = first
    last = min(after - timedelta(days=1), upTo) if upTo is not None else after - timedelta(days=1)
    while day <= last:
        total += schedule.dailyCharge(day)
        day += timedelta(days=1)
    return total


def addCost(doc: dict[str, Any], rows: Iterable[Row], schedule: TariffSchedule, zone: tzinfo,
            now: float | None = None) -> dict[str, Any]:
    """A copy of an energy history document with its cost (see L{IEnergyLedger.history} for C{doc}).

    Adds C{"currency"}, C{"total_cost"} and C{"daily_charge_total"} beside C{"total_wh"}, and
    C{"cost"} to every bucket.  C{rows} are the plug's hourly rows over at least L{hourSpan} of the
    document's period (rows outside it are ignored); C{zone} must be the ledger's.  With C{now},
    days after now's local date are left out of C{daily_charge_total}.

    @raise ValueError: the document's buckets are not those of its period in C{zone}.
    """
    spans = buckets(doc["period"], doc["value"], zone)
    if [(start.isoformat(), label) for start, _, label in spans] != [(b.get("start"), b.get("label"))
                                                                    for b in doc["buckets"]]:
        raise ValueError(f"the history's buckets are not those of {doc['period']} {doc['value']} in {zone}")
    starts = [s.timestamp() for s, _, _ in spans]
    end = spans[-1][1].timestamp()
    sums = [0.0] * len(spans)
    for hourStart, wh in rows:
        if starts[0] <= hourStart < end:
            sums[bisect.bisect_right(starts, hourStart) - 1] += schedule.hourCost(hourStart, wh, zone)
    costs = [roundCost(s) for s in sums]
    first, after = parsePeriod(doc["period"], doc["value"])
    today = datetime.fromtimestamp(now, tz=zone).date() if now is not None else None
    result = dict(doc)
    result["buckets"] = [dict(b, cost=c) for b, c in zip(doc["buckets"], costs)]
    result["currency"] = schedule.currency
    result["total_cost"] = roundCost(sum(costs))
    result["daily_charge_total"] = roundCost(dailyCharges(schedule, first, after, today))
    return result


def yearlyCost(watts: float, schedule: TariffSchedule, day: date) -> float:
    """What a constant load of C{watts} costs in a year at the tariff in force on C{day}.

    C{watts} x L{YEAR_HOURS} h at the tariff's time-weighted mean price (a constant load spends
    the same time in every window), rounded like every cost.
    """
    return roundCost(watts * YEAR_HOURS / 1000.0 * schedule.inForce(day).meanPrice())
