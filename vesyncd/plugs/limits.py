"""
The plug server's limits, as plain objects on an injected clock (no sockets, no Autobahn).

A plug connection is hostile until proven otherwise.  These pieces bound what one peer may cost:
L{ConnectionSlots} caps connections that have not logged in yet, L{FrameBudget} is a token bucket
on frames with a tolerance for bad ones, L{Deadline} runs one timer that can be cancelled from any
state, and L{WriteStall} notices a plug that stopped reading and bounds what may queue for it.
L{vesyncd.plugs.server} applies them to Autobahn connections; the tests drive them with
C{task.Clock}.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

#: Bytes of opening-handshake headers accepted before the blank line.
MAX_HANDSHAKE = 8 * 1024
#: Seconds from TCP accept to a finished WebSocket upgrade.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds from the upgrade to the login frame.
LOGIN_TIMEOUT = 10.0
#: Frames per second a plug may send on average, and the burst it may send at once.
FRAME_RATE = 5.0
FRAME_BURST = 40.0
#: Frames dropped by the rate limit before the connection is closed.
MAX_DROPPED = 100
#: Decode errors tolerated on one connection before it is closed.
MAX_BAD_FRAMES = 10
#: How long a plug may refuse to read before it is dropped, once the write buffer is full.
WRITE_STALL_TIMEOUT = 30.0
#: Bytes that may be queued for a plug that stopped reading before it is dropped.
MAX_QUEUED_BYTES = 256 * 1024


def unauthenticatedLimit() -> int:
    """How many connections may wait for their login at once: three quarters of the process's
    file-descriptor limit, so a flood of half-open or slow handshakes cannot use them all up
    (a simultaneous reconnect of every plug must still fit)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 4096
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(256, soft * 3 // 4)


class ConnectionSlots:
    """Counts connections that hold a slot (not logged in yet) and refuses more than C{limit}."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def acquire(self) -> bool:
        """Take a slot if one is free; False means the caller must refuse the connection."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        """Give back a slot taken with L{acquire}."""
        self.used = max(0, self.used - 1)


class FrameBudget:
    """A token bucket of C{rate} frames per second with bursts of C{burst}, plus a count of
    frames it refused and of frames that did not decode, each with a limit that ends the
    connection."""

    def __init__(self, clock: IReactorTime, *, rate: float = FRAME_RATE, burst: float = FRAME_BURST,
                 maxDropped: int = MAX_DROPPED, maxBad: int = MAX_BAD_FRAMES) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.maxDropped = maxDropped
        self.maxBad = maxBad
        self.tokens = burst
        self.at = clock.seconds()
        self.dropped = 0
        self.bad = 0

    def allow(self) -> bool:
        """Take one token for a frame; False (and one more drop) when the bucket is empty."""
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.dropped += 1
        return False

    @property
    def flooded(self) -> bool:
        """Whether so many frames were refused that the connection should be closed."""
        return self.dropped >= self.maxDropped

    def badFrame(self) -> bool:
        """Count one frame that did not decode; True when the connection should be closed."""
        self.bad += 1
        return self.bad >= self.maxBad


class Deadline:
    """At most one pending call on C{clock}: L{start} replaces it, L{cancel} is always safe."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.call: IDelayedCall | None = None

    def start(self, seconds: float, expired: Callable[[], None]) -> None:
        """Call C{expired} after C{seconds} unless cancelled first (replacing any pending call)."""
        self.cancel()
        self.call = self.clock.callLater(seconds, self._fire, expired)

    @property
    def pending(self) -> bool:
        """Whether a call is waiting to run."""
        return self.call is not None and self.call.active()

    def cancel(self) -> None:
        """Forget the pending call, if any."""
        call, self.call = self.call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self, expired: Callable[[], None]) -> None:
        self.call = None
        expired()


@implementer(IPushProducer)
class WriteStall:
    """Registered as a connection's producer: its transport pauses it when the write buffer is
    full (the peer stopped reading).  While paused, L{queued} adds up what is still written, and
    C{timedOut} is called once the peer has not read for C{timeout} seconds."""

    def __init__(self, clock: IReactorTime, timedOut: Callable[[], None], *,
                 timeout: float = WRITE_STALL_TIMEOUT, maxQueued: int = MAX_QUEUED_BYTES) -> None:
        self.timeout = timeout
        self.maxQueued = maxQueued
        self.paused = False
        self.waiting = 0
        self._timedOut = timedOut
        self._deadline = Deadline(clock)

    def pauseProducing(self) -> None:
        """The transport's buffer is full: start the clock on the peer."""
        self.paused = True
        if not self._deadline.pending:
            self.waiting = 0
            self._deadline.start(self.timeout, self._timedOut)

    def resumeProducing(self) -> None:
        """The peer reads again."""
        self.paused = False
        self._deadline.cancel()
        self.waiting = 0

    def stopProducing(self) -> None:
        """The connection is going away: stop the clock."""
        self.paused = False
        self._deadline.cancel()

    def queued(self, size: int) -> bool:
        """Note C{size} bytes written; True when too much waits for a peer that stopped reading."""
        if not self.paused:
            return False
        self.waiting += size
        return self.waiting > self.maxQueued
