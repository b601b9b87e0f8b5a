"""
The energy rollups as SQL: adding watt-seconds per plug and hour to the hourly, daily and monthly
tables, and the watermark that says which raw report rows they already count.

On SQLite the store writes raw rows every second and adds them to the rollups every minute, before
a read and at shutdown (L{vesyncd.storage.store}): L{rollUpRaw} sums the raw rows past the watermark
(C{meta.rolled_rowid}) per plug and hour in SQL and moves the watermark to the last one.  At start
the same step adds what a crash left behind, so a committed report is counted exactly once.  Nothing here touches
the reactor: every function runs inside a transaction of the writer thread (or of the migration).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.logger import Logger

from vesyncd.storage.sqlite import insertRows

log = Logger()

#: The C{meta} key of the last raw report row the rollups count (SQLite).
WATERMARK = "rolled_rowid"


def addHours(into: dict[tuple[str, int], list[int]], more: dict[tuple[str, int], list[int]]
             ) -> dict[tuple[str, int], list[int]]:
    """Add C{more}'s watt-seconds and seconds per (plug, hour) into C{into}; return C{into}."""
    for key, (ws, seconds) in more.items():
        acc = into.get(key)
        if acc is None:
            into[key] = [ws, seconds]
        else:
            acc[0] += ws
            acc[1] += seconds
    return into


def calendarTotals(rows: Iterable[tuple[str, int, int, int]], dayOf: Callable[[int], str]
                   ) -> tuple[dict[tuple[str, str], list[int]], dict[tuple[str, str], list[int]]]:
    """Watt-seconds and seconds per (plug, local day) and (plug, month) of C{(plug, UTC hour,
    watt-seconds, seconds)} rows, C{dayOf} giving an hour's local day (YYYY-MM-DD)."""
    days: dict[tuple[str, str], list[int]] = {}
    for plugId, hour, ws, seconds in rows:
        acc = days.setdefault((plugId, dayOf(hour)), [0, 0])
        acc[0] += ws
        acc[1] += seconds
    months: dict[tuple[str, str], list[int]] = {}
    for (plugId, day), (ws, seconds) in days.items():
        acc = months.setdefault((plugId, day[:7]), [0, 0])
        acc[0] += ws
        acc[1] += seconds
    return days, months


def writeRollups(conn: Any, hours: dict[tuple[str, int], list[int]], dayOf: Callable[[int], str]) -> None:
    """Add watt-seconds and seconds per (plug, UTC hour) to the hourly rollup and, through C{dayOf}
    (an hour's local day), to the daily and monthly ones (inside a transaction)."""
    days, months = calendarTotals(((p, h, ws, s) for (p, h), (ws, s) in hours.items()), dayOf)
    for table, column, rows in (("hours", "hour", hours), ("days", "day", days), ("months", "month", months)):
        insertRows(conn, f"INSERT INTO {table} (plug, {column}, ws, seconds)",
                   f" ON CONFLICT (plug, {column}) DO UPDATE SET ws = {table}.ws + excluded.ws,"
                   f" seconds = {table}.seconds + excluded.seconds",
                   [(p, k, ws, s) for (p, k), (ws, s) in rows.items()],
                   ("text", "bigint" if table == "hours" else "text", "bigint", "bigint"))


def setWatermark(conn: Any) -> None:
    """Record that the rollups count every raw row there is now (inside the transaction that wrote them)."""
    conn.execute("INSERT INTO meta (key, value) VALUES (?, (SELECT COALESCE(MAX(rowid), 0) FROM reports))"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (WATERMARK,))


def lowerWatermark(conn: Any) -> None:
    """After deleting raw rows: keep the watermark at most the last row left, so a new row, which
    SQLite numbers one past the last, is never taken for one already counted."""
    conn.execute("UPDATE meta SET value = MIN(CAST(value AS INTEGER), (SELECT COALESCE(MAX(rowid), 0) FROM reports))"
                 " WHERE key = ?", (WATERMARK,))


def rollUpRaw(conn: Any, dayOf: Callable[[int], str]) -> int:
    """Add the raw rows past the watermark to the rollups, summed per plug and hour by SQLite, and
    move the watermark past them (inside a transaction, SQLite); return how many rows were added.

    The same step writes the rollups every minute and, at start, those a crash left behind.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (WATERMARK,)).fetchone()
    mark = int(row[0]) if row is not None else 0
    hours: dict[tuple[str, int], list[int]] = {}
    count = 0
    for plug, hour, ws, seconds, n in conn.execute(
            "SELECT plug, CAST(at / 3600 AS INTEGER), SUM(ws), SUM(seconds), COUNT(*) FROM reports"
            " WHERE rowid > ? GROUP BY 1, 2", (mark,)):
        hours[(plug, hour)] = [int(ws), int(seconds)]
        count += n
    if hours:
        writeRollups(conn, hours, dayOf)
        setWatermark(conn)
    return count
