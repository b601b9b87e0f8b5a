"""
The database of vesyncd's state directory (or of C{--database}), as data: the schema, its
migrations (the same on SQLite and PostgreSQL, see L{vesyncd.storage.postgres}), opening it, and
converting plug state to and from rows.  Nothing here touches the reactor; L{vesyncd.storage.store} runs
it all in its writer thread.  Tables are described in L{vesyncd.storage.store}.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterable

from twisted.logger import Logger

from vesyncd.storage.automationstore import SCHEMA as AUTOMATION_SCHEMA
from vesyncd.storage.rollups import WATERMARK, calendarTotals, rollUpRaw
from vesyncd.storage.sqlite import writeTransaction
from vesyncd.core.model import PlugState
from vesyncd.core.periods import zoneName

log = Logger()

SCHEMA_VERSION = 6
#: The key of the PostgreSQL advisory lock that serialises the migrations of nodes starting together.
MIGRATION_LOCK = 0x76657379
MAX_DEVICE_JSON = 4096
MAX_TEXT = 256

#: The columns of C{plugs} in schema 2.
PLUG_COLUMNS_2 = ("id", "alias", "first_seen", "last_seen", "address", "firmware", "encrypted", "device",
                  "relay", "relay_cause", "relay_changed", "power_w", "voltage_v", "current_a", "runtime_at",
                  "rssi_dbm", "power_on")
#: The columns schema 3 adds: the energy bound, refused energy, first-seen identity, and a conflict (JSON).
PLUG_COLUMNS_3 = ("report_until", "energy_refused_wh", "first_account", "first_host", "first_firmware", "conflict")
#: The columns of C{plugs} (schema 3) and the L{PlugState} field each one holds.
PLUG_COLUMNS = PLUG_COLUMNS_2 + PLUG_COLUMNS_3
MAX_CONFLICT_JSON = 2048


class StoreOpenError(Exception):
    """The database cannot be opened or created; the message is one line saying what to do."""


def dayKey(hour: int, zone: tzinfo) -> str:
    """The local day (YYYY-MM-DD) whose history buckets count UTC hour C{hour}.

    A day's buckets take every UTC hour from the one holding local midnight, exactly as
    L{vesyncd.core.energy.MemoryLedger} does, so the two ledgers agree even in half-hour zones.
    """
    return datetime.fromtimestamp(hour * 3600 + 3599, tz=zone).date().isoformat()


def localDay(at: float, zone: tzinfo) -> date:
    """The calendar date of POSIX time C{at} in C{zone}."""
    return datetime.fromtimestamp(at, tz=zone).date()


# -- schema and migrations -------------------------------------------------------------------------

def _migrate0to1(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Schema 1: plugs with alias and relay, and raw reports."""
    conn.execute("CREATE TABLE IF NOT EXISTS plugs (id TEXT PRIMARY KEY, alias TEXT, first_seen REAL,"
                 " last_seen REAL, relay INTEGER)")
    conn.execute("CREATE TABLE IF NOT EXISTS reports (plug TEXT NOT NULL, at REAL NOT NULL,"
                 " ws INTEGER NOT NULL, seconds INTEGER NOT NULL)")


