"""Test doubles for the automation engine: a faithful in-memory hub and a clock set to a local time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from vesyncd.automation.engine import AutomationEngine
from vesyncd.automation.interfaces import IAutomationHub
from vesyncd.automation.model import Location
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.store import MemoryAutomationStore
from vesyncd.core.model import Event, PlugOffline, UnknownPlug

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


@dataclass
class FakePlug:
    """What the fake hub knows of one plug."""

    id: str
    online: bool = True
    relay: bool | None = False
    power_w: float | None = 0.0


@implementer(IAutomationHub)
class FakeAutomationHub:
    """Plugs in a dict; switches and refreshes answer at once (or fail like the real hub) and emit the
    events the real hub emits; everything asked and announced is recorded."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.plugs: dict[str, FakePlug] = {}
        self.switches: list[tuple[float, str, bool, str]] = []
        self.refreshes: list[tuple[float, str]] = []
        self.announced: list[Event] = []
        self.failNext: list[Exception] = []
        self._subscribers: list[Callable[[Any], None]] = []

    def add(self, plugId: str, online: bool = True, power: float = 0.0) -> FakePlug:
        """Know a plug."""
        self.plugs[plugId] = FakePlug(plugId, online, False, power)
        return self.plugs[plugId]

    def _emit(self, kind: str, plugId: str, **data: Any) -> None:
        """Tell every subscriber about an event stamped with the clock."""
        event = Event(kind, plugId, self.clock.seconds(), data)
        for callback in list(self._subscribers):
            callback(event)

    def _check(self, plugId: str) -> Deferred | None:
        """A failed Deferred like the real hub's for an unknown or offline plug (or a queued failure), else None."""
        plug = self.plugs.get(plugId)
        if plug is None:
            return fail(UnknownPlug(f"no plug {plugId}"))
        if not plug.online:
            return fail(PlugOffline(f"plug {plugId} is offline"))
        if self.failNext:
            return fail(self.failNext.pop(0))
        return None

    def switch(self, plugId: str, on: bool, cause: str) -> Deferred:
        """Record and apply the switch; a relay event carries the cause."""
        refused = self._check(plugId)
        if refused is not None:
            return refused
        plug = self.plugs[plugId]
        self.switches.append((self.clock.seconds(), plugId, on, cause))
        if plug.relay is not on:
            previous, plug.relay = plug.relay, on
            self._emit("relay", plugId, relay=on, cause=cause, previous=previous)
        return succeed(FakePlug(plug.id, plug.online, plug.relay, plug.power_w))

    def refresh(self, plugId: str) -> Deferred:
        """Record the reading and emit a runtime event with the plug's power."""
        refused = self._check(plugId)
        if refused is not None:
            return refused
        plug = self.plugs[plugId]
        self.refreshes.append((self.clock.seconds(), plugId))
        self._emit("runtime", plugId, power_w=plug.power_w)
        return succeed(FakePlug(plug.id, plug.online, plug.relay, plug.power_w))

    def isOnline(self, plugId: str) -> bool:
        """True for a known online plug."""
        plug = self.plugs.get(plugId)
        return plug is not None and plug.online

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Follow the events."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def announce(self, kind: str, plugId: str, **data: Any) -> None:
        """Record and emit an engine event."""
        self.announced.append(Event(kind, plugId, self.clock.seconds(), data))
        self._emit(kind, plugId, **data)

    def setOnline(self, plugId: str, online: bool) -> None:
        """Bring a plug online or take it offline, with the event."""
        self.plugs[plugId].online = online
        self._emit("online" if online else "offline", plugId)

    def forget(self, plugId: str) -> None:
        """Forget a plug, with the event."""
        del self.plugs[plugId]
        self._emit("forgotten", plugId)

    def causes(self, plugId: str | None = None) -> list[tuple[bool, str]]:
        """The (on, cause) of every switch made (to C{plugId}), in order."""
        return [(on, cause) for _, p, on, cause in self.switches if plugId in (None, p)]


def clockAt(when: datetime) -> task.Clock:
    """A task.Clock reading the POSIX time of aware C{when}."""
    clock = task.Clock()
    clock.advance(when.timestamp())
    return clock


def advanceTo(clock: task.Clock, when: datetime) -> None:
    """Advance C{clock} to C{when} from one delayed call to the next, so each runs at its own time."""
    target = when.timestamp()
    while clock.seconds() < target:
        pending = [c.getTime() for c in clock.getDelayedCalls()]
        upcoming = min([t for t in pending if t > clock.seconds()] + [target])
        clock.advance(min(upcoming, target) - clock.seconds())


def makeEngine(clock: task.Clock, hub: FakeAutomationHub | None = None, store: Any = None,
               zone: Any = BERLIN, location: Location | None = None, start: bool = True,
               **config: Any) -> tuple[AutomationEngine, FakeAutomationHub, Any]:
    """An engine on C{clock} with a fake hub and a memory store (new ones unless given), started."""
    import random

    hub = hub or FakeAutomationHub(clock)
    store = store if store is not None else MemoryAutomationStore()
    engine = AutomationEngine(hub, store, clock, AutomationConfig(zone=zone, location=location, **config),
                              rng=random.Random(1234))
    if start:
        engine.start()
    return engine, hub, store
