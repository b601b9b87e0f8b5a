"""
How the store's writer thread changes the database, on SQLite or on PostgreSQL
(L{vesyncd.storage.postgres}): an immediate write transaction that is rolled back whenever its body
raises, and multi-row inserts and upserts.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def writeTransaction(conn: Any) -> Iterator[Any]:
    """C{BEGIN IMMEDIATE} (C{BEGIN} on PostgreSQL) ... C{COMMIT}; when the body raises, roll back (a
    failed rollback is ignored: the original error is what the caller needs) and re-raise."""
    conn.execute("BEGIN" if getattr(conn, "backend", "sqlite") == "postgresql" else "BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except Exception:
            pass
        raise


#: Parameters per multi-row statement on PostgreSQL (its limit is 65,535).
MULTI_ROW_PARAMS = 2_000


def insertRows(conn: Any, head: str, tail: str, rows: list[tuple[Any, ...]],
               pgTypes: tuple[str, ...] | None = None) -> None:
    """C{head VALUES (?, ...) tail} for every row, rows distinct on the conflict key: one prepared
    statement per row on SQLite (fast in-process); on PostgreSQL one statement for all rows from
    C{unnest} of one array per column when C{pgTypes} names the columns' types, else multi-row
    C{VALUES} lists (one round trip per few hundred rows instead of one per row)."""
    if not rows:
        return
    one = f"({', '.join('?' * len(rows[0]))})"
    if getattr(conn, "backend", "sqlite") != "postgresql":
        conn.executemany(f"{head} VALUES {one}{tail}", rows)
        return
    if pgTypes is not None:
        arrays = ", ".join(f"?::{t}[]" for t in pgTypes)
        conn.execute(f"{head} SELECT * FROM unnest({arrays}){tail}", [list(column) for column in zip(*rows)])
        return
    per = max(1, MULTI_ROW_PARAMS // len(rows[0]))
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        conn.execute(f"{head} VALUES {', '.join([one] * len(chunk))}{tail}", [v for row in chunk for v in row])