def _migrate1to2(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Schema 2: every plug field, hourly/daily/monthly rollups (built from the raw reports), meta."""
    have = tableColumns(conn, "plugs")
    types = {"encrypted": "INTEGER", "relay_changed": "REAL", "power_w": "REAL", "voltage_v": "REAL",
             "current_a": "REAL", "runtime_at": "REAL", "rssi_dbm": "INTEGER"}
    for column in PLUG_COLUMNS_2:
        if column not in have:
            conn.execute(f"ALTER TABLE plugs ADD COLUMN {column} {types.get(column, 'TEXT')}")
    for table, key in (("hours", "hour INTEGER"), ("days", "day TEXT"), ("months", "month TEXT")):
        name = key.split()[0]
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (plug TEXT NOT NULL, {key} NOT NULL,"
                     f" ws INTEGER NOT NULL DEFAULT 0, seconds INTEGER NOT NULL DEFAULT 0,"
                     f" PRIMARY KEY (plug, {name})) WITHOUT ROWID")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    # SQLite's CAST truncates, PostgreSQL's rounds: FLOOR there (times are positive).
    hour = "FLOOR(at / 3600)" if backendOf(conn) == "postgresql" else "CAST(at / 3600 AS INTEGER)"
    conn.execute(f"INSERT INTO hours (plug, hour, ws, seconds) SELECT plug, {hour},"
                 " SUM(ws), SUM(seconds) FROM reports WHERE ws >= 0 GROUP BY 1, 2 ON CONFLICT (plug, hour)"
                 " DO UPDATE SET ws = hours.ws + excluded.ws, seconds = hours.seconds + excluded.seconds")
    rebuildCalendar(conn, zone)


def _migrate2to3(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Schema 3: per plug the energy bound and refused energy, the first-seen identity and a conflict."""
    have = tableColumns(conn, "plugs")
    types = {"report_until": "REAL", "energy_refused_wh": "REAL"}
    for column in PLUG_COLUMNS_3:
        if column not in have:
            conn.execute(f"ALTER TABLE plugs ADD COLUMN {column} {types.get(column, 'TEXT')}")


#: Schema 4's own tables: relay switches (bounded, pruned daily) and each plug's standby-baseline samples.
SCHEMA_4 = """
CREATE TABLE IF NOT EXISTS switches (plug TEXT NOT NULL, at REAL NOT NULL, relay INTEGER NOT NULL, cause TEXT);
CREATE INDEX IF NOT EXISTS switches_plug_at ON switches (plug, at);
CREATE TABLE IF NOT EXISTS baselines (plug TEXT PRIMARY KEY, data BLOB NOT NULL, saved REAL NOT NULL) WITHOUT ROWID;
"""


def statements(script: str) -> list[str]:
    """The statements of a DDL script, to run one by one inside the migration's transaction
    (C{executescript} would commit it)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def _migrate3to4(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Schema 4: automation items, relay switches and standby baselines."""
    for statement in statements(AUTOMATION_SCHEMA) + statements(SCHEMA_4):
        conn.execute(statement)


#: Schema 5's own tables: the nodes sharing one database and which node holds each plug's connection.
SCHEMA_5 = """
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, address TEXT, plug_address TEXT, started REAL NOT NULL,
    heartbeat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (plug TEXT PRIMARY KEY, node TEXT NOT NULL, expires REAL NOT NULL,
    since REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_node ON leases (node);
"""


def _migrate4to5(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Schema 5: the nodes of a cluster and the plug leases they hold."""
    for statement in statements(SCHEMA_5):
        conn.execute(statement)


def _migrate5to6(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Schema 6: the watermark of the rollups (every raw row so far is in them).  A newer schema
    keeps an older vesyncd, which would write rows past the watermark and roll them up itself, from
    opening the database; those rows would be counted twice by the replay after a crash."""
    if backendOf(conn) != "sqlite":
        return  # PostgreSQL writes each batch's rollups with it (several nodes write the same tables)
    conn.execute("INSERT INTO meta (key, value) VALUES (?, CAST((SELECT COALESCE(MAX(rowid), 0)"
                 " FROM reports) AS TEXT)) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (WATERMARK,))


MIGRATIONS: list[Callable[[sqlite3.Connection, tzinfo], None]] = [_migrate0to1, _migrate1to2, _migrate2to3,
                                                                   _migrate3to4, _migrate4to5, _migrate5to6]
assert len(MIGRATIONS) == SCHEMA_VERSION


def rebuildCalendar(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Recompute the day and month rollups from the hourly ones for C{zone} (inside a transaction)."""
    conn.execute("DELETE FROM days")
    conn.execute("DELETE FROM months")
    days, months = calendarTotals(conn.execute("SELECT plug, hour, ws, seconds FROM hours"),
                                  lambda hour: dayKey(hour, zone))
    conn.executemany("INSERT INTO days VALUES (?, ?, ?, ?)", [(p, d, w, s) for (p, d), (w, s) in days.items()])
    conn.executemany("INSERT INTO months VALUES (?, ?, ?, ?)", [(p, m, w, s) for (p, m), (w, s) in months.items()])
    conn.execute("INSERT INTO meta (key, value) VALUES ('zone', ?) ON CONFLICT (key) DO UPDATE"
                 " SET value = excluded.value", (zoneName(zone),))


def connect(path: Path) -> sqlite3.Connection:
    """Open the database file in WAL mode, usable from the one writer thread."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a killed process; only an OS crash may lose the last one.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def backendOf(conn: Any) -> str:
    """C{"postgresql"} for the PostgreSQL connection wrapper, C{"sqlite"} otherwise."""
    return getattr(conn, "backend", "sqlite")


def tableColumns(conn: Any, table: str) -> set[str]:
    """The column names of C{table} (empty when it does not exist), on either backend."""
    if backendOf(conn) == "postgresql":
        return {row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ?", (table,))}
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def schemaVersion(conn: Any) -> int:
    """The database's schema version: C{PRAGMA user_version} on SQLite, C{meta.schema_version} on PostgreSQL."""
    if backendOf(conn) == "postgresql":
        if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row is not None else 0
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def setSchemaVersion(conn: Any, version: int) -> None:
    """Record the schema version (inside the migration's transaction)."""
    if backendOf(conn) == "postgresql":
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
                     " DO UPDATE SET value = excluded.value", (str(version),))
    else:
        conn.execute(f"PRAGMA user_version = {int(version)}")


def migrateDatabase(conn: Any, zone: tzinfo, label: str, advice: str = "use another --state-dir") -> None:
    """Bring an open database to L{SCHEMA_VERSION} and its calendar rollups to C{zone}, in one transaction;
    a newer schema raises L{StoreOpenError}.  On PostgreSQL an advisory lock makes nodes starting
    together migrate one after the other."""
    version = schemaVersion(conn)
    if version > SCHEMA_VERSION:
        raise StoreOpenError(f"database {label} has schema version {version}, newer than this vesyncd "
                             f"({SCHEMA_VERSION}): upgrade vesyncd or {advice}")
    with writeTransaction(conn):
        if backendOf(conn) == "postgresql":
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            version = schemaVersion(conn)
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn, zone)
            log.info("store: migrated {path} to schema version {v}", path=label, v=step + 1)
        setSchemaVersion(conn, SCHEMA_VERSION)
        if backendOf(conn) == "sqlite":
            days: dict[int, str] = {}
            added = rollUpRaw(conn, lambda hour: days.get(hour) or days.setdefault(hour, dayKey(hour, zone)))
            if added:
                log.info("store: added {n} reports written before the last stop of {path} to the hourly, daily"
                         " and monthly totals", n=added, path=label)
        row = conn.execute("SELECT value FROM meta WHERE key = 'zone'").fetchone()
        if row is None or row[0] != zoneName(zone):
            log.info("store: time zone changed from {old} to {new}: rebuilding daily and monthly totals",
                     old=row[0] if row else None, new=zoneName(zone))
            rebuildCalendar(conn, zone)


def openDatabase(path: Path, zone: tzinfo, connector: Callable[[Path], sqlite3.Connection] = connect
                 ) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the SQLite database; raise L{StoreOpenError} with advice."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        conn = connector(path)
        try:
            migrateDatabase(conn, zone, str(path))
        except StoreOpenError:
            conn.close()
            raise
        return conn
    except StoreOpenError:
        raise
    except (sqlite3.Error, OSError) as e:
        raise StoreOpenError(
            f"cannot use the database {path} in state directory {directory}: {e}; make the directory "
            f"writable by the daemon's user (with free space), or choose another with --state-dir") from None


def _text(value: Any) -> str | None:
    """A bounded string, or None."""
    return None if value is None else str(value)[:MAX_TEXT]


def plugRow(plug: PlugState) -> tuple[Any, ...]:
    """The C{plugs} row of a plug's state, in L{PLUG_COLUMNS} order (strings bounded)."""
    device = json.dumps(plug.device, default=str)[:MAX_DEVICE_JSON] if plug.device else None
    relay = None if plug.relay is None else int(bool(plug.relay))
    first = plug.first_identity or {}
    conflict = json.dumps(plug.conflict, default=str)[:MAX_CONFLICT_JSON] if plug.conflict else None
    return (plug.id, _text(plug.alias), plug.first_seen, plug.last_seen, _text(plug.address), _text(plug.firmware),
            int(bool(plug.encrypted)), device, relay, _text(plug.relay_cause), plug.relay_changed, plug.power_w,
            plug.voltage_v, plug.current_a, plug.runtime_at, plug.rssi_dbm, _text(plug.power_on),
            plug.report_until, plug.energy_refused_wh, _text(first.get("account")), _text(first.get("host")),
            _text(first.get("firmware")), conflict)


def plugFromRow(row: Iterable[Any]) -> PlugState:
    """Rebuild an offline L{PlugState} from a C{plugs} row (bad fields become None)."""
    values = dict(zip(PLUG_COLUMNS, row))
    device: dict[str, Any] = {}
    try:
        loaded = json.loads(values["device"]) if values["device"] else {}
        if isinstance(loaded, dict):
            device = loaded
    except ValueError:
        pass

    def num(name: str) -> float | None:
        v = values.get(name)
        return float(v) if isinstance(v, (int, float)) else None

    policy = values.get("power_on")
    relay = values.get("relay")
    first = None
    if any(values.get(k) for k in ("first_account", "first_host", "first_firmware")):
        first = {k: (str(values[f"first_{k}"]) if values.get(f"first_{k}") else None)
                 for k in ("account", "host", "firmware")}
    conflict = None
    try:
        loaded = json.loads(values["conflict"]) if values.get("conflict") else None
        if isinstance(loaded, dict) and {"at", "fields", "first", "now"} <= set(loaded):
            conflict = loaded
    except ValueError:
        pass
    return PlugState(
        id=str(values["id"]), alias=values.get("alias") or None, online=False,
        relay=None if relay is None else bool(relay), relay_cause=values.get("relay_cause"),
        relay_changed=num("relay_changed"), power_w=num("power_w"), voltage_v=num("voltage_v"),
        current_a=num("current_a"), runtime_at=num("runtime_at"),
        rssi_dbm=int(values["rssi_dbm"]) if isinstance(values.get("rssi_dbm"), int) else None,
        firmware=values.get("firmware"), encrypted=bool(values.get("encrypted")), device=device,
        address=values.get("address"), first_seen=num("first_seen"), last_seen=num("last_seen"),
        power_on=policy if policy in ("on", "off", "last") else None, report_until=num("report_until"),
        energy_refused_wh=num("energy_refused_wh") or 0.0, first_identity=first, conflict=conflict)


# -- the writer ------------------------------------------------------------------------------------
