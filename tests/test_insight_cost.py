"""Cost of hourly rows: time-of-use over daylight-saving days, dated tariff changes, buckets and rounding."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vesyncd.core.periods import UNITS, buckets
from vesyncd.insight.cost import (COST_DIGITS, addCost, dailyCharges, hourSpan, roundCost, rowsCost, rowsFromStore,
                                  yearlyCost)
from vesyncd.insight.tariff import Tariff, TariffSchedule
from vesyncd.insight.tariffconfig import tariffSchedule

BERLIN = ZoneInfo("Europe/Berlin")
PEAK, OFF_PEAK = 0.34, 0.22


def dayAndNight(charge: float = 0.0) -> dict[str, Any]:
    """A [[tariff]] table: peak 07:00-22:00 every day, off-peak otherwise."""
    return {"daily-charge": charge, "window": [
        {"days": "all", "from": "07:00", "to": "22:00", "price-kwh": PEAK},
        {"days": "all", "from": "22:00", "to": "07:00", "price-kwh": OFF_PEAK}]}


def history(period: str, value: str, rows: list[tuple[float, float]], zone: Any) -> dict[str, Any]:
    """An energy history document of the ledger's documented shape, summed from hourly rows."""
    spans = buckets(period, value, zone)
    out = []
    for start, end, label in spans:
        wh = sum(v for t, v in rows if start.timestamp() <= t < end.timestamp())
        out.append({"start": start.isoformat(), "label": label, "wh": round(wh, 6)})
    return {"plug": "p", "period": period, "value": value, "unit": UNITS[period], "timezone": str(zone),
            "buckets": out, "total_wh": round(sum(b["wh"] for b in out), 6)}


def everyHour(period: str, value: str, zone: Any, wh: float = 1000.0) -> list[tuple[float, float]]:
    """One row of C{wh} for every hour of a period."""
    start, end = hourSpan(period, value, zone)
    return [(t, wh) for t in range(start, end, 3600)]


def test_spring_forward_day_has_23_priced_hours() -> None:
    """On Berlin's spring-forward day 23 hours are priced: 8 off-peak (00-02, 03-07, 22-24) and 15 peak."""
    schedule = tariffSchedule({"currency": "EUR"}, {"tariff": [dayAndNight()]})
    rows = everyHour("day", "2026-03-29", BERLIN)
    assert len(rows) == 23
    doc = addCost(history("day", "2026-03-29", rows, BERLIN), rows, schedule, BERLIN)
    assert [b["label"] for b in doc["buckets"]][:3] == ["00:00", "01:00", "03:00"]
    assert [b["cost"] for b in doc["buckets"]].count(OFF_PEAK) == 8
    assert [b["cost"] for b in doc["buckets"]].count(PEAK) == 15
    assert doc["total_cost"] == roundCost(8 * OFF_PEAK + 15 * PEAK) == 6.86
    assert doc["currency"] == "EUR"
    assert doc["total_wh"] == 23000.0


def test_fall_back_day_has_25_priced_hours() -> None:
    """On Berlin's fall-back day 25 hours are priced, the repeated 02:00 hour twice at off-peak."""
    schedule = tariffSchedule({"currency": "EUR"}, {"tariff": [dayAndNight()]})
    rows = everyHour("day", "2026-10-25", BERLIN)
    assert len(rows) == 25
    doc = addCost(history("day", "2026-10-25", rows, BERLIN), rows, schedule, BERLIN)
    labels = [b["label"] for b in doc["buckets"]]
    assert labels.count("02:00") == 2
    assert [b["cost"] for b in doc["buckets"] if b["label"] == "02:00"] == [OFF_PEAK, OFF_PEAK]
    assert doc["total_cost"] == roundCost(10 * OFF_PEAK + 15 * PEAK) == 7.3


def test_dated_change_reprices_only_later_hours() -> None:
    """A tariff dated 15 March prices that day's hours and later; earlier hours keep the old price."""
    old = {"price-kwh": 0.20}
    rows = everyHour("month", "2026-03", BERLIN, wh=500.0)
    before = tariffSchedule({"currency": "EUR"}, {"tariff": [old]})
    after = tariffSchedule({"currency": "EUR"}, {"tariff": [old, {"from": "2026-03-15", "price-kwh": 0.30}]})
    first = addCost(history("month", "2026-03", rows, BERLIN), rows, before, BERLIN)
    second = addCost(history("month", "2026-03", rows, BERLIN), rows, after, BERLIN)
    for a, b in zip(first["buckets"], second["buckets"]):
        if b["label"] < "2026-03-15":
            assert a["cost"] == b["cost"] == 2.4  # 24 h x 0.5 kWh x 0.20
        else:
            assert b["cost"] == roundCost(b["wh"] / 1000 * 0.30)
            assert b["cost"] > a["cost"]
    # 29 March has 23 hours: the bucket follows the day's real length.
    assert [b["cost"] for b in second["buckets"] if b["label"] == "2026-03-29"] == [roundCost(23 * 0.5 * 0.30)]
    assert second["total_cost"] == roundCost(sum(b["cost"] for b in second["buckets"]))


