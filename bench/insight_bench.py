"""
Benchmark of energy insight: memory of the baseline tracker and the live power chart at 10,000
plugs, and the time to price a year of hourly rows for one plug.

Run: .venv/bin/python bench/insight_bench.py [--plugs N] [--repeat N]
Memory is what tracemalloc sees allocated by the trackers (their arrays, objects and dicts), in
two cases: "typical", each plug reporting every 180 s (the plugs' energy report interval), and
"worst", each plug read every 10 s or faster (the hour series' cap).  The baseline rings and the
day rings have a fixed size from a plug's first reading, so a week of readings costs what one does.
Prints a table and one JSON line.  Nothing here asserts; it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from typing import Any
from zoneinfo import ZoneInfo

from vesyncd.core.periods import UNITS, buckets
from vesyncd.insight.baseline import BaselineTracker
from vesyncd.insight.chart import PowerHistory
from vesyncd.insight.cost import addCost, hourSpan
from vesyncd.insight.ranges import periodTotals
from vesyncd.insight.tariffconfig import tariffSchedule

ZONE = ZoneInfo("Europe/Berlin")
NOW = 1_796_000_000.0  # 2026-11-30


def memory(plugs: int, every: int) -> dict[str, float]:
    """Bytes per plug held by a BaselineTracker and a PowerHistory after an hour of readings every C{every} s."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    baselines = BaselineTracker()
    history = PowerHistory()
    names = [f"plug-{i:05d}" for i in range(plugs)]
    base = tracemalloc.get_traced_memory()[0]
    for offset in range(-3600 + every, 1, every):
        for i, name in enumerate(names):
            at = NOW + offset - (i % every)
            history.add(name, at, 40.0 + i % 7)
            baselines.add(name, at, 40.0 + i % 7)
    middle = tracemalloc.get_traced_memory()[0]
    # Drop the history to split the two figures.
    del history
    afterHistory = tracemalloc.get_traced_memory()[0]
    del baselines
    tracemalloc.stop()
    names.clear()
    total = middle - base
    historyBytes = middle - afterHistory
    return {"total_bytes": total, "per_plug": total / plugs, "history_per_plug": historyBytes / plugs,
            "baseline_per_plug": (total - historyBytes) / plugs, "readings_per_plug": 3600 // every,
            "overhead_bytes": base - before}


def pricing(repeat: int) -> dict[str, float]:
    """Median milliseconds to price a year of hourly rows (year history with cost; period totals)."""
    schedule = tariffSchedule({"currency": "EUR"}, {"tariff": [
        {"daily-charge": 0.35, "window": [
            {"days": "mon-fri", "from": "07:00", "to": "22:00", "price-kwh": 0.34},
            {"days": "mon-fri", "from": "22:00", "to": "07:00", "price-kwh": 0.22},
            {"days": "sat,sun", "from": "07:00", "to": "07:00", "price-kwh": 0.22}]},
        {"from": "2026-07-01", "price-kwh": 0.30}]})
    assert schedule is not None
    start, end = hourSpan("year", "2026", ZONE)
    rows = [(t, 50.0 + (t // 3600) % 24) for t in range(start, end, 3600)]
    spans = buckets("year", "2026", ZONE)
    doc: dict[str, Any] = {"plug": "p", "period": "year", "value": "2026", "unit": UNITS["year"],
                           "timezone": "Europe/Berlin", "total_wh": 0.0,
                           "buckets": [{"start": s.isoformat(), "label": label, "wh": 0.0} for s, _, label in spans]}
    history: list[float] = []
    totals: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        addCost(doc, rows, schedule, ZONE, now=NOW)
        t1 = time.perf_counter()
        periodTotals(rows, NOW, ZONE, schedule)
        t2 = time.perf_counter()
        history.append((t1 - t0) * 1000)
        totals.append((t2 - t1) * 1000)
    return {"rows": len(rows), "year_history_ms": statistics.median(history),
            "period_totals_ms": statistics.median(totals)}


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--plugs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    typical = memory(args.plugs, 180)
    worst = memory(args.plugs, 10)
    price = pricing(args.repeat)
    print(f"{'case':<28}{'per plug':>12}{'baseline':>12}{'chart':>12}{'at ' + format(args.plugs, ','):>14}")
    for name, m in (("typical (a reading / 180 s)", typical), ("worst (a reading / 10 s)", worst)):
        print(f"{name:<28}{m['per_plug']:>10,.0f} B{m['baseline_per_plug']:>10,.0f} B"
              f"{m['history_per_plug']:>10,.0f} B{m['total_bytes'] / 2**20:>11,.1f} MiB")
    print(f"price a year of hourly rows ({price['rows']} rows, time-of-use, one dated change):"
          f" history {price['year_history_ms']:.1f} ms, period totals {price['period_totals_ms']:.1f} ms")
    print(json.dumps({"plugs": args.plugs, "typical": typical, "worst": worst, "pricing": price}))


if __name__ == "__main__":
    main()
