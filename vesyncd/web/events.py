"""
Server-sent events: the hub's events as an C{text/event-stream}, and a short power history per plug.

Each event is the one event shape of L{vesyncd.core.events.eventJSON}, with the plug's current
state beside it under C{state} (so the page redraws a card without asking again).

Each stream is an C{IPushProducer} on its request: while the client's socket is full, events wait
in a bounded buffer, and a client that falls further behind is dropped.  Comment heartbeats keep
proxies and idle clients honest.  The number of concurrent streams is bounded.
"""

from __future__ import annotations

import array
import bisect
import collections
import json
from typing import Any, Callable

from twisted.internet import task
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from vesyncd.core.events import eventJSON
from vesyncd.core.hub import Hub
from vesyncd.core.model import ENERGY, FORGOTTEN, RUNTIME, CommandError, Event

log = Logger()

MAX_STREAMS = 16
#: Events (or heartbeats) a paused stream may hold before its client is dropped.
MAX_BUFFERED = 256
HEARTBEAT = 15.0
#: Seconds of power readings kept per plug, and at most this many readings.
POWER_WINDOW = 3600.0
MAX_POWER_POINTS = 720


def streamJSON(hub: Hub, event: Event) -> dict[str, Any]:
    """The event in the one event shape, plus C{state}: the plug's current state, for a plug the hub
    knows (not a forgotten one, nor one waiting for approval)."""
    plug = None
    if event.kind != FORGOTTEN:
        try:
            plug = hub.get(event.plug)
        except CommandError:
            plug = None
    doc = eventJSON(event, plug if plug is not None and plug.id == event.plug else None)
    if plug is not None and plug.id == event.plug:
        doc["state"] = plug.toJSON(hub.energy(plug.id))
    return doc


