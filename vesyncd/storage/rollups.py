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
    """Add the raw rows past the watermark to the rollups and move the watermark past them (inside a
    transaction, SQLite); return how many rows were added.

    SQLite sums them itself, per plug and hour in one pass over the rows past the watermark (a range
    of rowids) into a temporary table, and upserts the hourly, daily and monthly totals from that: no
    row goes through Python.  A minute of 5,000 plugs reporting is 100,000 rows; built as Python tuples
    and lists they were ~35,000 objects in the writer thread, holding the interpreter lock the
    reactor needs and setting off dozens of collector passes.  The local day of each distinct hour
    (one or two a minute) comes from C{dayOf} and reaches SQL as a small temporary table.

    The same step writes the rollups every minute and, at start, those a crash left behind.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (WATERMARK,)).fetchone()
    mark = int(row[0]) if row is not None else 0
    count, last = conn.execute("SELECT COUNT(*), MAX(rowid) FROM reports WHERE rowid > ?", (mark,)).fetchone()
    if not count:
        return 0
    # One pass over the raw rows into a per-(plug, hour) table of this connection; the three
    # rollups are upserted from that (thousands of rows, not the minute's hundred thousand).
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rollup_delta (plug TEXT NOT NULL, hour INTEGER NOT NULL,"
                 " ws INTEGER NOT NULL, seconds INTEGER NOT NULL)")
    conn.execute("DELETE FROM rollup_delta")
    conn.execute("INSERT INTO rollup_delta SELECT plug, CAST(at / 3600 AS INTEGER), SUM(ws), SUM(seconds)"
                 " FROM reports WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2", (mark, last))
    upsert = (" ON CONFLICT (plug, {key}) DO UPDATE SET ws = {table}.ws + excluded.ws,"
              " seconds = {table}.seconds + excluded.seconds")
    conn.execute("INSERT INTO hours (plug, hour, ws, seconds) SELECT plug, hour, ws, seconds FROM rollup_delta"
                 " WHERE true" + upsert.format(key="hour", table="hours"))
    # The local day of each distinct hour (one or two a minute; thousands only when catching up on a
    # long backlog) goes into a small keyed table, so each of the daily and monthly upserts is one
    # pass over the delta (joining it to chunks of VALUES took one pass per chunk: hours for a year).
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rollup_days (hour INTEGER PRIMARY KEY, day TEXT NOT NULL)")
    conn.execute("DELETE FROM rollup_days")
    conn.executemany("INSERT INTO rollup_days (hour, day) VALUES (?, ?)",
                     [(h, dayOf(h)) for (h,) in conn.execute("SELECT DISTINCT hour FROM rollup_delta").fetchall()])
    for table, key, value in (("days", "day", "d.day"), ("months", "month", "substr(d.day, 1, 7)")):
        conn.execute(f"INSERT INTO {table} (plug, {key}, ws, seconds) SELECT r.plug, {value}, SUM(r.ws), SUM(r.seconds)"
                     f" FROM rollup_delta r JOIN rollup_days d ON d.hour = r.hour WHERE true GROUP BY 1, 2"
                     + upsert.format(key=key, table=table))
    conn.execute("DELETE FROM rollup_delta")
    conn.execute("DELETE FROM rollup_days")
    setWatermark(conn)
    return int(count)