def test_change_at_local_midnight_not_utc() -> None:
    """The change date is a local date: Berlin's 00:00-01:00 hour (23:00 UTC the day before) takes the new price."""
    schedule = TariffSchedule([Tariff.flat(0.1, "EUR"), Tariff.flat(0.5, "EUR", start=date(2026, 6, 1))])
    midnight = datetime(2026, 6, 1, tzinfo=BERLIN).timestamp()
    assert datetime.fromtimestamp(midnight, tz=timezone.utc).day == 31
    assert schedule.hourCost(midnight, 1000, BERLIN) == pytest.approx(0.5)
    assert schedule.hourCost(midnight - 3600, 1000, BERLIN) == pytest.approx(0.1)


def test_half_hour_zone_splits_an_hour_across_windows() -> None:
    """In a +05:30 zone the UTC hour 01:30-02:30 UTC is 07:00-08:00 local; 06:30-07:30 pays half of each price."""
    kolkata = ZoneInfo("Asia/Kolkata")
    schedule = tariffSchedule({"currency": "INR"}, {"tariff": [{"window": [
        {"days": "all", "from": "07:00", "to": "19:00", "price-kwh": 10},
        {"days": "all", "from": "19:00", "to": "07:00", "price-kwh": 4}]}]})
    hour = datetime(2026, 5, 5, 1, 0, tzinfo=timezone.utc).timestamp()  # 06:30 local
    assert schedule.hourCost(hour, 1000, kolkata) == pytest.approx(7.0)
    assert schedule.hourCost(hour + 3600, 1000, kolkata) == pytest.approx(10.0)


def test_year_buckets_and_daily_charge_kept_apart() -> None:
    """A year's monthly costs add up to the total; the daily charge is a separate figure, never in the cost."""
    schedule = tariffSchedule({"currency": "EUR"}, {"tariff": [dayAndNight(charge=0.35)]})
    rows = everyHour("year", "2025", BERLIN, wh=123.456)
    doc = addCost(history("year", "2025", rows, BERLIN), rows, schedule, BERLIN)
    assert len(doc["buckets"]) == 12
    assert doc["total_cost"] == round(sum(b["cost"] for b in doc["buckets"]), COST_DIGITS)
    assert doc["total_cost"] == pytest.approx(rowsCost(rows, schedule, BERLIN), abs=12 * 0.00005)
    assert doc["daily_charge_total"] == roundCost(365 * 0.35)
    plain = tariffSchedule({"currency": "EUR"}, {"tariff": [dayAndNight(charge=0.0)]})
    assert addCost(history("year", "2025", rows, BERLIN), rows, plain, BERLIN)["total_cost"] == doc["total_cost"]


def test_daily_charge_stops_at_today() -> None:
    """For a month still running, days after today are not charged."""
    schedule = TariffSchedule([Tariff.flat(0.3, "EUR", dailyCharge=1.0)])
    now = datetime(2026, 11, 10, 12, tzinfo=BERLIN).timestamp()
    doc = addCost(history("month", "2026-11", [], BERLIN), [], schedule, BERLIN, now=now)
    assert doc["daily_charge_total"] == 10.0
    assert doc["total_cost"] == 0.0
    assert dailyCharges(schedule, date(2026, 11, 1), date(2026, 12, 1)) == 30.0


def test_rows_outside_the_period_are_ignored() -> None:
    """Rows before or after the period do not change its cost."""
    schedule = TariffSchedule([Tariff.flat(1.0, "EUR")])
    start, end = hourSpan("day", "2026-02-02", BERLIN)
    rows = [(start - 3600, 5000.0), (start, 1000.0), (end, 7000.0)]
    doc = addCost(history("day", "2026-02-02", rows, BERLIN), rows, schedule, BERLIN)
    assert doc["total_cost"] == 1.0


def test_mismatched_document_refused() -> None:
    """A history made in another zone (other buckets) is refused rather than priced wrongly."""
    schedule = TariffSchedule([Tariff.flat(1.0, "EUR")])
    for day in ("2026-03-29", "2026-06-01"):
        doc = history("day", day, [], ZoneInfo("UTC"))
        with pytest.raises(ValueError):
            addCost(doc, [], schedule, BERLIN)


def test_rounding() -> None:
    """Costs are rounded to four decimals and never show a negative zero."""
    assert roundCost(0.123449) == 0.1234
    assert roundCost(-0.0) == 0.0 and str(roundCost(-0.00001)) == "0.0"


def test_rows_from_store_and_yearly_cost() -> None:
    """Store rows (hour number, watt-seconds) become (POSIX start, Wh); a constant load's year uses the mean price."""
    assert rowsFromStore([(490000, 7200)]) == [(490000 * 3600, 2.0)]
    schedule = tariffSchedule({"currency": "EUR"}, {"tariff": [dayAndNight()]})
    mean = (15 * PEAK + 9 * OFF_PEAK) / 24
    assert yearlyCost(10.0, schedule, date(2026, 1, 1)) == roundCost(10 * 8766 / 1000 * mean)
