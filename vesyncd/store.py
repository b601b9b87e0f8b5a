"""
SQLite persistence for vesyncd: the schema and its migrations, and one writer that never blocks the reactor.

Every database call runs in one dedicated thread (a one-thread pool), so SQLite's single-writer rule
holds and the reactor never waits on an fsync.  Writers queue work in memory: plug state is
coalesced per plug (only the latest row matters), energy reports go to a bounded deque that is
flushed every C{flushInterval} seconds or every C{batchRows} reports, in one transaction per batch.
When a write fails (full disk, read-only file system, I/O error) the batch goes back to the front
of the queue and is retried with exponential backoff; if the queue overflows meanwhile the oldest
raw report rows are folded into their hourly totals, so the energy is still counted in every
rollup and lifetime figure and only the raw row is lost (counted in C{stats["raw_dropped"]}).

Tables (schema version L{SCHEMA_VERSION}, in C{PRAGMA user_version}):
 - C{plugs}: one row per plug with everything needed to rebuild its L{PlugState};
 - C{reports}: every raw C{/report} (plug, time, watt-seconds, seconds), pruned after the retention;
 - C{hours}: watt-seconds per plug and UTC hour (C{hour = floor(at / 3600)}), kept forever;
 - C{days}, C{months}: per plug and local day / month of the configured zone, kept forever and
   rebuilt from C{hours} if the zone changes;
 - C{meta}: key/value pairs (the zone the day and month rollups were built in).
"""

from __future__ import annotations

import collections
import json
import sqlite3
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterable

from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .hub import PlugState
from .periods import zoneName

log = Logger()

SCHEMA_VERSION = 2
FLUSH_INTERVAL = 1.0
BATCH_ROWS = 500
#: Raw reports kept in memory while the database is slow or failing (about an hour for 10,000 plugs).
MAX_QUEUED_REPORTS = 200_000
#: Reports written per transaction at most, so one batch never holds the writer for long.
MAX_BATCH = 20_000
PRUNE_BATCH = 2_000
RETRY_MIN = 1.0
RETRY_MAX = 60.0
MAX_DEVICE_JSON = 4096
MAX_TEXT = 256

#: The columns of C{plugs} (schema 2) and the L{PlugState} field each one holds.
PLUG_COLUMNS = ("id", "alias", "first_seen", "last_seen", "address", "firmware", "encrypted", "device",
                "relay", "relay_cause", "relay_changed", "power_w", "voltage_v", "current_a", "runtime_at",
                "rssi_dbm", "power_on")

Runner = Callable[..., Deferred]


class StoreOpenError(Exception):
    """The database cannot be opened or created; the message is one line saying what to do."""


def dayKey(hour: int, zone: tzinfo) -> str:
    """The local day (YYYY-MM-DD) whose history buckets count UTC hour C{hour}.

    A day's buckets take every UTC hour from the one holding local midnight, exactly as
    L{vesyncd.energy.MemoryLedger} does, so the two ledgers agree even in half-hour zones.
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
    have = {row[1] for row in conn.execute("PRAGMA table_info(plugs)")}
    types = {"encrypted": "INTEGER", "relay_changed": "REAL", "power_w": "REAL", "voltage_v": "REAL",
             "current_a": "REAL", "runtime_at": "REAL", "rssi_dbm": "INTEGER"}
    for column in PLUG_COLUMNS:
        if column not in have:
            conn.execute(f"ALTER TABLE plugs ADD COLUMN {column} {types.get(column, 'TEXT')}")
    for table, key in (("hours", "hour INTEGER"), ("days", "day TEXT"), ("months", "month TEXT")):
        name = key.split()[0]
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (plug TEXT NOT NULL, {key} NOT NULL,"
                     f" ws INTEGER NOT NULL DEFAULT 0, seconds INTEGER NOT NULL DEFAULT 0,"
                     f" PRIMARY KEY (plug, {name})) WITHOUT ROWID")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO hours (plug, hour, ws, seconds) SELECT plug, CAST(at / 3600 AS INTEGER),"
                 " SUM(ws), SUM(seconds) FROM reports WHERE ws >= 0 GROUP BY 1, 2"
                 " ON CONFLICT (plug, hour) DO UPDATE SET ws = ws + excluded.ws, seconds = seconds + excluded.seconds")
    rebuildCalendar(conn, zone)


MIGRATIONS: list[Callable[[sqlite3.Connection, tzinfo], None]] = [_migrate0to1, _migrate1to2]
assert len(MIGRATIONS) == SCHEMA_VERSION


def rebuildCalendar(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Recompute the day and month rollups from the hourly ones for C{zone} (inside a transaction)."""
    conn.execute("DELETE FROM days")
    conn.execute("DELETE FROM months")
    days: dict[tuple[str, str], list[int]] = {}
    for plug, hour, ws, seconds in conn.execute("SELECT plug, hour, ws, seconds FROM hours"):
        acc = days.setdefault((plug, dayKey(hour, zone)), [0, 0])
        acc[0] += ws
        acc[1] += seconds
    months: dict[tuple[str, str], list[int]] = {}
    for (plug, day), (ws, seconds) in days.items():
        acc = months.setdefault((plug, day[:7]), [0, 0])
        acc[0] += ws
        acc[1] += seconds
    conn.executemany("INSERT INTO days VALUES (?, ?, ?, ?)", [(p, d, w, s) for (p, d), (w, s) in days.items()])
    conn.executemany("INSERT INTO months VALUES (?, ?, ?, ?)", [(p, m, w, s) for (p, m), (w, s) in months.items()])
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('zone', ?)", (zoneName(zone),))


