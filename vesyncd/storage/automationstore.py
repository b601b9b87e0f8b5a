"""
L{SqliteAutomationStore}: automation items as JSON documents in the daemon's SQLite database.

It follows L{vesyncd.storage.store.Store}'s threading model: loading is a blocking read at start-up
(before the reactor runs and before twistd forks), every write goes through the same runner (one
writer thread), so the reactor never waits on the disk and writes stay in order.  Saves and deletes
are coalesced per item while a write is in flight: only the latest document of an item is written.
A write that fails (database away, disk full) is put back in the queue, behind nothing newer, and
tried again after a backoff of L{RETRY_MIN} doubling to L{RETRY_MAX} seconds: an item the user was
told is saved is written once the database is back.

The table is created by L{SCHEMA} (added to the database's migrations by the storage package).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vesyncd.automation.interfaces import IAutomationStore
from vesyncd.storage.runner import Runner
from vesyncd.storage.sqlite import writeTransaction

log = Logger()

#: The DDL of the automation table; idempotent, so it may also be run on every start.
SCHEMA = """
CREATE TABLE IF NOT EXISTS automation (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    plug TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, id, plug)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS automation_plug ON automation (plug);
"""

#: A stored document longer than this is refused (and skipped when loading).
MAX_DOC = 4096
#: Seconds before a failed write is tried again, doubling up to L{RETRY_MAX}.
RETRY_MIN = 1.0
RETRY_MAX = 60.0

_Key = tuple[str, str, str]


@implementer(IAutomationStore)
class SqliteAutomationStore:
    """Automation items in table C{automation}; C{run(fn, *args)} runs C{fn} in the writer thread and
    C{connection()} gives that thread's connection (e.g. C{Store.run} and C{Store.connection})."""

    def __init__(self, run: Runner, connection: Callable[[], sqlite3.Connection],
                 clock: IReactorTime | None = None) -> None:
        self.run = run
        self.connection = connection
        #: Schedules the retry of a failed write; without a clock a failed write waits for the next save.
        self.clock = clock
        self._queued: dict[_Key, str | None] = {}
        self._plugDeletes: set[str] = set()
        self._inFlight: Deferred | None = None
        self._waiting: list[Deferred] = []
        self._backoff = 0.0
        self._retry: IDelayedCall | None = None

    def load(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Every stored item as C{(kind, id, plug, document)}; unreadable rows are logged and skipped."""
        items = []
        for kind, id, plug, doc in self.connection().execute("SELECT kind, id, plug, doc FROM automation"):
            try:
                if len(doc) > MAX_DOC:
                    raise ValueError(f"document of {len(doc)} characters")
                value = json.loads(doc)
                if not isinstance(value, dict):
                    raise ValueError("document is not an object")
            except ValueError as e:
                log.error("automation store: skipping unreadable {kind} {id!r}: {error}", kind=str(kind)[:20],
                          id=str(id)[:40], error=str(e)[:200])
                continue
            items.append((kind, id, plug, value))
        return items

    def save(self, kind: str, id: str, plug: str, document: dict[str, Any]) -> None:
        """Queue one item's document for writing (replacing any queued older one)."""
        text = json.dumps(document, separators=(",", ":"), sort_keys=True)
        if len(text) > MAX_DOC:
            raise ValueError(f"automation document for {kind} {id} is too long ({len(text)} characters)")
        self._queued[(kind, id, plug)] = text
        self._write()

    def delete(self, kind: str, id: str, plug: str) -> None:
        """Queue the removal of one item."""
        self._queued[(kind, id, plug)] = None
        self._write()

    def deletePlug(self, plug: str) -> None:
        """Queue the removal of every item of C{plug}."""
        self._queued = {k: v for k, v in self._queued.items() if k[2] != plug}
        self._plugDeletes.add(plug)
        self._write()

    def flush(self) -> Deferred:
        """Write what is queued now (a waiting retry is started at once); fire when everything queued
        so far is written, or when that attempt has failed (the failure is logged and the items stay
        queued for the next retry: see the module's docstring), so a shutdown never waits on a backoff."""
        if self._inFlight is None and not self._queued and not self._plugDeletes:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._retry = None
            self._write()
        return d

    def _write(self) -> None:
        """Start writing what is queued unless a write is in flight (it starts the next one when done)
        or a retry is scheduled (it starts it then)."""
        if self._inFlight is not None or (self._retry is not None and self._retry.active()):
            return
        if not self._queued and not self._plugDeletes:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)
            return
        batch, self._queued = self._queued, {}
        plugs, self._plugDeletes = self._plugDeletes, set()
        self._inFlight = self.run(self._transaction, batch, plugs)

        def done(result: Any) -> None:
            self._inFlight = None
            if self._backoff:
                log.info("automation store: writing works again")
            self._backoff = 0.0
            self._write()

        def failed(f: Any) -> None:
            self._inFlight = None
            self._requeue(batch, plugs)
            self._backoff = min(RETRY_MAX, self._backoff * 2 or RETRY_MIN)
            log.error("automation store: cannot write {n} items: {error}; keeping them and retrying in "
                      "{delay:g} s", n=len(batch) + len(plugs), error=f.getErrorMessage(), delay=self._backoff)
            # Whoever waits for a flush hears that this attempt is over; the items stay queued.
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)
            if self.clock is not None:
                self._retry = self.clock.callLater(self._backoff, self._write)

        self._inFlight.addCallbacks(done, failed)

    def _requeue(self, batch: dict[_Key, str | None], plugs: set[str]) -> None:
        """Put a failed batch back: what was queued since wins, and nothing comes back for a plug
        deleted since."""
        for key, doc in batch.items():
            if key[2] not in self._plugDeletes:
                self._queued.setdefault(key, doc)
        self._plugDeletes |= plugs

    def _transaction(self, batch: dict[_Key, str | None], plugs: set[str]) -> None:
        """Write one batch in one transaction (writer thread)."""
        conn = self.connection()
        with writeTransaction(conn):
            conn.executemany("DELETE FROM automation WHERE plug = ?", [(p,) for p in plugs])
            conn.executemany("DELETE FROM automation WHERE kind = ? AND id = ? AND plug = ?",
                             [k for k, doc in batch.items() if doc is None])
            conn.executemany("INSERT INTO automation (kind, id, plug, doc) VALUES (?, ?, ?, ?) ON CONFLICT"
                             " (kind, id, plug) DO UPDATE SET doc = excluded.doc",
                             [(*k, doc) for k, doc in batch.items() if doc is not None])