def frame(kind: str, data: Any, eventId: int | None = None) -> bytes:
    """One SSE frame; C{data} is JSON on a single line, so no field can break the framing."""
    lines = []
    if eventId is not None:
        lines.append(f"id: {eventId}")
    lines.append(f"event: {kind}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


@implementer(IPushProducer)
class EventStream:
    """One client's event stream; writes while the socket takes data, buffers briefly otherwise."""

    def __init__(self, hub: Hub, request: Request, peer: str, onClose: Callable[["EventStream"], None],
                 maxBuffered: int = MAX_BUFFERED) -> None:
        self.hub = hub
        self.request = request
        self.peer = peer
        self.onClose = onClose
        self.maxBuffered = maxBuffered
        self.paused = False
        self.closed = False
        self.sequence = 0
        self._buffer: collections.deque[bytes] = collections.deque()
        self._unsubscribe = hub.subscribe(self.event)

    def start(self) -> None:
        """Send the headers and a first comment; the stream then lives until either side ends it."""
        request = self.request
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        request.setHeader("x-accel-buffering", "no")
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self.close("client went away"))
        self.send(b"retry: 3000\n: vesyncd event stream\n\n")

    def event(self, event: Event) -> None:
        """Hub subscriber: frame the event for this client."""
        self.sequence += 1
        self.send(frame(event.kind, streamJSON(self.hub, event), self.sequence))

    def heartbeat(self) -> None:
        """A comment line, so that dead connections surface and proxies keep the stream."""
        self.send(b": ping\n\n")

    def send(self, data: bytes) -> None:
        """Write now, or buffer while paused; drop the client when the buffer overflows."""
        if self.closed:
            return
        if self.paused:
            if len(self._buffer) >= self.maxBuffered:
                log.warn("http: event stream to {peer} dropped: client too slow ({n} messages waiting)",
                         peer=self.peer, n=len(self._buffer))
                self.close("too slow")
                channel = self.request.channel
                if channel is not None and channel.transport is not None:
                    channel.transport.abortConnection()
                return
            self._buffer.append(data)
            return
        self.request.write(data)

    def pauseProducing(self) -> None:
        """The client's socket is full."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The client's socket drained: flush what waited."""
        self.paused = False
        while self._buffer and not self.paused and not self.closed:
            self.request.write(self._buffer.popleft())

    def stopProducing(self) -> None:
        """The connection is going away."""
        self.close("connection closed")

    def close(self, why: str) -> None:
        """Stop following the hub and release the slot (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._buffer.clear()
        self._unsubscribe()
        self.onClose(self)
        log.debug("http: event stream to {peer} ended: {why}", peer=self.peer, why=why)


class EventStreams:
    """The set of open streams: admits up to C{maxStreams} and sends heartbeats to all."""

    def __init__(self, hub: Hub, clock: IReactorTime, maxStreams: int = MAX_STREAMS,
                 heartbeat: float = HEARTBEAT, maxBuffered: int = MAX_BUFFERED) -> None:
        self.hub = hub
        self.clock = clock
        self.maxStreams = maxStreams
        self.maxBuffered = maxBuffered
        self.streams: set[EventStream] = set()
        self.refused = 0
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self.heartbeatInterval = heartbeat

    def full(self) -> bool:
        """True when no further stream may open."""
        return len(self.streams) >= self.maxStreams

    def open(self, request: Request, peer: str) -> EventStream:
        """Start a stream on C{request} (call L{full} first)."""
        stream = EventStream(self.hub, request, peer, self.streams.discard, self.maxBuffered)
        self.streams.add(stream)
        if not self._heartbeat.running:
            self._heartbeat.start(self.heartbeatInterval, now=False)
        # The stream sends heartbeats; the site's idle timeout would cut a quiet one.
        if request.channel is not None:
            request.channel.setTimeout(None)
        stream.start()
        return stream

    def _beat(self) -> None:
        for stream in list(self.streams):
            stream.heartbeat()
        if not self.streams and self._heartbeat.running:
            self._heartbeat.stop()

    def closeAll(self) -> None:
        """End every stream (at shutdown)."""
        for stream in list(self.streams):
            stream.close("shutting down")
            if not stream.request.finished:
                stream.request.unregisterProducer()
                stream.request.finish()
        if self._heartbeat.running:
            self._heartbeat.stop()


class PowerHistory:
    """The last hour of power readings per plug, from the hub's runtime and energy events.

    Readings are kept in two flat arrays per plug (4-byte times and watts), about 8 bytes a
    reading instead of ~100 for a tuple of floats: with thousands of plugs this is the page's
    largest memory cost.
    """

    def __init__(self, hub: Hub, window: float = POWER_WINDOW, maxPoints: int = MAX_POWER_POINTS) -> None:
        self.hub = hub
        self.window = window
        self.maxPoints = maxPoints
        self._points: dict[str, tuple[array.array, array.array]] = {}
        self.stop = hub.subscribe(self.event)

    def event(self, event: Event) -> None:
        """Keep a power reading from a runtime or energy event; forget a forgotten plug."""
        if event.kind == FORGOTTEN:
            self._points.pop(event.plug, None)
            return
        if event.kind == RUNTIME:
            watts = event.data.get("power_w")
        elif event.kind == ENERGY:
            watts = event.data.get("average_w")
        else:
            return
        if not isinstance(watts, (int, float)):
            return
        times, values = self._points.setdefault(event.plug, (array.array("I"), array.array("f")))
        self._trim(times, values, event.at)
        if len(times) >= self.maxPoints:
            del times[0], values[0]
        times.append(max(0, min(int(event.at), 2**32 - 1)))
        values.append(float(watts))

    def _trim(self, times: array.array, values: array.array, now: float) -> None:
        old = bisect.bisect_left(times, int(now - self.window))
        if old:
            del times[:old], values[:old]

    def series(self, plugId: str, now: float) -> list[tuple[float, float]]:
        """Readings of the last C{window} seconds, oldest first (watts to 0.01 W)."""
        points = self._points.get(plugId)
        if not points:
            return []
        times, values = points
        self._trim(times, values, now)
        return [(float(t), round(w, 2)) for t, w in zip(times, values)]
