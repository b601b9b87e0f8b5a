"""
Copying a state directory's SQLite database into an empty PostgreSQL database, verified
(C{vesyncctl migrate --to postgresql://...}).

The source is first brought to the current schema (as the daemon would at start), then held under a
write lock (C{BEGIN IMMEDIATE}) for the whole copy and check, so a daemon still writing to it cannot
slip a row in between: its write waits, and a daemon busy writing makes the copy refuse to start.
Every table is copied in one PostgreSQL transaction with C{COPY} (raw reports and switches in their
SQLite order, so PostgreSQL's C{rowid} keeps it), then checked: the row count of every table and each
plug's watt-seconds in the raw reports and in the hourly, daily and monthly rollups must be equal on
both sides.  Any difference is a L{MigrationError}; the PostgreSQL transaction is committed before
the check, so a failed check leaves a copy to look at (run again with C{--force} to replace it).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vesyncd.storage import postgres
from vesyncd.storage.schema import SCHEMA_VERSION, StoreOpenError, migrateDatabase, schemaVersion
from vesyncd.storage.sqlite import writeTransaction

#: Every table of the schema, parents first.
TABLES = ("meta", "plugs", "reports", "hours", "days", "months", "automation", "switches", "baselines",
          "nodes", "leases")
#: Tables whose row order is their implicit SQLite C{rowid}.
ORDERED = ("reports", "switches")
#: Tables whose per-plug energy sums are compared.
ENERGY = ("reports", "hours", "days", "months")
#: C{meta} keys the target keeps as its own (its schema version).
OWN_META = ("schema_version",)


class MigrationError(Exception):
    """The copy cannot be made or did not verify; the message is one line saying what to do."""


@dataclass
class MigrationSummary:
    """What was copied, where, and how long it took."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    plugs: int = 0
    energyWh: float = 0.0
    seconds: float = 0.0

    def asDict(self) -> dict[str, Any]:
        """The summary as a JSON document."""
        return {"source": self.source, "target": self.target, "rows": dict(self.rows), "plugs": self.plugs,
                "energy_wh": round(self.energyWh, 3), "seconds": round(self.seconds, 3), "verified": True}


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _energy(conn: Any, table: str) -> dict[str, int]:
    return {str(plug): int(ws) for plug, ws in conn.execute(f"SELECT plug, SUM(ws) FROM {table} GROUP BY plug")}


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _sourceZone(conn: sqlite3.Connection) -> Any:
    """The zone the source's calendar rollups were built in (the host's when it never recorded one)."""
    from zoneinfo import ZoneInfo

    from vesyncd.core.periods import hostZone

    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'zone'").fetchone()
    except sqlite3.Error:
        row = None
    try:
        return ZoneInfo(str(row[0])) if row else hostZone()
    except (ValueError, KeyError, OSError):
        return hostZone()


def openSource(path: Path) -> tuple[sqlite3.Connection, Any]:
    """The SQLite database at C{path} migrated to the current schema, and its zone."""
    if not path.is_file():
        raise MigrationError(f"no vesyncd database at {path}: give the daemon's state directory with --state-dir")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=2.0)
        if schemaVersion(conn) > SCHEMA_VERSION:
            raise MigrationError(f"{path} has schema version {schemaVersion(conn)}, newer than this vesyncd "
                                 f"({SCHEMA_VERSION}): run the migration with the newer vesyncd")
        zone = _sourceZone(conn)
        migrateDatabase(conn, zone, str(path))
        return conn, zone
    except (sqlite3.Error, StoreOpenError) as e:
        raise MigrationError(f"cannot read {path}: {e}") from None


def targetRows(conn: Any) -> dict[str, int]:
    """Rows per table of the target that a copy would mix with (its own meta rows do not count)."""
    found = {table: _count(conn, table) for table in TABLES if table != "meta"}
    found["meta"] = int(conn.execute("SELECT COUNT(*) FROM meta WHERE key NOT IN ('schema_version', 'zone')")
                        .fetchone()[0])
    return {table: n for table, n in found.items() if n}