def connect(path: Path) -> sqlite3.Connection:
    """Open the database file in WAL mode, usable from the one writer thread."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a killed process; only an OS crash may lose the last one.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def openDatabase(path: Path, zone: tzinfo, connector: Callable[[Path], sqlite3.Connection] = connect
                 ) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database; raise L{StoreOpenError} with advice."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        conn = connector(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreOpenError(f"database {path} has schema version {version}, newer than this vesyncd "
                                 f"({SCHEMA_VERSION}): upgrade vesyncd or use another --state-dir")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn, zone)
                log.info("store: migrated {path} to schema version {v}", path=str(path), v=step + 1)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            row = conn.execute("SELECT value FROM meta WHERE key = 'zone'").fetchone()
            if row is None or row[0] != zoneName(zone):
                log.info("store: time zone changed from {old} to {new}: rebuilding daily and monthly totals",
                         old=row[0] if row else None, new=zoneName(zone))
                rebuildCalendar(conn, zone)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
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
    return (plug.id, _text(plug.alias), plug.first_seen, plug.last_seen, _text(plug.address), _text(plug.firmware),
            int(bool(plug.encrypted)), device, relay, _text(plug.relay_cause), plug.relay_changed, plug.power_w,
            plug.voltage_v, plug.current_a, plug.runtime_at, plug.rssi_dbm, _text(plug.power_on))


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
    return PlugState(
        id=str(values["id"]), alias=values.get("alias") or None, online=False,
        relay=None if relay is None else bool(relay), relay_cause=values.get("relay_cause"),
        relay_changed=num("relay_changed"), power_w=num("power_w"), voltage_v=num("voltage_v"),
        current_a=num("current_a"), runtime_at=num("runtime_at"),
        rssi_dbm=int(values["rssi_dbm"]) if isinstance(values.get("rssi_dbm"), int) else None,
        firmware=values.get("firmware"), encrypted=bool(values.get("encrypted")), device=device,
        address=values.get("address"), first_seen=num("first_seen"), last_seen=num("last_seen"),
        power_on=policy if policy in ("on", "off", "last") else None)


# -- the writer ------------------------------------------------------------------------------------

def threadRunner(reactor: Any) -> tuple[Runner, Callable[[], None]]:
    """A runner that calls functions in one dedicated thread, and a function stopping that thread."""
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    pool = ThreadPool(minthreads=1, maxthreads=1, name="vesyncd-store")

    def run(fn: Callable[..., Any], *args: Any) -> Deferred:
        # Started on first use, not at creation: twistd forks to daemonize after building the
        # service, and a thread started before that fork would not exist in the daemon.
        if not pool.started:
            pool.start()
        return deferToThreadPool(reactor, pool, fn, *args)

    return run, pool.stop


def inlineRunner(fn: Callable[..., Any], *args: Any) -> Deferred:
    """Run a database call at once in the calling thread (tests and tools)."""
    return maybeDeferred(fn, *args)


class Store:
    """The open database and its queued writer; every database call goes through L{run}."""

    def __init__(self, conn: sqlite3.Connection | None, path: Path, zone: tzinfo, clock: IReactorTime, *,
                 run: Runner = inlineRunner, stopRunner: Callable[[], None] | None = None,
                 flushInterval: float = FLUSH_INTERVAL, batchRows: int = BATCH_ROWS,
                 maxQueued: int = MAX_QUEUED_REPORTS, retentionDays: float = 400.0,
                 connector: Callable[[Path], sqlite3.Connection] = connect) -> None:
        self.conn = conn
        self.connector = connector
        self.path = path
        self.zone = zone
        self.clock = clock
        self.run = run
        self._stopRunner = stopRunner
        self.flushInterval = flushInterval
        self.batchRows = batchRows
        self.maxQueued = maxQueued
        self.retentionDays = retentionDays
        self.stats: collections.Counter[str] = collections.Counter()
        self._reports: collections.deque[tuple[str, float, int, int]] = collections.deque()
        self._folded: dict[tuple[str, int], list[int]] = {}
        self._plugs: dict[str, tuple[Any, ...]] = {}
        self._deletes: set[str] = set()
        self._inFlight: Deferred | None = None
        self._retryAt = 0.0
        self._backoff = 0.0
        self._dayCache: dict[int, str] = {}
        self._loop: task.LoopingCall | None = None
        self._pruneLoop: task.LoopingCall | None = None
        self.closed = False

    @classmethod
    def open(cls, path: Path, zone: tzinfo, clock: IReactorTime, **kw: Any) -> "Store":
        """Open and migrate the database at C{path} (blocking: call it before the reactor runs)."""
        return cls(openDatabase(path, zone), path, zone, clock, **kw)

    def detach(self) -> None:
        """Close the connection opened for loading; the writer thread opens its own when it first writes.

        SQLite connections must not cross a C{fork}, and twistd forks to daemonize after
        building the service.
        """
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def connection(self) -> sqlite3.Connection:
        """The writer thread's connection, reopened if it was detached or dropped after an error."""
        if self.conn is None:
            self.conn = self.connector(self.path)
        return self.conn

    # -- loading (blocking, at start) -----------------------------------------------------------

    def loadPlugs(self) -> list[PlugState]:
        """Every stored plug as an offline L{PlugState}; unreadable rows are logged and skipped."""
        plugs = []
        for row in self.connection().execute(f"SELECT {', '.join(PLUG_COLUMNS)} FROM plugs"):
            try:
                plugs.append(plugFromRow(row))
            except Exception:
                log.failure("store: skipping an unreadable plug row")
        return plugs

    def loadEnergy(self, now: float) -> tuple[dict[str, int], dict[str, int], date]:
        """Lifetime and today's watt-seconds per plug from the rollups, and today's local date."""
        lifetime = {p: int(ws) for p, ws in self.connection().execute("SELECT plug, SUM(ws) FROM months GROUP BY plug")}
        today = localDay(now, self.zone)
        todays = {p: int(ws) for p, ws in self.connection().execute("SELECT plug, ws FROM days WHERE day = ?",
                                                             (today.isoformat(),))}
        return lifetime, todays, today

    # -- queueing (reactor thread) --------------------------------------------------------------

    def putPlug(self, plug: PlugState) -> None:
        """Queue a plug's current state for writing (replacing any queued older state)."""
        self._plugs[plug.id] = plugRow(plug)

    def deletePlug(self, plugId: str) -> None:
        """Queue the removal of everything kept for a plug."""
        self._plugs.pop(plugId, None)
        self._deletes.add(plugId)
        self._reports = collections.deque(r for r in self._reports if r[0] != plugId)
        self._folded = {k: v for k, v in self._folded.items() if k[0] != plugId}

    def addReport(self, plugId: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Queue one energy report; a full queue folds its oldest raw rows into hourly totals."""
        self._reports.append((plugId, at, wattSeconds, seconds))
        self.stats["reports_queued"] += 1
        self._bound()
        if len(self._reports) >= self.batchRows:
            self.flush()

    def _bound(self) -> None:
        """Keep the raw queue bounded without losing energy: fold overflow into hourly totals."""
        while len(self._reports) > self.maxQueued:
            plugId, at, ws, seconds = self._reports.popleft()
            acc = self._folded.setdefault((plugId, int(at // 3600)), [0, 0])
            acc[0] += ws
            acc[1] += seconds
            self.stats["raw_dropped"] += 1
            if self.stats["raw_dropped"] == 1:
                log.error("store: {n} reports are waiting for the database: keeping only their hourly "
                          "totals from now on (raw rows are lost, energy is not)", n=self.maxQueued)

    @property
    def pending(self) -> int:
        """Writes waiting in memory (raw reports, folded hours and plug rows)."""
        return len(self._reports) + len(self._folded) + len(self._plugs) + len(self._deletes)

    def flush(self) -> Deferred:
        """Write what is queued now; fires when it is written or has failed (then it is retried)."""
        if self._inFlight is not None:
            d: Deferred = Deferred()
            self._inFlight.addBoth(lambda _: self.flush().chainDeferred(d) and None)
            return d
        if self.closed or not self.pending or self.clock.seconds() < self._retryAt:
            return succeed(None)
        reports = [self._reports.popleft() for _ in range(min(len(self._reports), MAX_BATCH))]
        folded, self._folded = self._folded, {}
        plugs, self._plugs = self._plugs, {}
        deletes, self._deletes = self._deletes, set()
        batch = (reports, folded, plugs, deletes)
        self._inFlight = self.run(self._write, batch)

        def done(_: Any) -> None:
            self._inFlight = None
            self.stats["batches"] += 1
            self.stats["reports_written"] += len(reports)
            if self._backoff:
                log.info("store: writing to {path} works again", path=str(self.path))
            self._backoff = 0.0
            self._retryAt = 0.0
            if len(self._reports) >= self.batchRows:
                self.flush()

        def failed(f: Any) -> None:
            self._inFlight = None
            self._requeue(reports, folded, plugs, deletes)
            self.stats["write_failures"] += 1
            self._backoff = min(RETRY_MAX, self._backoff * 2 or RETRY_MIN)
            self._retryAt = self.clock.seconds() + self._backoff
            # Log the first failure of a streak in full, then once a minute of backoff.
            if self._backoff in (RETRY_MIN, RETRY_MAX) or self.stats["write_failures"] == 1:
                log.error("store: cannot write to {path}: {error}; keeping {n} writes in memory and "
                          "retrying in {delay:g} s", path=str(self.path), error=f.getErrorMessage(),
                          n=self.pending, delay=self._backoff)

        return self._inFlight.addCallbacks(done, failed)

    def _requeue(self, reports: list[tuple[str, float, int, int]], folded: dict[tuple[str, int], list[int]],
                 plugs: dict[str, tuple[Any, ...]], deletes: set[str]) -> None:
        """Put a failed batch back in front of what was queued since, newer plug rows winning."""
        self._deletes |= deletes
        self._reports.extendleft(reversed(reports))
        for key, (ws, seconds) in folded.items():
            acc = self._folded.setdefault(key, [0, 0])
            acc[0] += ws
            acc[1] += seconds
        for plugId, row in plugs.items():
            self._plugs.setdefault(plugId, row)
        self._bound()

    # -- the writer thread ----------------------------------------------------------------------

    def _day(self, hour: int) -> str:
        key = self._dayCache.get(hour)
        if key is None:
            if len(self._dayCache) > 10_000:
                self._dayCache.clear()
            key = self._dayCache[hour] = dayKey(hour, self.zone)
        return key

    def _write(self, batch: tuple[list[tuple[str, float, int, int]], dict[tuple[str, int], list[int]],
                                  dict[str, tuple[Any, ...]], set[str]]) -> None:
        """One transaction: forgotten plugs, raw rows, rollup increments, plug rows (writer thread)."""
        reports, folded, plugs, deletes = batch
        hours: dict[tuple[str, int], list[int]] = {k: list(v) for k, v in folded.items()}
        for plugId, at, ws, seconds in reports:
            acc = hours.setdefault((plugId, int(at // 3600)), [0, 0])
            acc[0] += ws
            acc[1] += seconds
        days: dict[tuple[str, str], list[int]] = {}
        for (plugId, hour), (ws, seconds) in hours.items():
            acc = days.setdefault((plugId, self._day(hour)), [0, 0])
            acc[0] += ws
            acc[1] += seconds
        months: dict[tuple[str, str], list[int]] = {}
        for (plugId, day), (ws, seconds) in days.items():
            acc = months.setdefault((plugId, day[:7]), [0, 0])
            acc[0] += ws
            acc[1] += seconds
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for plugId in deletes:
                for table in ("plugs", "reports", "hours", "days", "months"):
                    conn.execute(f"DELETE FROM {table} WHERE {'id' if table == 'plugs' else 'plug'} = ?", (plugId,))
            conn.executemany("INSERT INTO reports (plug, at, ws, seconds) VALUES (?, ?, ?, ?)", reports)
            for table, column, rows in (("hours", "hour", hours), ("days", "day", days), ("months", "month", months)):
                conn.executemany(
                    f"INSERT INTO {table} (plug, {column}, ws, seconds) VALUES (?, ?, ?, ?) ON CONFLICT"
                    f" (plug, {column}) DO UPDATE SET ws = ws + excluded.ws, seconds = seconds + excluded.seconds",
                    [(p, k, ws, s) for (p, k), (ws, s) in rows.items()])
            upserts = list(plugs.values())
            if upserts:
                names = ", ".join(PLUG_COLUMNS)
                updates = ", ".join(f"{c} = excluded.{c}" for c in PLUG_COLUMNS[1:])
                conn.executemany(f"INSERT INTO plugs ({names}) VALUES ({', '.join('?' * len(PLUG_COLUMNS))})"
                                 f" ON CONFLICT (id) DO UPDATE SET {updates}", upserts)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            # Reopen for the retry: after an I/O error or a replaced file the old handle may stay broken.
            try:
                conn.close()
            except sqlite3.Error:
                pass
            self.conn = None
            raise

    # -- pruning ---------------------------------------------------------------------------------

    def prune(self) -> Deferred:
        """Delete raw reports older than the retention, in small transactions; fires with the count."""
        cutoff = self.clock.seconds() - self.retentionDays * 86400
        total = [0]

        def step(deleted: int) -> Any:
            total[0] += deleted
            if deleted < PRUNE_BATCH or self.closed:
                if total[0]:
                    log.info("store: pruned {n} raw reports older than {days:g} days", n=total[0],
                             days=self.retentionDays)
                self.stats["pruned"] += total[0]
                return total[0]
            return self.run(self._pruneBatch, cutoff).addCallback(step)

        return self.run(self._pruneBatch, cutoff).addCallback(step)

    def _pruneBatch(self, cutoff: float) -> int:
        """Delete up to L{PRUNE_BATCH} of the oldest raw rows older than C{cutoff} (writer thread).

        Rows are appended in time order, so the oldest rows have the smallest rowids: walking from
        the first rowid needs no index on the time column (which would slow every insert).
        """
        conn = self.connection()
        rows = conn.execute("SELECT rowid, at FROM reports ORDER BY rowid LIMIT ?", (PRUNE_BATCH,)).fetchall()
        old = [(rowid,) for rowid, at in rows if at < cutoff]
        if not old:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM reports WHERE rowid = ?", old)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(old)

    # -- service life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Flush every C{flushInterval} seconds and prune once a day (first an hour after start)."""
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.flushInterval, now=False)
        self._pruneLoop = task.LoopingCall(self._prune)
        self._pruneLoop.clock = self.clock
        self._pruneDelay = self.clock.callLater(3600, lambda: self._pruneLoop.start(86400, now=True))

    def _tick(self) -> None:
        self.flush()

    def _prune(self) -> None:
        self.prune().addErrback(lambda f: log.failure("store: pruning failed (will try tomorrow)", f))

    def stop(self) -> Deferred:
        """Write what is queued (one try), then close the database and its thread."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._pruneLoop is not None and self._pruneLoop.running:
            self._pruneLoop.stop()
        delay = getattr(self, "_pruneDelay", None)
        if delay is not None and delay.active():
            delay.cancel()
        self._retryAt = 0.0
        d = self.flush()

        def close(_: Any) -> None:
            if self.pending:
                log.error("store: {n} writes could not be saved at shutdown", n=self.pending)
            self.closed = True
            return self.run(self.detach)

        def stopThread(_: Any) -> None:
            if self._stopRunner is not None:
                self._stopRunner()

        return d.addBoth(close).addErrback(lambda f: log.failure("store: closing failed", f)).addBoth(stopThread)
