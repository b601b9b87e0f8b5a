"""CSV export of hourly energy: the zone in the header, both 02:00 hours of a fall-back day, cost per hour."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from vesyncd.insight.cost import hourSpan
from vesyncd.insight.export import csvLines, decimal, hourlyCSV
from vesyncd.insight.tariff import Tariff, TariffSchedule

BERLIN = ZoneInfo("Europe/Berlin")


def test_fall_back_day_with_cost() -> None:
    """Each hour of a 25-hour day is one row, local times carry their offset, and the header names zone and currency."""
    start, end = hourSpan("day", "2026-10-25", BERLIN)
    rows = [(t, 250.0) for t in range(start, end, 3600)]
    text = hourlyCSV(reversed(rows), BERLIN, TariffSchedule([Tariff.flat(0.3, "EUR")]))
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["start_utc", "start_local (Europe/Berlin)", "wh", "cost (EUR)"]
    assert len(table) == 26
    assert table[1] == ["2026-10-24T22:00:00Z", "2026-10-25T00:00:00+02:00", "250", "0.075"]
    assert [r[1] for r in table[3:5]] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert text.endswith("\r\n")


def test_range_and_no_tariff() -> None:
    """Rows outside [start, end) are left out; without a tariff there is no cost column."""
    t = datetime(2026, 1, 5, 10, tzinfo=BERLIN).timestamp()
    rows = [(t - 3600, 1.0), (t, 0.1234567), (t + 3600, 3.0)]
    lines = list(csvLines(rows, BERLIN, start=t, end=t + 3600))
    assert lines == ["start_utc,start_local (Europe/Berlin),wh\r\n",
                     "2026-01-05T09:00:00Z,2026-01-05T10:00:00+01:00,0.123457\r\n"]


def test_decimal() -> None:
    """Numbers are written in plain decimal notation, never with an exponent."""
    assert decimal(1e-05, 6) == "0.00001"
    assert decimal(123456.0, 6) == "123456"
    assert decimal(-0.0, 4) == "0"
