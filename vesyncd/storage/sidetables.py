"""
The store's smaller tables: the relay switch history (L{SwitchLog}) and each plug's standby-baseline
samples (L{BaselineStore}).

Both follow L{vesyncd.storage.store.Store}'s threading model: blocking reads only at start-up,
every other database call through the store's one writer thread (C{store.run}), so writes stay in
order with the energy rows and the reactor never waits on the disk.

C{switches} keeps, per plug, the switches of the last L{KEEP_DAYS} days and at most L{KEEP_ROWS} of
them, pruned with the store's daily pruning; C{baselines} holds one blob per plug, replaced as a
whole at each save (every few minutes and at shutdown).
"""

from __future__ import annotations

import collections
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from vesyncd.core.model import isoTime
from vesyncd.storage.sqlite import writeTransaction
from vesyncd.storage.store import Store

log = Logger()

#: Days of switches kept per plug.
KEEP_DAYS = 90
#: Switches kept per plug at most.
KEEP_ROWS = 10_000
#: Switches waiting in memory for the database at most (the oldest go first beyond it).
MAX_QUEUED = 50_000
#: Characters of a cause kept.
MAX_CAUSE = 64
#: Seconds before rows that failed to be written are tried again, doubling up to L{RETRY_MAX}.
RETRY_MIN = 1.0
RETRY_MAX = 60.0


class SwitchLog:
    """The relay switch history in table C{switches}: queued on each switch, written in batches."""

    def __init__(self, store: Store, keepDays: float = KEEP_DAYS, keepRows: int = KEEP_ROWS) -> None:
        self.store = store
        self.keepDays = keepDays
        self.keepRows = keepRows
        self._queue: collections.deque[tuple[str, float, int, str | None]] = collections.deque(maxlen=MAX_QUEUED)
        self._inFlight: Deferred | None = None
        self._backoff = 0.0
        self._retryAt = 0.0
        self._retryCall: IDelayedCall | None = None
        store.pruneHooks.append(self.prune)

    def add(self, plugId: str, at: float, relay: bool, cause: str | None) -> None:
        """Queue one switch; it is written on the next L{flush} (the store's flush interval)."""
        self._queue.append((plugId, float(at), int(bool(relay)), None if cause is None else str(cause)[:MAX_CAUSE]))
        if self._inFlight is None:
            self.flush()

    def forget(self, plugId: str) -> None:
        """Drop a forgotten plug's queued switches (the store deletes its rows)."""
        self._queue = collections.deque((r for r in self._queue if r[0] != plugId), maxlen=MAX_QUEUED)

    def flush(self, now: bool = False) -> Deferred:
        """Write what is queued; fires when it is written or the attempt failed.

        During a backoff nothing is tried unless C{now} is true (the daemon's shutdown: one last try).

        Rows that could not be written go back in front of the queue (its bound keeps the newest) and
        are tried again after a backoff of L{RETRY_MIN} doubling to L{RETRY_MAX} seconds, so a switch
        made while the database is away is in the history once it is back.
        """
        if self._inFlight is not None:
            d: Deferred = Deferred()
            self._inFlight.addBoth(lambda _: self.flush().chainDeferred(d) and None)
            return d
        if not self._queue or self.store.closed or (not now and self.store.clock.seconds() < self._retryAt):
            return succeed(None)
        rows = list(self._queue)
        self._queue.clear()
        self._inFlight = self.store.run(self._write, rows)

        def done(_: Any) -> None:
            self._inFlight = None
            self._backoff = 0.0
            self._retryAt = 0.0
            if self._queue:  # switches made while this write was in flight go right after it
                self.flush()

        def failed(f: Any) -> None:
            self._inFlight = None
            kept = collections.deque(rows, maxlen=MAX_QUEUED)
            kept.extend(self._queue)
            self._queue = kept
            self._backoff = min(RETRY_MAX, self._backoff * 2 or RETRY_MIN)
            self._retryAt = self.store.clock.seconds() + self._backoff
            if self._retryCall is None or not self._retryCall.active():
                self._retryCall = self.store.clock.callLater(self._backoff, self.flush)
            log.error("store: cannot write {n} switches: {error}; keeping them and retrying in {delay:g} s",
                      n=len(rows), error=f.getErrorMessage(), delay=self._backoff)

        return self._inFlight.addCallbacks(done, failed)

    def _write(self, rows: list[tuple[str, float, int, str | None]]) -> None:
        """One transaction of switch rows (writer thread)."""
        conn = self.store.connection()
        with writeTransaction(conn):
            conn.executemany("INSERT INTO switches (plug, at, relay, cause) VALUES (?, ?, ?, ?)", rows)

    def switchHistory(self, plugId: str, limit: int) -> Deferred:
        """The plug's latest C{limit} switches, newest first: C{[{"at": ISO UTC, "ts", "relay", "cause"}]}."""
        d = self.flush()
        d.addCallback(lambda _: self.store.run(self._read, plugId, int(limit)))
        return d

    def _read(self, plugId: str, limit: int) -> list[dict[str, Any]]:
        rows = self.store.connection().execute(
            "SELECT at, relay, cause FROM switches WHERE plug = ? ORDER BY at DESC, rowid DESC LIMIT ?",
            (plugId, limit))
        return [{"at": isoTime(at), "ts": at, "relay": bool(relay), "cause": cause} for at, relay, cause in rows]

    def prune(self) -> Deferred:
        """Delete switches older than C{keepDays} and each plug's beyond its newest C{keepRows}; fires
        with the number deleted."""
        return self.flush().addCallback(
            lambda _: self.store.run(self._prune, self.store.clock.seconds() - self.keepDays * 86400))

    def _prune(self, cutoff: float) -> int:
        """The pruning transaction (writer thread)."""
        conn = self.store.connection()
        with writeTransaction(conn):
            deleted = conn.execute("DELETE FROM switches WHERE at < ?", (cutoff,)).rowcount
            over = conn.execute("SELECT plug FROM switches GROUP BY plug HAVING COUNT(*) > ?",
                                (self.keepRows,)).fetchall()
            for (plug,) in over:
                deleted += conn.execute(
                    "DELETE FROM switches WHERE plug = ? AND rowid NOT IN (SELECT rowid FROM switches WHERE"
                    " plug = ? ORDER BY at DESC, rowid DESC LIMIT ?)", (plug, plug, self.keepRows)).rowcount
        if deleted:
            log.info("store: pruned {n} old switches", n=deleted)
        return deleted


class BaselineStore:
    """Each plug's standby-baseline samples (opaque bytes) in table C{baselines}."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self) -> dict[str, bytes]:
        """Every stored plug's bytes (blocking: at start-up, before the reactor runs)."""
        return {str(plug): bytes(data) for plug, data in
                self.store.connection().execute("SELECT plug, data FROM baselines")}

    def save(self, dumps: dict[str, bytes]) -> Deferred:
        """Replace every stored baseline with C{dumps} in one transaction; fires when written (a failure
        is logged)."""
        if self.store.closed:
            return succeed(None)
        rows = [(plug, bytes(data), self.store.clock.seconds()) for plug, data in dumps.items()]
        d = self.store.run(self._write, rows)
        return d.addErrback(lambda f: log.error("store: cannot save standby baselines: {error}",
                                                error=f.getErrorMessage()))

    def _write(self, rows: list[tuple[str, Any, float]]) -> None:
        """The save transaction (writer thread)."""
        conn = self.store.connection()
        with writeTransaction(conn):
            conn.execute("DELETE FROM baselines")
            conn.executemany("INSERT INTO baselines (plug, data, saved) VALUES (?, ?, ?)", rows)
