"""
L{Subscribers}: the callbacks that follow a hub's events, and the delivery of each event to them.

Every subscriber gets this node's own events; in a cluster, events of plugs held by other nodes
(C{event.origin} set) go only to those that asked for them (watchers such as the event streams),
not to those that write or act (the store, MQTT state, automation, insight), which subscribe
with C{remote=False}.  A subscriber that raises is logged and the others still get the event.
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from vesyncd.core.model import Event

log = Logger()


class Subscribers:
    """The event callbacks of one hub, in the order they subscribed."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Event], None]] = []
        self._localOnly: set[Callable[[Event], None]] = set()

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, callback: Callable[[Event], None], remote: bool = True) -> Callable[[], None]:
        """Deliver every event from now on to C{callback} (other nodes' only with C{remote}); returns
        a function that stops it (once per subscription; calling it again does nothing)."""
        self._callbacks.append(callback)
        if not remote:
            self._localOnly.add(callback)

        subscribed = [True]

        def unsubscribe() -> None:
            if subscribed[0] and callback in self._callbacks:
                subscribed[0] = False
                self._callbacks.remove(callback)
                if callback not in self._callbacks:
                    self._localOnly.discard(callback)

        return unsubscribe

    def deliver(self, event: Event) -> None:
        """Give this node's C{event} to every subscriber."""
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.failure("event subscriber {callback!r} failed on {kind}", callback=callback, kind=event.kind)

    def deliverRemote(self, event: Event) -> None:
        """Give another node's C{event} to the subscribers that take such events."""
        localOnly = self._localOnly
        for callback in list(self._callbacks):
            if callback in localOnly:
                continue
            try:
                callback(event)
            except Exception:
                log.failure("event subscriber {callback!r} failed on {kind}", callback=callback, kind=event.kind)
