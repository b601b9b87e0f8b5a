"""
The one way the store's writer thread changes the database: an immediate write transaction that is
rolled back whenever its body raises.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def writeTransaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """C{BEGIN IMMEDIATE} ... C{COMMIT}; when the body raises, roll back (a failed rollback is ignored:
    the original error is what the caller needs) and re-raise."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
