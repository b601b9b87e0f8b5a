"""
The MQTT messages waiting to be handed to the broker connection, bounded in count and bytes.

Retained messages are state: only the latest payload per topic matters, and everything but a
cleared topic can be derived again from the hub.  So they are kept as the latest payload per
topic, and when the box is full the oldest topic is dropped (and counted) rather than the box
growing; the bridge then republishes to heal what was dropped.  Live changes (from hub events)
go out before a bulk republish, so a toggle is never stuck behind thousands of discovery
configs.  Events (not retained) are kept only briefly and dropped oldest first.
"""

from __future__ import annotations

import collections

#: Topics whose latest retained payload may wait at once (live and bulk lanes together).
MAX_PENDING = 10000
#: Bytes of topics and payloads that may wait at once.
MAX_PENDING_BYTES = 8 * 1024 * 1024
#: Non-retained event messages that may wait at once.
MAX_EVENTS = 1000


class PendingPublishes:
    """The latest retained payload per topic, oldest topic first, bounded to C{limit} topics."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        # OrderedDict: taking the oldest item is O(1) (a plain dict's first key is not, after many pops).
        self._items: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.dropped = 0
        #: Bytes of the topics and payloads held.
        self.size = 0

    def put(self, topic: str, payload: bytes) -> None:
        """Keep C{payload} as the value for C{topic}, dropping the oldest topic when full."""
        old = self._items.get(topic)
        if old is not None:
            self.size += len(payload) - len(old)
            self._items[topic] = payload
            return
        if len(self._items) >= self.limit:
            self.popOldest()
            self.dropped += 1
        self._items[topic] = payload
        self.size += len(topic) + len(payload)

    def update(self, topic: str, payload: bytes) -> bool:
        """Replace the value of C{topic} if it is held (keeping its place); False when it is not."""
        old = self._items.get(topic)
        if old is None:
            return False
        self.size += len(payload) - len(old)
        self._items[topic] = payload
        return True

    def discard(self, topic: str) -> None:
        """Forget the pending value of C{topic} (a fresher one was just sent)."""
        payload = self._items.pop(topic, None)
        if payload is not None:
            self.size -= len(topic) + len(payload)

    def popOldest(self) -> tuple[str, bytes] | None:
        """Take the topic that has waited longest, or None when empty."""
        if not self._items:
            return None
        topic, payload = self._items.popitem(last=False)
        self.size -= len(topic) + len(payload)
        return topic, payload

    def drain(self) -> list[tuple[str, bytes]]:
        """Take every pending publish, oldest topic first."""
        items, self._items = list(self._items.items()), collections.OrderedDict()
        self.size = 0
        return items

    def __contains__(self, topic: object) -> bool:
        return topic in self._items

    def __len__(self) -> int:
        return len(self._items)


class Outbox:
    """Messages for the broker in three lanes: live retained changes, events, then bulk republishes.

    C{dropped} counts retained values lost to the bounds (the owner should republish), and
    C{eventsDropped} events lost to theirs.
    """

    def __init__(self, maxTopics: int = MAX_PENDING, maxBytes: int = MAX_PENDING_BYTES,
                 maxEvents: int = MAX_EVENTS) -> None:
        self.maxTopics = maxTopics
        self.maxBytes = maxBytes
        self.live = PendingPublishes(maxTopics)
        self.bulk = PendingPublishes(maxTopics)
        self.events: collections.deque[tuple[str, bytes, int]] = collections.deque(maxlen=maxEvents)
        self.dropped = 0
        self.eventsDropped = 0

    def putRetained(self, topic: str, payload: bytes, bulk: bool = False) -> None:
        """Queue the latest retained value of C{topic}; a live value supersedes a waiting bulk one."""
        if bulk:
            # A bulk value is derived from the current state, so it is as new as a waiting live one.
            if not self.live.update(topic, payload):
                self.bulk.put(topic, payload)
        else:
            self.bulk.discard(topic)
            self.live.put(topic, payload)
        self._bound()

    def putEvent(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Queue one non-retained message; the oldest waiting one goes when full."""
        if self.events.maxlen is not None and len(self.events) >= self.events.maxlen:
            self.eventsDropped += 1
        self.events.append((topic, payload, qos))

    def _bound(self) -> None:
        # Bulk values are the cheapest to lose: a republish makes them again.
        while (len(self.live) + len(self.bulk) > self.maxTopics
               or self.live.size + self.bulk.size > self.maxBytes):
            lane = self.bulk if len(self.bulk) else self.live
            if lane.popOldest() is None:
                break
            self.dropped += 1
        self.dropped += self.live.dropped + self.bulk.dropped
        self.live.dropped = self.bulk.dropped = 0

    def pop(self) -> tuple[str, bytes, bool, int] | None:
        """The next message to send as (topic, payload, retain, qos): live, then events, then bulk."""
        item = self.live.popOldest()
        if item is not None:
            return item[0], item[1], True, 0
        if self.events:
            topic, payload, qos = self.events.popleft()
            return topic, payload, False, qos
        item = self.bulk.popOldest()
        if item is not None:
            return item[0], item[1], True, 0
        return None

    def dropEvents(self) -> None:
        """Forget waiting events (they are live news, stale once the connection is gone)."""
        self.eventsDropped += len(self.events)
        self.events.clear()

    def __len__(self) -> int:
        return len(self.live) + len(self.bulk) + len(self.events)

    @property
    def size(self) -> int:
        """Bytes of retained topics and payloads waiting."""
        return self.live.size + self.bulk.size
