"""
Wiring of the SQLite store: options, loading state before the hub exists, persisting hub events,
and the per-plug power-on policy.

C{prepare} opens (and migrates) the database in the state directory, loads every known plug into
C{context.known} and the energy totals into a L{SQLiteLedger} as C{context.ledger}.
C{makeServices} subscribes to the hub: each event queues the plug's latest state, C{forgotten}
deletes it, and C{online} applies the plug's power-on policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Callable

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python import usage

from vesyncd.core.hub import ENERGY, FORGOTTEN, ONLINE, RSSI, CommandError, Event, Hub, UnknownPlug
from vesyncd.core.model import PlugState
from vesyncd.paths import DATABASE
from vesyncd.core.periods import hostZone, zoneName
from vesyncd.service import StartupError
from vesyncd.storage.store import Store, StoreOpenError, threadRunner
from vesyncd.storage.ledger import SQLiteLedger

log = Logger()


def _retention(text: str) -> float:
    value = float(text)
    if not value >= 1:
        raise ValueError(f"{text} is less than one day")
    return value


class StorageOptions:
    """The store's options, part of the daemon's L{vesyncd.tap.Options}."""

    optParameters = [
        ["timezone", None, None,
         "IANA time zone of energy days and months, e.g. Europe/Berlin (default: the host's)."],
        ["retention-days", None, 400.0,
         "Days raw energy reports are kept (hourly, daily and monthly totals: forever).", _retention],
    ]


def parseZone(value: Any) -> tzinfo:
    """A time zone from an IANA name (or an existing tzinfo); L{usage.UsageError} names the bad value."""
    if value is None or value == "":
        return hostZone()
    if isinstance(value, tzinfo):
        return value
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise usage.UsageError(f"--timezone {str(value)[:80]!r} is not an IANA time zone name "
                               f"(e.g. Europe/Berlin, America/New_York, UTC)") from None


def checkOptions(config: Any) -> None:
    """Turn C{--timezone} into a tzinfo (host zone by default), refusing unknown names."""
    config["timezone"] = parseZone(config.get("timezone"))


class StoreService(service.Service):
    """Runs the store's writer while the daemon runs; on stop saves every plug and flushes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.hub: Hub | None = None
        self.persister: Persister | None = None

    def startService(self) -> None:
        """Start the periodic flush and the daily pruning."""
        service.Service.startService(self)
        self.store.start()

    def stopService(self) -> Deferred:
        """Save the latest state of every plug (last seen times move without events), then flush and close."""
        service.Service.stopService(self)
        if self.persister is not None:
            self.persister.flush()
        if self.hub is not None:
            for plug in self.hub.plugs():
                self.store.putPlug(plug)
        return self.store.stop()


class Persister:
    """Saves a plug's row after its events, coalesced: state changes within C{delay} seconds, and
    changes that only move "last seen" (energy reports, keepalives) within C{seenDelay} seconds.

    A login alone brings four events and a busy plug a report every few seconds; writing the row
    once per window instead of once per event is most of the store's CPU.  Forgetting is
    immediate.  L{flush} saves everything pending (the store service calls it when stopping).
    """

    SEEN_ONLY = frozenset({ENERGY, RSSI})

    #: Rows built per reactor turn when a window closes.  A row costs ~9 us (the hub's snapshot
    #: and the row); a minute of "last seen" for 10,000 plugs in one turn would hold every plug's
    #: keepalive up for ~90 ms, so the rest waits for the next turn.
    CHUNK = 100

    def __init__(self, hub: Hub, store: Store, delay: float = 1.0, seenDelay: float = 60.0) -> None:
        self.hub = hub
        self.store = store
        self.delay = delay
        self.seenDelay = seenDelay
        self._dirty: set[str] = set()
        self._seen: set[str] = set()
        self._calls: dict[bool, IDelayedCall] = {}
        self._chunks: dict[bool, IDelayedCall] = {}
        self.unsubscribe: Callable[[], None] = hub.subscribe(self.event)

    def event(self, event: Event) -> None:
        """Note what this event changed; delete a forgotten plug at once."""
        if event.kind == FORGOTTEN:
            self._dirty.discard(event.plug)
            self._seen.discard(event.plug)
            self.store.deletePlug(event.plug)
            return
        seenOnly = event.kind in self.SEEN_ONLY
        (self._seen if seenOnly else self._dirty).add(event.plug)
        call = self._calls.get(seenOnly)
        if call is None or not call.active():
            self._calls[seenOnly] = self.hub.clock.callLater(self.seenDelay if seenOnly else self.delay,
                                                             self._flushSome, seenOnly)

    def _flushSome(self, seenOnly: bool) -> None:
        """Save up to L{CHUNK} of the window's plugs; the rest on the next reactor turn.

        A plug with a newer event meanwhile is simply saved with its newer state; one that gets
        an event after being saved opens a new window as usual.
        """
        chain = self._chunks.pop(seenOnly, None)
        if chain is not None and chain.active():
            chain.cancel()  # a new window closed before the last one's rows were all built
        pending = self._seen if seenOnly else self._dirty
        ids = [pending.pop() for _ in range(min(self.CHUNK, len(pending)))]
        self._put(ids)
        if pending:
            self._chunks[seenOnly] = self.hub.clock.callLater(0, self._flushSome, seenOnly)

    def _put(self, ids: list[str]) -> None:
        for plugId in ids:
            try:
                self.store.putPlug(self.hub.get(plugId))
            except UnknownPlug:
                continue

    def flush(self) -> None:
        """Queue every pending plug row now."""
        for call in [*self._calls.values(), *self._chunks.values()]:
            if call.active():
                call.cancel()
        self._calls.clear()
        self._chunks.clear()
        ids = list(self._dirty | self._seen)
        self._dirty.clear()
        self._seen.clear()
        self._put(ids)


