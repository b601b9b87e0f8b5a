"""
Persistence for vesyncd, in SQLite (the default) or PostgreSQL (L{vesyncd.storage.postgres}): one
writer that never blocks the reactor.  The queue, its batches, their retries and the store's life
are here; the schema, its migrations and row conversions are in L{vesyncd.storage.schema}, what one
batch does to the database in L{vesyncd.storage.batches}, and the reads of plug rows and energy
totals in L{vesyncd.storage.reads}.

Every database call runs in one dedicated thread (a one-thread pool), so SQLite's single-writer rule
holds, writes reach either database in one order, and the reactor never waits on an fsync or the
network.  Writers queue work in memory: plug state is
coalesced per plug (only the latest row matters), energy reports go to a bounded deque that is
flushed every C{flushInterval} seconds or every C{batchRows} reports, in one transaction per batch.
On SQLite the raw rows are added to the hourly, daily and monthly rollups every C{rollupInterval}
seconds, before any read and at shutdown (L{vesyncd.storage.rollups}: summed in SQL from the rows
past a watermark, C{meta.rolled_rowid}); after a crash L{vesyncd.storage.schema.openDatabase} does
the same, so no committed report is missing from the rollups and none is counted twice.  (On PostgreSQL several nodes write the same tables, so each batch writes its
rollups itself.)
When a write fails (full disk, read-only file system, I/O error) the batch goes back to the front
of the queue and is retried with exponential backoff; if the queue overflows meanwhile the oldest
raw report rows are folded into their hourly totals, so the energy is still counted in every
rollup and lifetime figure and only the raw row is lost (counted in C{stats["raw_dropped"]}).

Tables (schema version L{SCHEMA_VERSION}, in C{PRAGMA user_version}; on PostgreSQL in C{meta}):
 - C{plugs}: one row per plug with everything needed to rebuild its L{PlugState};
 - C{reports}: every raw C{/report} (plug, time, watt-seconds, seconds), pruned after the retention;
 - C{hours}: watt-seconds per plug and UTC hour (C{hour = floor(at / 3600)}), kept forever;
 - C{days}, C{months}: per plug and local day / month of the configured zone, kept forever and
   rebuilt from C{hours} if the zone changes;
 - C{meta}: key/value pairs (the zone the day and month rollups were built in);
 - C{automation}, C{switches}, C{baselines}: see L{vesyncd.storage.sidetables} and docs/storage.md;
 - C{nodes}, C{leases}: the nodes sharing the database and which one holds each plug (schema 5).
"""

from __future__ import annotations

import collections
from datetime import date, tzinfo
from pathlib import Path
from typing import Any, Callable

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from vesyncd.core.model import PlugState
from vesyncd.storage import reads
from vesyncd.storage.batches import PRUNE_BATCH, pruneOldest, writeBatch
from vesyncd.storage.rollups import rollUpRaw
from vesyncd.storage.runner import Runner, inlineRunner
from vesyncd.storage.sqlite import writeTransaction
from vesyncd.storage.schema import (  # noqa: F401 - re-exported: callers import them from here
    SCHEMA_VERSION,
    MAX_DEVICE_JSON,
    MAX_TEXT,
    PLUG_COLUMNS,
    StoreOpenError,
    dayKey,
    localDay,
    rebuildCalendar,
    connect,
    openDatabase,
    plugRow,
    plugFromRow,
)

log = Logger()


FLUSH_INTERVAL = 1.0
BATCH_ROWS = 500
#: Raw reports kept in memory while the database is slow or failing (about an hour for 10,000 plugs).
MAX_QUEUED_REPORTS = 200_000
#: Reports written per transaction at most, so one batch never holds the writer for long.
MAX_BATCH = 20_000
RETRY_MIN = 1.0
RETRY_MAX = 60.0
#: Seconds between additions of the raw rows to the rollups (SQLite; reads and stop add them at once).
ROLLUP_INTERVAL = 60.0


