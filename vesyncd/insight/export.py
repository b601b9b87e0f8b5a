"""
CSV export of hourly energy (and cost) for a range, with the time zone in the header.

One row per stored hour, oldest first: the hour's start in UTC and in the local zone (ISO 8601
with its offset, so the two 02:00 hours of a fall-back day stay apart), its watt-hours, and its
cost when a tariff is set.  Only times and numbers are written, never a name from the network,
so no cell can start a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone, tzinfo
from typing import Iterable, Iterator

from vesyncd.core.periods import zoneName
from vesyncd.insight.cost import COST_DIGITS, Row, roundCost
from vesyncd.insight.ranges import WH_DIGITS
from vesyncd.insight.tariff import TariffSchedule


def decimal(value: float, digits: int) -> str:
    """A number in plain decimal notation to C{digits} places, without trailing zeros (C{"1000"}, C{"0.1234"})."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def csvHeader(zone: tzinfo, schedule: TariffSchedule | None = None) -> list[str]:
    """The column names: C{start_utc}, C{start_local (ZONE)}, C{wh}, and C{cost (CURRENCY)} with a tariff."""
    names = ["start_utc", f"start_local ({zoneName(zone)})", "wh"]
    if schedule is not None:
        names.append(f"cost ({schedule.currency})")
    return names


def csvLines(rows: Iterable[Row], zone: tzinfo, schedule: TariffSchedule | None = None,
             start: float | None = None, end: float | None = None) -> Iterator[str]:
    """The CSV text line by line (each ending in CRLF), header first, for rows whose hour starts in C{[start, end)}.

    A generator, so a long range can be streamed without building the whole text.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(csvHeader(zone, schedule))
    for hourStart, wh in sorted(rows):
        if (start is not None and hourStart < start) or (end is not None and hourStart >= end):
            continue
        utc = datetime.fromtimestamp(hourStart, tz=timezone.utc)
        values = [utc.isoformat().replace("+00:00", "Z"), utc.astimezone(zone).isoformat(),
                  decimal(wh, WH_DIGITS)]
        if schedule is not None:
            values.append(decimal(roundCost(schedule.hourCost(hourStart, wh, zone)), COST_DIGITS))
        yield line(values)


def hourlyCSV(rows: Iterable[Row], zone: tzinfo, schedule: TariffSchedule | None = None,
              start: float | None = None, end: float | None = None) -> str:
    """The whole CSV text of L{csvLines}."""
    return "".join(csvLines(rows, zone, schedule, start, end))
