"""
Wiring of the store (SQLite in the state directory, or PostgreSQL with C{--database}): options, loading state before the hub exists, and the services that
persist hub events (L{vesyncd.storage.persister}) and apply power-on policies
(L{vesyncd.core.policy}).

C{openState} opens (and migrates) the database in the state directory and loads every known plug
and the energy totals into a L{SQLiteLedger}.  C{makeServices} subscribes to the hub: each event
queues the plug's latest state, C{forgotten} deletes it, and C{online} applies the plug's power-on
policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Callable

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from vesyncd.storage.automationstore import SqliteAutomationStore
from vesyncd.core.hub import Hub
from vesyncd.core.model import PlugState
from vesyncd.core.policy import PowerOnPolicy
from vesyncd.paths import DATABASE
from vesyncd.core.periods import hostZone, zoneName
from vesyncd.service import StartupError
from vesyncd.storage.postgres import isDatabaseURL, redact
from vesyncd.storage.store import Store, StoreOpenError
from vesyncd.storage.runner import threadRunner
from vesyncd.storage.ledger import SQLiteLedger
from vesyncd.storage.persister import Persister
from vesyncd.storage.sidetables import BaselineStore, SwitchLog

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
        ["database", None, None,
         "Keep state and energy in PostgreSQL: postgresql://USER:PASSWORD@HOST:PORT/DB "
         "(default: the SQLite file in --state-dir)."],
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
    """Turn C{--timezone} into a tzinfo (host zone by default), refusing unknown names; refuse a
    C{--database} that is not a PostgreSQL URL (the message never shows a password)."""
    config["timezone"] = parseZone(config.get("timezone"))
    url = config.get("database")
    if url in (None, ""):
        config["database"] = None
    elif not isDatabaseURL(url):
        raise usage.UsageError(f"--database {redact(str(url))[:120]!r} is not a PostgreSQL URL: give "
                               f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave it out for SQLite")


class StoreService(service.Service):
    """Runs the store's writer while the daemon runs; on stop saves every plug and flushes."""

    def __init__(self, store: Store, switches: SwitchLog | None = None) -> None:
        self.store = store
        self.switches = switches
        self.hub: Hub | None = None
        self.persister: Persister | None = None
        #: Called at stop, before the store closes; each returns a Deferred waited for (other writers
        #: through the store's thread: the automation store's flush, the baselines' last save).
        self.beforeClose: list[Callable[[], Deferred]] = []

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
            # In a cluster only this node's plugs: the rows of plugs on other nodes are theirs to write.
            clustered = self.hub.cluster is not None
            for plug in self.hub.plugs():
                if not clustered or self.hub.session(plug.id) is not None:
                    self.store.putPlug(plug)
        waits = [maybeDeferred(hook) for hook in self.beforeClose]
        if self.switches is not None:
            waits.append(self.switches.flush(now=True))
        d = DeferredList(waits, consumeErrors=True)
        return d.addCallback(lambda _: self.store.stop())


def openStore(config: Any, reactor: Any) -> Store:
    """Open the database (C{--database}'s PostgreSQL, else the state directory's SQLite file) and its
    writer thread; L{StartupError} says in one line what to fix."""
    zone = parseZone(config.get("timezone"))
    url = config.get("database")
    run, stop = threadRunner(reactor)
    kw = dict(run=run, stopRunner=stop, retentionDays=float(config.get("retention-days") or 400.0))
    try:
        if url:
            from vesyncd.storage import postgres

            return postgres.openStore(url, zone, reactor, **kw)
        return Store.open(config["state-dir"] / DATABASE, zone, reactor, **kw)
    except StoreOpenError as e:
        stop()
        raise StartupError(str(e)) from None


@dataclass
class StoredState:
    """What the state directory holds at start-up, and the service that keeps writing to it."""

    store: Store
    ledger: SQLiteLedger
    known: list[PlugState]
    service: StoreService
    powerOn: PowerOnPolicy | None = None
    #: The automation items' table, and the items it held at start-up (for C{engine.start(items)}).
    automation: SqliteAutomationStore | None = None
    automationItems: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    #: The relay switch history, written by the persister.
    switches: SwitchLog | None = None
    #: Each plug's standby-baseline samples as stored at start-up, and where they are saved.
    baselines: dict[str, bytes] = field(default_factory=dict)
    baselineStore: BaselineStore | None = None


def openState(parent: service.MultiService, config: Any, reactor: Any) -> StoredState:
    """Open the database and load the known plugs and energy totals, before the hub exists."""
    store = openStore(config, reactor)
    known = store.loadPlugs()
    ledger = SQLiteLedger(store, reactor.seconds())
    automation = SqliteAutomationStore(store.run, store.connection, clock=reactor)
    items = automation.load()
    baselineStore = BaselineStore(store)
    baselines = baselineStore.load()
    store.detach()
    switches = SwitchLog(store)
    storeService = StoreService(store, switches)
    storeService.setServiceParent(parent)
    log.info("store: {path}: {n} plugs known ({aliases} with aliases), energy days in {zone}",
             path=store.label, n=len(known), aliases=sum(1 for p in known if p.alias), zone=zoneName(store.zone))
    return StoredState(store, ledger, known, storeService, automation=automation, automationItems=items,
                       switches=switches, baselines=baselines, baselineStore=baselineStore)


def publishFacts(info: Any, stored: StoredState) -> None:
    """Show the database in C{vesyncctl info} and to the doctor (C{Store.health}, read at request time)."""
    info.facts["database"] = stored.store.health


def makeServices(hub: Hub, stored: StoredState) -> None:
    """Persist the hub's events (plug rows, relay switches) to the store and apply power-on policies."""
    stored.service.hub = hub
    stored.service.persister = Persister(hub, stored.store, switches=stored.switches)
    stored.powerOn = PowerOnPolicy(hub)