class PowerOnPolicy:
    """Applies a plug's power-on policy (on, off, last) when it logs in after an outage."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.unsubscribe: Callable[[], None] = hub.subscribe(self.event)

    def event(self, event: Event) -> None:
        """On C{online}, note the relay state from before the outage and decide once the login is applied."""
        if event.kind != ONLINE:
            return
        try:
            plug = self.hub.get(event.plug)
        except UnknownPlug:
            return
        if plug.power_on is None:
            return
        # The hub emits C{online} before it takes the relay from the login, so this is still the
        # last state known before the outage; look again once the login has been applied.
        self.hub.clock.callLater(0, self.apply, plug.id, plug.power_on, plug.relay)

    def apply(self, plugId: str, policy: str, before: bool | None) -> Deferred | None:
        """Switch the plug if what it reported at login differs from what its policy asks."""
        try:
            plug = self.hub.get(plugId)
        except UnknownPlug:
            return None
        if not self.hub.isOnline(plugId):
            return None
        target = {"on": True, "off": False}.get(policy, before)
        if target is None or plug.relay is target:
            return None
        log.info("plug {plug}: power-on policy {policy}: switching {state} (it came back {now})",
                 plug=plug.name, policy=policy, state="on" if target else "off",
                 now={True: "on", False: "off"}.get(plug.relay, "in an unknown state"))
        d = self.hub.switch(plugId, target)

        def failed(f: Any) -> None:
            if f.check(CommandError):
                log.warn("plug {plug}: power-on policy {policy} failed: {error}", plug=plug.name,
                         policy=policy, error=f.getErrorMessage())
            else:
                log.failure("plug {plug}: power-on policy {policy} failed", f, plug=plug.name, policy=policy)

        d.addCallbacks(lambda _: None, failed)
        return d


def openStore(config: Any, reactor: Any) -> Store:
    """Open the state directory's database and its writer thread; L{StartupError} says what to fix."""
    zone = parseZone(config.get("timezone"))
    path = config["state-dir"] / DATABASE
    run, stop = threadRunner(reactor)
    try:
        store = Store.open(path, zone, reactor, run=run, stopRunner=stop,
                           retentionDays=float(config.get("retention-days") or 400.0))
    except StoreOpenError as e:
        raise StartupError(str(e)) from None
    return store


@dataclass
class StoredState:
    """What the state directory holds at start-up, and the service that keeps writing to it."""

    store: Store
    ledger: SQLiteLedger
    known: list[PlugState]
    service: StoreService
    powerOn: PowerOnPolicy | None = None


def openState(parent: service.MultiService, config: Any, reactor: Any) -> StoredState:
    """Open the database and load the known plugs and energy totals, before the hub exists."""
    store = openStore(config, reactor)
    known = store.loadPlugs()
    ledger = SQLiteLedger(store, reactor.seconds())
    store.detach()
    storeService = StoreService(store)
    storeService.setServiceParent(parent)
    log.info("store: {path}: {n} plugs known ({aliases} with aliases), energy days in {zone}",
             path=str(store.path), n=len(known), aliases=sum(1 for p in known if p.alias), zone=zoneName(store.zone))
    return StoredState(store, ledger, known, storeService)


def makeServices(hub: Hub, stored: StoredState) -> None:
    """Persist the hub's events to the store and apply power-on policies."""
    stored.service.hub = hub
    stored.service.persister = Persister(hub, stored.store)
    stored.powerOn = PowerOnPolicy(hub)
