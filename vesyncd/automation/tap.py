"""
Wiring of the automation engine: its options, checking them, and the service that starts the engine
once the daemon runs and stops it (writing what is pending) when the daemon stops.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.python import usage

from vesyncd.automation import settings
from vesyncd.automation.engine import AutomationEngine
from vesyncd.automation.interfaces import IAutomationHub, IAutomationStore
from vesyncd.automation.parse import AutomationError
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.store import MemoryAutomationStore

#: The key of the checked L{AutomationConfig} in the daemon's parsed options.
CONFIG_KEY = "automation-config"

Item = tuple[str, str, str, dict[str, Any]]


class AutomationOptions:
    """The automation options, part of the daemon's L{vesyncd.tap.Options}."""

    optParameters = settings.optParameters


def checkOptions(config: Any) -> None:
    """Build the engine's settings from the options and the (already checked) C{--timezone}; a bad value
    is a L{usage.UsageError} naming the option."""
    try:
        config[CONFIG_KEY] = AutomationConfig.fromOptions(config, config["timezone"])
    except AutomationError as e:
        raise usage.UsageError(str(e)) from None


class AutomationService(service.Service):
    """Starts the engine with the items loaded at start-up; stopping it fires once its store has written."""

    def __init__(self, engine: AutomationEngine, items: list[Item]) -> None:
        self.engine = engine
        self.items: list[Item] | None = items

    def startService(self) -> None:
        """Load the items, run what came due while the daemon was down, follow the hub."""
        service.Service.startService(self)
        items, self.items = self.items, None  # a restart of the service reloads from the store
        self.engine.start(items)

    def stopService(self) -> Deferred:
        """Stop the engine's clock calls; fires when the store has written everything."""
        service.Service.stopService(self)
        return self.engine.stop()


def makeServices(parent: service.MultiService, hub: IAutomationHub, config: Any, reactor: Any,
                 store: IAutomationStore | None = None, items: list[Item] | None = None,
                 beforeClose: list[Callable[[], Deferred]] | None = None) -> AutomationEngine:
    """The engine over C{store} (its C{items} loaded at start-up), or over a memory store when the daemon
    keeps no state; C{beforeClose} (the store service's) gets the store's flush, so the database closes
    only after the engine's last writes."""
    if store is None:
        store, items = MemoryAutomationStore(), []
    engine = AutomationEngine(hub, store, reactor, config[CONFIG_KEY])
    AutomationService(engine, list(items or [])).setServiceParent(parent)
    if beforeClose is not None:
        beforeClose.append(store.flush)
    return engine
