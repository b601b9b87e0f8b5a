"""
Benchmark of the SQLite store: bulk load, history reads from the rollups, CPU cost at a real cadence,
and the once-a-minute rollup of 5,000 plugs reporting every 3 s (100,000 raw rows): its time, and how
long it holds up another thread of the process (a thread sleeping 1 ms at a time stands for the
reactor) and how many collector passes it sets off.

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
            store._write((batch, {}, {}, set(), True))
            rows += len(batch)
            batch = []
    if batch:
        store._write((batch, {}, {}, set(), True))
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


def rollupMinute(directory: Path, plugs: int = 5000, reports: int = 100_000) -> dict[str, float]:
    """The minute's rollup step (L{rollUpRaw}, as the writer thread runs it) over C{reports} raw rows
    of C{plugs} plugs: wall and CPU ms, the longest extra wait of a thread sleeping 1 ms at a time
    meanwhile, and the cyclic collector's passes it set off."""
    import gc
    import threading

    from vesyncd.storage.rollups import rollUpRaw
    from vesyncd.storage.sqlite import writeTransaction

    clock = Clock()
    clock.advance(START + 400 * 86400)
    store = Store.open(directory / "rollup.sqlite3", ZONE, clock, run=inlineRunner)
    conn = store.connection()
    at = clock.seconds()
    with writeTransaction(conn):
        conn.executemany("INSERT INTO reports (plug, at, ws, seconds) VALUES (?, ?, ?, 3)",
                         [(f"plug{i % plugs:05d}", at + i * 60.0 / reports, 60) for i in range(reports)])
    worst, stop, passes = [0.0], [False], [0]

    def sleeper() -> None:
        while not stop[0]:
            t = time.perf_counter()
            time.sleep(0.001)
            worst[0] = max(worst[0], time.perf_counter() - t - 0.001)

    def counted(phase: str, info: dict[str, Any]) -> None:
        passes[0] += phase == "start"

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    worst[0] = 0.0
    gc.callbacks.append(counted)
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    with writeTransaction(conn):
        added = rollUpRaw(conn, store._day)
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    gc.callbacks.remove(counted)
    stop[0] = True
    thread.join()
    result(store.stop())
    return {"rollup_rows": added, "rollup_ms": round(wall * 1000, 1), "rollup_cpu_ms": round(cpu * 1000, 1),
            "rollup_other_thread_wait_ms": round(worst[0] * 1000, 1), "rollup_gc_passes": passes[0]}


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
    figures.update(rollupMinute(directory))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        sys.stdout.write(f"{key:<{width}}  {value}\n")
    sys.stdout.write(json.dumps({"bench": "store", **figures}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
