"""
What one batch of the store's queue does to the database, in one transaction of the writer thread
(L{vesyncd.storage.store} makes the batches and retries them): forgotten plugs deleted, raw report
rows inserted, their energy added to the rollups, plug rows upserted; and the pruning of old raw rows.

Nothing here touches the reactor or the queue; every function takes the writer thread's
connection (SQLite or L{vesyncd.storage.postgres}) and raises whatever the database raised, with
the transaction rolled back.
"""

from __future__ import annotations

from typing import Any, Callable

from vesyncd.storage.rollups import addHours, lowerWatermark, rollUpRaw, writeRollups
from vesyncd.storage.schema import PLUG_COLUMNS
from vesyncd.storage.sqlite import insertRows, writeTransaction

#: Raw report rows: (plug, POSIX time, watt-seconds, seconds).
Reports = list[tuple[str, float, int, int]]
#: Watt-seconds and seconds per (plug, UTC hour) with no raw rows of their own.
Folded = dict[tuple[str, int], list[int]]

#: The tables holding a plug's rows, each with the column naming the plug.
PLUG_TABLES = (("plugs", "id"), ("reports", "plug"), ("hours", "plug"), ("days", "plug"), ("months", "plug"),
               ("switches", "plug"), ("baselines", "plug"), ("leases", "plug"))

#: Raw rows looked at, and deleted at most, per pruning transaction.
PRUNE_BATCH = 2_000


def writeBatch(conn: Any, reports: Reports, folded: Folded, plugs: dict[str, tuple[Any, ...]], deletes: set[str],
               *, roll: bool, deferRollups: bool, dayOf: Callable[[int], str]) -> None:
    """One transaction: the rows of the plugs in C{deletes} deleted, C{reports} inserted, C{folded}
    added to the rollups, C{plugs} (rows in L{PLUG_COLUMNS} order) upserted.

    With C{deferRollups} (SQLite) the raw rows reach the rollups later, from the watermark: here only
    with C{roll}, then every raw row past it.  Without it (PostgreSQL, where several nodes write) the
    batch adds its own reports to the rollups.  C{dayOf(hour)} is an hour's local day key.
    """
    with writeTransaction(conn):
        for plugId in deletes:
            for table, column in PLUG_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (plugId,))
        if deletes and deferRollups:
            lowerWatermark(conn)
        bulk = getattr(conn, "copyRows", None)  # PostgreSQL: COPY, several times faster than INSERTs
        if bulk is not None:
            bulk("reports", ("plug", "at", "ws", "seconds"), reports)
        else:
            conn.executemany("INSERT INTO reports (plug, at, ws, seconds) VALUES (?, ?, ?, ?)", reports)
        if not deferRollups:
            hours: Folded = {}
            for plugId, at, ws, seconds in reports:
                acc = hours.setdefault((plugId, int(at // 3600)), [0, 0])
                acc[0] += ws
                acc[1] += seconds
            writeRollups(conn, addHours(hours, folded), dayOf)
        else:
            if folded:
                writeRollups(conn, folded, dayOf)
            if roll:
                rollUpRaw(conn, dayOf)
        upserts = list(plugs.values())
        if upserts:
            names = ", ".join(PLUG_COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in PLUG_COLUMNS[1:])
            insertRows(conn, f"INSERT INTO plugs ({names})", f" ON CONFLICT (id) DO UPDATE SET {updates}", upserts)


def pruneOldest(conn: Any, cutoff: float, deferRollups: bool) -> int:
    """Delete up to L{PRUNE_BATCH} of the oldest raw rows older than C{cutoff}; return how many.

    Rows are appended in time order, so the oldest rows have the smallest rowids: walking from the
    first rowid needs no index on the time column (which would slow every insert).  With
    C{deferRollups} the watermark is lowered to match, as the rollups count by rowid.
    """
    rows = conn.execute("SELECT rowid, at FROM reports ORDER BY rowid LIMIT ?", (PRUNE_BATCH,)).fetchall()
    old = [(rowid,) for rowid, at in rows if at < cutoff]
    if not old:
        return 0
    with writeTransaction(conn):
        conn.executemany("DELETE FROM reports WHERE rowid = ?", old)
        if deferRollups:
            lowerWatermark(conn)
    return len(old)
