"""
The one way the store's writer thread changes the database: an immediate write transaction that is
rolled back whenever its body raises, on SQLite or on PostgreSQL (L{vesyncd.storage.postgres}).
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