class Store:
    """The open database and its queued writer; every database call goes through L{run}."""

    def __init__(self, conn: Any, path: Path, zone: tzinfo, clock: IReactorTime, *,
                 run: Runner = inlineRunner, stopRunner: Callable[[], None] | None = None,
                 flushInterval: float = FLUSH_INTERVAL, batchRows: int = BATCH_ROWS,
                 maxQueued: int = MAX_QUEUED_REPORTS, retentionDays: float = 400.0,
                 connector: Callable[[Path], Any] = connect, backend: str = "sqlite",
                 label: str | None = None, release: Callable[[], None] | None = None,
                 scrub: Callable[[str], str] = str, rollupInterval: float = ROLLUP_INTERVAL) -> None:
        self.conn = conn
        self.connector = connector
        self.path = path
        #: C{"sqlite"} or C{"postgresql"}: which database this store writes to.
        self.backend = backend
        #: Where the store writes, fit for a log line (a PostgreSQL URL without its password).
        self.label = label if label is not None else str(path)
        self._release = release
        #: Makes an error message fit for the log (PostgreSQL: the password masked).
        self.scrub = scrub
        self.zone = zone
        self.clock = clock
        self.run = run
        self._stopRunner = stopRunner
        self.flushInterval = flushInterval
        self.batchRows = batchRows
        self.maxQueued = maxQueued
        self.retentionDays = retentionDays
        #: Whether raw rows reach the rollups once a minute (SQLite) or with each batch (PostgreSQL).
        self.deferRollups = backend == "sqlite"
        self.rollupInterval = rollupInterval
        self._rolledAt = clock.seconds()
        #: Whether raw rows were written since the rollups last were (touched by the writer thread only).
        self._rawPastRollups = True
        self.stats: collections.Counter[str] = collections.Counter()
        self._reports: collections.deque[tuple[str, float, int, int]] = collections.deque()
        self._folded: dict[tuple[str, int], list[int]] = {}
        self._plugs: dict[str, tuple[Any, ...]] = {}
        self._deletes: set[str] = set()
        self._inFlight: Deferred | None = None
        #: The batch being written now (reports, folded hours, plug rows, deletes), while C{_inFlight}.
        self._inFlightBatch: tuple[Any, ...] | None = None
        self._retryAt = 0.0
        self._backoff = 0.0
        #: The last write's error (fit for a log), None once a write succeeds again.
        self.lastError: str | None = None
        self._dayCache: dict[int, str] = {}
        self._loop: task.LoopingCall | None = None
        self._pruneLoop: task.LoopingCall | None = None
        self._pruneDelay: IDelayedCall | None = None
        self.pruneHooks: list[Callable[[], Deferred]] = []
        self.closed = False

    @classmethod
    def open(cls, path: Path, zone: tzinfo, clock: IReactorTime, **kw: Any) -> "Store":
        """Open and migrate the database at C{path} (blocking: call it before the reactor runs)."""
        return cls(openDatabase(path, zone), path, zone, clock, **kw)

    def detach(self) -> None:
        """Close the connection opened for loading (and PostgreSQL's pool with its threads); the writer
        thread opens its own when it first writes.

        Neither SQLite connections nor threads survive a C{fork}, and twistd forks to daemonize
        after building the service.
        """
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self._release is not None:
            self._release()

    def connection(self) -> Any:
        """The writer thread's connection: C{sqlite3.Connection} or L{vesyncd.storage.postgres.PgConnection},
        both with C{execute(sql, params)} (C{?} placeholders) returning a cursor, C{executemany} and
        C{close}; reopened if it was detached, dropped after an error or lost by the server."""
        if self.conn is not None and getattr(self.conn, "broken", False):
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = self.connector(self.path)
        return self.conn

    # -- loading (blocking, at start) -----------------------------------------------------------

    def loadPlugs(self) -> list[PlugState]:
        """Every stored plug as an offline L{PlugState} (L{reads.loadPlugs})."""
        return reads.loadPlugs(self.connection())

    def loadEnergy(self, now: float) -> tuple[dict[str, int], dict[str, int], date]:
        """Lifetime and today's watt-seconds per plug, and today's local date (L{reads.loadEnergy})."""
        return reads.loadEnergy(self.connection(), now, self.zone)

    def loadPlug(self, plugId: str) -> Deferred:
        """Fire with the plug's stored state as an offline L{PlugState}, or None when it has no row.

        What is queued is written first (a failing write does not stop the read), then the row is
        read in the store's thread, so a row another node wrote to a shared database is seen; if
        this node still holds a newer row for the plug that could not be written yet, that one wins.
        """
        if not isinstance(plugId, str):
            return fail(ValueError("plug id must be text"))
        d = self.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.run(self._readPlug, plugId))

        def newest(plug: PlugState | None) -> PlugState | None:
            queued = self._plugs.get(plugId)
            return plugFromRow(queued) if queued is not None else plug

        return d.addCallback(newest)

    def _readPlug(self, plugId: str) -> PlugState | None:
        """The plug's row as a L{PlugState} (writer thread)."""
        return reads.readPlug(self.connection(), plugId)

    def readEnergy(self, plugId: str, day: date) -> tuple[int, int]:
        """The plug's lifetime and C{day}'s watt-seconds in the rollups (writer thread)."""
        return reads.readEnergy(self.connection(), plugId, day)

    def unwritten(self, plugId: str, day: date) -> tuple[int, int]:
        """The plug's watt-seconds queued or being written but not yet committed, in all and on C{day}
        (reactor thread).

        Called in the callback of a read run after the writes queued before it, this is exactly what
        the read could not see: any batch handed to the thread before the read has reported back by
        then (succeeded, or failed and requeued), and a batch in flight now started after the read.
        """
        total = today = 0
        key = day.isoformat()
        batches = [(self._reports, self._folded)]
        if self._inFlightBatch is not None:
            batches.append((self._inFlightBatch[0], self._inFlightBatch[1]))
        for reports, folded in batches:
            for plug, at, ws, _seconds in reports:
                if plug == plugId:
                    total += ws
                    if self._day(int(at // 3600)) == key:
                        today += ws
            for (plug, hour), (ws, _seconds) in folded.items():
                if plug == plugId:
                    total += ws
                    if self._day(hour) == key:
                        today += ws
        return total, today

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
        # While a batch is being written its completion flushes again if enough are waiting; flushing
        # here too would chain a Deferred on it for every report that arrives meanwhile.
        if len(self._reports) >= self.batchRows and self._inFlight is None:
            self.flush(rollups=False)

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

    def health(self) -> dict[str, Any]:
        """What the doctor and C{vesyncctl info} show of the database: its kind, where it is (no
        password), whether the last write reached it, the schema version, the last error and the
        writes waiting in memory."""
        return {"kind": self.backend, "url": self.label, "reachable": self.lastError is None,
                "schema": SCHEMA_VERSION, "schema_expected": SCHEMA_VERSION, "error": self.lastError,
                "pending": self.pending}

    @property
    def pending(self) -> int:
        """Writes waiting in memory (raw reports, folded hours and plug rows)."""
        return len(self._reports) + len(self._folded) + len(self._plugs) + len(self._deletes)

    def flush(self, rollups: bool = True) -> Deferred:
        """Write what is queued now, and with C{rollups} add the raw rows to the rollups too; fires
        when it is written or has failed (then it is retried)."""
        if self._inFlight is not None:
            d: Deferred = Deferred()
            self._inFlight.addBoth(lambda _: self.flush(rollups).chainDeferred(d) and None)
            return d
        if self.closed or self.clock.seconds() < self._retryAt:
            return succeed(None)
        if not self.pending:
            if not (rollups and self.deferRollups):
                return succeed(None)
            # Nothing queued: only the raw rows already written are left to add (if any, see rollUp).
            return self.run(self.rollUp).addCallback(self._rolled)
        reports = [self._reports.popleft() for _ in range(min(len(self._reports), MAX_BATCH))]
        folded, self._folded = self._folded, {}
        plugs, self._plugs = self._plugs, {}
        deletes, self._deletes = self._deletes, set()
        roll = rollups or not self.deferRollups
        batch = (reports, folded, plugs, deletes, roll)
        self._inFlightBatch = batch
        self._inFlight = self.run(self._write, batch)
        if self._inFlight.called:  # an inline runner: nothing is in flight any more
            self._inFlightBatch = None

        def done(_: Any) -> None:
            self._inFlight = None
            self._inFlightBatch = None
            self.stats["batches"] += 1
            self.stats["reports_written"] += len(reports)
            if roll:
                self._rolled()
            if self._backoff:
                log.info("store: writing to {path} works again", path=self.label)
            self._backoff = 0.0
            self.lastError = None
            self._retryAt = 0.0
            if len(self._reports) >= self.batchRows:
                self.flush(rollups=False)

        def failed(f: Any) -> None:
            self._inFlight = None
            self._inFlightBatch = None
            self._requeue(reports, folded, plugs, deletes)
            self.stats["write_failures"] += 1
            self._backoff = min(RETRY_MAX, self._backoff * 2 or RETRY_MIN)
            self._retryAt = self.clock.seconds() + self._backoff
            self.lastError = self.scrub(f.getErrorMessage())[:200]
            # Log the first failure of a streak in full, then once a minute of backoff.
            if self._backoff in (RETRY_MIN, RETRY_MAX) or self.stats["write_failures"] == 1:
                log.error("store: cannot write to {path}: {error}; keeping {n} writes in memory and "
                          "retrying in {delay:g} s", path=self.label, error=self.scrub(f.getErrorMessage()),
                          n=self.pending, delay=self._backoff)

        return self._inFlight.addCallbacks(done, failed)

    def _rolled(self, _: Any = None) -> None:
        """The rollups count every raw row written so far: the next periodic step is a whole interval away."""
        self._rolledAt = self.clock.seconds()

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
                                  dict[str, tuple[Any, ...]], set[str], bool]) -> None:
        """One transaction: forgotten plugs, raw rows, plug rows, folded hours (which have no raw rows)
        into the rollups, and with the batch's C{roll} flag the raw rows past the watermark too (on
        PostgreSQL the batch's own rollups instead) (writer thread)."""
        reports, folded, plugs, deletes, roll = batch
        conn = self.connection()
        try:
            writeBatch(conn, reports, folded, plugs, deletes, roll=roll, deferRollups=self.deferRollups,
                       dayOf=self._day)
        except BaseException:
            # Reopen for the retry: after an I/O error or a replaced file the old handle may stay broken.
            try:
                conn.close()
            except Exception:
                pass
            self.conn = None
            raise
        if reports or roll:
            self._rawPastRollups = not roll

    def rollUp(self) -> None:
        """Add the raw rows written since the rollups last were to them, with the watermark, in one
        transaction (writer thread; nothing to do on PostgreSQL, whose batches write their own)."""
        if not self.deferRollups or not self._rawPastRollups:
            return
        conn = self.connection()
        with writeTransaction(conn):
            rollUpRaw(conn, self._day)
        self._rawPastRollups = False

    def read(self, reader: Callable[..., Any], *args: Any) -> Deferred:
        """Run C{reader(*args)} in the writer thread after adding the raw rows to the rollups, so it
        sees every report written so far; fires with its result."""
        def both() -> Any:
            self.rollUp()
            return reader(*args)

        return self.run(both)

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
        """Delete up to L{PRUNE_BATCH} of the oldest raw rows older than C{cutoff} (writer thread)."""
        return pruneOldest(self.connection(), cutoff, self.deferRollups)

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
        self.flush(rollups=self.clock.seconds() - self._rolledAt >= self.rollupInterval)

    def _prune(self) -> None:
        self.prune().addErrback(lambda f: log.failure("store: pruning failed (will try tomorrow)", f))
        for hook in self.pruneHooks:  # other tables' daily pruning (e.g. the switch history)
            hook().addErrback(lambda f: log.failure("store: pruning failed (will try tomorrow)", f))

    def stop(self) -> Deferred:
        """Write what is queued (one try), then close the database and its thread."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._pruneLoop is not None and self._pruneLoop.running:
            self._pruneLoop.stop()
        if self._pruneDelay is not None and self._pruneDelay.active():
            self._pruneDelay.cancel()
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
