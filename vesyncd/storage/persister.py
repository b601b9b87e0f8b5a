"""
Saving plug state after hub events, coalesced so a busy daemon writes each row once per window, and
each relay switch (with its cause) to the switch history.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall

from vesyncd.core.hub import Hub
from vesyncd.core.model import ENERGY, FORGOTTEN, RELAY, RSSI, Event, UnknownPlug
from vesyncd.storage.sidetables import SwitchLog
from vesyncd.storage.store import Store


class Persister:
    """Saves a plug's row after its events, coalesced: state changes within C{delay} seconds, and
    changes that only move "last seen" (energy reports, keepalives) within C{seenDelay} seconds.

    A login alone brings four events and a busy plug a report every few seconds; writing the row
    once per window instead of once per event is most of the store's CPU.  Forgetting is
    immediate.  L{flush} saves everything pending (the store service calls it when stopping).

    In a cluster only this node's own events are followed: the node a plug is connected to saves it.
    """

    SEEN_ONLY = frozenset({ENERGY, RSSI})

    #: Rows built per reactor turn when a window closes.  A row costs ~9 us (the hub's snapshot
    #: and the row); a minute of "last seen" for 10,000 plugs in one turn would hold every plug's
    #: keepalive up for ~90 ms, so the rest waits for the next turn.
    CHUNK = 100

    def __init__(self, hub: Hub, store: Store, delay: float = 1.0, seenDelay: float = 60.0,
                 switches: SwitchLog | None = None) -> None:
        self.hub = hub
        self.store = store
        self.switches = switches
        self.delay = delay
        self.seenDelay = seenDelay
        self._dirty: set[str] = set()
        self._seen: set[str] = set()
        self._calls: dict[bool, IDelayedCall] = {}
        self._chunks: dict[bool, IDelayedCall] = {}
        self.unsubscribe: Callable[[], None] = hub.subscribe(self.event, remote=False)

    def event(self, event: Event) -> None:
        """Note what this event changed; delete a forgotten plug at once."""
        if event.kind == FORGOTTEN:
            self._dirty.discard(event.plug)
            self._seen.discard(event.plug)
            if self.switches is not None:
                self.switches.forget(event.plug)
            self.store.deletePlug(event.plug)
            return
        if event.kind == RELAY and self.switches is not None and isinstance(event.data.get("relay"), bool):
            cause = event.data.get("cause")
            self.switches.add(event.plug, event.at, event.data["relay"], cause if isinstance(cause, str) else None)
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
            if self.hub.elsewhere(plugId) is not None:
                continue  # connected to another node since: that node saves it
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
