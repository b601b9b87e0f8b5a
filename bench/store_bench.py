"""
Benchmark of the SQLite store: bulk load, history reads from the rollups, and CPU cost at a real cadence.

Run: .venv/bin/python bench/store_bench.py [--quick] [--dir DIR]
Prints a table and one JSON line.  Nothing here asserts on time; it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock

from vesyncd.core.model import PlugState
from vesyncd.storage.store import Store
from vesyncd.storage.runner import inlineRunner
from vesyncd.storage.ledger import SQLiteLedger

ZONE = ZoneInfo("America/New_York")
START = 1767243600.0  # 2026-01-01T00:00-05:00
INTERVAL = 180.0
BATCH = 50_000


def result(d: Any) -> Any:
    """The result of a Deferred that fired synchronously."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out[0]


def load(store: Store, plugs: int, days: float) -> tuple[int, float]:
    """Write C{days} of reports for C{plugs} plugs through the store's batch writer; (rows, seconds)."""
    steps = int(days * 86400 / INTERVAL)
    rows = 0
    began = time.perf_counter()
    batch: list[tuple[str, float, int, int]] = []
    for step in range(steps):
        at = START + step * INTERVAL
        for p in range(plugs):
            batch.append((f"plug{p:03d}", at + p, 1800 + (step + p) % 900, 180))
        if len(batch) >= BATCH:
            store._write((batch, {}, {}, set()))
            rows += len(batch)
            batch = []
    if batch:
        store._write((batch, {}, {}, set()))
        rows += len(batch)
    return rows, time.perf_counter() - began


def timeHistory(ledger: SQLiteLedger, period: str, value: str, runs: int = 21) -> float:
    """Median milliseconds of one history read."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        doc = result(ledger.history("plug000", period, value))
        times.append((time.perf_counter() - began) * 1000)
        assert isinstance(doc, dict), doc
    return statistics.median(times)


def cadence(store: Store, ledger: SQLiteLedger, rate: float, seconds: float) -> dict[str, float]:
    """Record C{rate} reports/s for C{seconds} wall seconds (flushing every second); CPU share of one core.

    Each report also queues its plug's row (the daemon does on every energy event), and three more
    plug rows per report stand for the runtime events of the 60 s refresh of 10,000 plugs.
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = 0
    for second in range(int(seconds)):
        tick = wall0 + second
        for i in range(int(rate)):
            plug = f"sim{(second * int(rate) + i) % 10_000:05d}"
            ledger.record(plug, START + 400 * 86400 + second, 1800 + i, 183)
            for k in range(4):
                store.putPlug(PlugState(id=f"sim{(second * int(rate) * 4 + i * 4 + k) % 10_000:05d}", alias=None,
                                        relay=True, power_w=20.0, voltage_v=120.1, firmware="1.89",
                                        device={"deviceName": "vesync_wifi_outlet"}, last_seen=float(second)))
            n += 1
        result(store.flush())
        delay = tick + 1 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"reports": n, "wall_s": wall, "cpu_s": cpu, "cpu_pct_one_core": 100 * cpu / wall,
            "cpu_us_per_report": 1e6 * cpu / max(n, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="30 days instead of a year, 10 s cadence run (~30 s)")
    p.add_argument("--dir", help="directory for the database (default: a temporary one)")
    args = p.parse_args(argv)
    days, cadenceSeconds = (30, 10) if args.quick else (365, 30)
    directory = Path(args.dir or tempfile.mkdtemp(prefix="vesyncd-bench-"))
    clock = Clock()
    clock.advance(START + 400 * 86400)
    store = Store.open(directory / "bench.sqlite3", ZONE, clock, run=inlineRunner)
    rows, loadSeconds = load(store, 50, days)
    size = (directory / "bench.sqlite3").stat().st_size + sum(
        f.stat().st_size for f in directory.glob("bench.sqlite3-*"))
    ledger = SQLiteLedger(store, clock.seconds())
    figures: dict[str, Any] = {
        "plugs": 50, "days": days, "rows": rows, "load_s": round(loadSeconds, 2),
        "load_rows_per_s": round(rows / loadSeconds), "db_mb": round(size / 1e6, 1),
        "history_year_ms": round(timeHistory(ledger, "year", "2026"), 3),
        "history_month_ms": round(timeHistory(ledger, "month", "2026-01"), 3),
        "history_day_ms": round(timeHistory(ledger, "day", "2026-01-15"), 3),
    }
    run = cadence(store, ledger, 55, cadenceSeconds)
    figures.update({"cadence_reports_per_s": 55, "cadence_s": round(run["wall_s"], 1),
                    "cadence_cpu_pct_one_core": round(run["cpu_pct_one_core"], 2),
                    "cadence_cpu_us_per_report": round(run["cpu_us_per_report"], 1)})
    result(store.stop())
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        sys.stdout.write(f"{key:<{width}}  {value}\n")
    sys.stdout.write(json.dumps({"bench": "store", **figures}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