def copyTables(source: sqlite3.Connection, target: Any, *, force: bool = False,
               progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every table from C{source} into C{target} in one transaction (the target's rows first
    deleted when C{force}); the rows copied per table."""
    copied: dict[str, int] = {}
    with writeTransaction(target):
        if force:
            for table in reversed(TABLES):
                if table == "meta":
                    target.execute("DELETE FROM meta WHERE key <> 'schema_version'")
                else:
                    target.execute(f"DELETE FROM {table}")
        for table in TABLES:
            columns = _columns(source, table)
            order = " ORDER BY rowid" if table in ORDERED else ""
            rows = source.execute(f"SELECT {', '.join(columns)} FROM {table}{order}")
            if table == "meta":
                for key, value in rows:
                    if key not in OWN_META:
                        target.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                                       " DO UPDATE SET value = excluded.value", (key, value))
                copied[table] = _count(source, table)
                continue
            copied[table] = target.copyRows(table, columns, rows)
            if progress is not None:
                progress(table, copied[table])
    return copied


def verify(source: sqlite3.Connection, target: Any) -> tuple[int, int]:
    """Compare row counts of every table and each plug's energy in every energy table; raise
    L{MigrationError} naming the first difference.  The number of plugs and their lifetime
    watt-seconds (from the monthly rollups)."""
    for table in TABLES:
        if table == "meta":
            ours = {k: v for k, v in source.execute("SELECT key, value FROM meta") if k not in OWN_META}
            theirs = {k: v for k, v in target.execute("SELECT key, value FROM meta") if k not in OWN_META}
            if ours != theirs:
                raise MigrationError("verification failed: table meta differs after the copy")
            continue
        a, b = _count(source, table), _count(target, table)
        if a != b:
            raise MigrationError(f"verification failed: table {table} has {a} rows in SQLite, {b} in PostgreSQL")
    for table in ENERGY:
        a, b = _energy(source, table), _energy(target, table)
        if a != b:
            plug = next(p for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p))
            raise MigrationError(f"verification failed: plug {plug[:64]!r} has {a.get(plug, 0)} watt-seconds in "
                                 f"{table} in SQLite, {b.get(plug, 0)} in PostgreSQL")
    months = _energy(source, "months")
    return _count(source, "plugs"), sum(months.values())


def migrateToPostgres(path: Path, url: str, *, force: bool = False,
                      progress: Callable[[str, int], None] | None = None,
                      clock: Callable[[], float] = time.monotonic) -> MigrationSummary:
    """Copy the SQLite database at C{path} into the PostgreSQL database at C{url} and verify it.

    Refuses a target that already holds vesyncd rows unless C{force} (which replaces them), and a
    source another process is writing to (the daemon: stop it first).  Every error is a
    L{MigrationError} with a one-line message in which the password never appears.
    """
    started = clock()
    summary = MigrationSummary(source=str(path), target=postgres.redact(url))
    source, zone = openSource(path)
    database = None
    target = None
    try:
        try:
            source.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise MigrationError(f"{path} is being written to ({e}): stop vesyncd before migrating") from None
        try:
            database, target = postgres.openDatabase(url, zone)
        except StoreOpenError as e:
            raise MigrationError(str(e)) from None
        try:
            present = targetRows(target)
            if present and not force:
                listed = ", ".join(f"{table} {n}" for table, n in present.items())
                raise MigrationError(f"{summary.target} is not empty ({listed} rows): give an empty database, "
                                     f"or --force to replace what it holds")
            summary.rows = copyTables(source, target, force=force, progress=progress)
            summary.plugs, ws = verify(source, target)
        except MigrationError:
            raise
        except Exception as e:
            raise MigrationError(postgres.scrub(f"copying to {summary.target} failed: {e}", url)) from None
        summary.energyWh = ws / 3600.0
        summary.seconds = clock() - started
        return summary
    finally:
        try:
            source.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        source.close()
        if target is not None:
            target.close()
        if database is not None:
            database.close()
