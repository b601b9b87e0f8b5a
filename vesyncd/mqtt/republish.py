"""
Full republishes of the bridge's retained state, coalesced and drained in slices.

Home Assistant asks for everything again each time it says C{online}, and the broker needs it
again after each connect; with thousands of plugs that is tens of thousands of messages.  One
L{Republisher} runs at most one republish at a time: a request while one runs is absorbed
(at most one more run follows, so a change the running one missed is still sent), each reactor
turn publishes one slice of plugs, and while the publisher is congested the next slice waits,
so the queue towards the broker stays bounded and relay commands and plug traffic are served
between slices.  After each slice the republish rests as long as the slice took (L{REST}): the
plugs' C{/ka} p99 during a Home Assistant restart at 10,000 plugs fell from ~11 to ~8 ms, and
the republish took no longer (the broker, not the daemon, sets its pace).
"""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

#: Plugs published per reactor turn during a republish (one plug is ~20 messages, ~0.15-0.3 ms to
#: make: a slice is about as long as the client's C{FEED_PER_TURN}, so plugs are served between).
SLICE = 5
#: After each slice, the republish rests this many times as long as the slice took (wall time), so
#: at most 1 / (1 + REST) of the reactor goes to it and plugs waiting are served at once.
REST = 1.0
#: Seconds between the starts of two spaced requests (Home Assistant's 'online'): ten in a row
#: bring one republish now and one this much later, not ten.
SPACING = 10.0


class Republisher:
    """Runs C{begin()} (which returns the plug ids to publish) and then C{publishOne(id)} for each,
    C{slice} ids per reactor turn, pausing while C{congested()} is true until L{resume}."""

    def __init__(self, clock: IReactorTime, begin: Callable[[], Sequence[str]], publishOne: Callable[[str], None],
                 congested: Callable[[], bool], slice: int = SLICE, rest: float = REST) -> None:
        self.clock = clock
        self.begin = begin
        self.publishOne = publishOne
        self.congested = congested
        self.slice = max(1, slice)
        self.rest = max(0.0, rest)
        self._restFor = 0.0
        #: Republishes started, and requests absorbed by one already pending or running.
        self.runs = 0
        self.absorbed = 0
        #: A run is in progress; one more is queued behind it; the run waits for the publisher.
        self.running = False
        self.again = False
        self.waiting = False
        #: The queued run is about to start (it absorbs requests too).
        self.pending = False
        self._ids: Sequence[str] = ()
        self._next = 0
        self._call: IDelayedCall | None = None
        self._held: IDelayedCall | None = None
        self._lastSpaced: float | None = None

    @property
    def busy(self) -> bool:
        """True while a republish runs, is queued, or a spaced request waits for its time."""
        return self.running or self.pending or self._held is not None

    def request(self, spacing: float = 0.0) -> None:
        """Ask for a full republish: start one now, or have the running one followed by one more.

        With C{spacing}, the request waits until C{spacing} seconds after the previous spaced one
        went ahead; further spaced requests meanwhile are absorbed by the waiting one.
        """
        if spacing > 0:
            if self._held is not None:
                self.absorbed += 1
                return
            now = self.clock.seconds()
            if self._lastSpaced is not None and now < self._lastSpaced + spacing:
                self._held = self.clock.callLater(self._lastSpaced + spacing - now, self._release)
                return
            self._lastSpaced = now
        self._request()

    def _release(self) -> None:
        self._held = None
        self._lastSpaced = self.clock.seconds()
        self._request()

    def _request(self) -> None:
        if self.pending or (self.running and self.again):
            self.absorbed += 1
        elif self.running:
            self.again = True
        else:
            self._start()

    def resume(self) -> None:
        """The publisher drained: carry on with a waiting republish on the next reactor turn."""
        if self.waiting:
            self.waiting = False
            self._schedule()

    def stop(self) -> None:
        """Abandon any republish in progress."""
        for call in (self._call, self._held):
            if call is not None and call.active():
                call.cancel()
        self._call = self._held = None
        self.running = self.again = self.waiting = self.pending = False
        self._ids = ()

    def _start(self) -> None:
        self.running = True
        self.runs += 1
        try:
            self._ids = self.begin()
        except Exception:
            log.failure("mqtt: starting a republish failed")
            self.running = False
            return
        self._next = 0
        # The first slice goes out at once: a small installation is republished in one step.
        self._step()

    def _schedule(self) -> None:
        if self._call is None or not self._call.active():
            self._call = self.clock.callLater(self._restFor, self._step)

    def _step(self) -> None:
        self._call = None
        began = self.clock.seconds()
        if not self.running:
            return
        if self._next < len(self._ids) and self.congested():
            self.waiting = True
            return
        end = min(self._next + self.slice, len(self._ids))
        for index in range(self._next, end):
            # Checked per plug too, not only per slice: a plug may be twenty messages, and the queue
            # should stop within one plug of its high-water mark, whatever the slice.
            if index > self._next and self.congested():
                self._next = index
                self.waiting = True
                return
            try:
                self.publishOne(self._ids[index])
            except Exception:
                log.failure("mqtt: republishing plug {plug} failed", plug=self._ids[index])
        self._next = end
        if end < len(self._ids):
            self._restFor = min(max(self.clock.seconds() - began, 0.0) * self.rest, 0.05)
            self._schedule()
            return
        self.running = False
        self._ids = ()
        if self.again:
            self.again = False
            self.pending = True
            # Not straight away: let the reactor serve what waited during the last run.
            self._call = self.clock.callLater(0, self._restart)

    def _restart(self) -> None:
        self._call = None
        self.pending = False
        self._start()
