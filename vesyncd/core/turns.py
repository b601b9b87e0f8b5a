"""
Work over many items cut into chunks, one chunk per reactor turn, so whatever else is waiting
(plugs above all) is served in between: the first chunk at once, each next one in a later turn of
the injected clock (C{callLater(0)}).

This is for work whose chunks cost about the same (reading a thousand plugs' figures, dumping a
thousand baselines).  Work whose pieces cost anything, or several tasks sharing the turns, goes
through Twisted's L{twisted.internet.task.Cooperator}, which cuts by time instead.
"""

from __future__ import annotations

import heapq
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator

T = TypeVar("T")

#: Seconds of cooperative work per reactor turn, at most about (Twisted's Cooperator defaults to 10
#: ms, which made every long answer a pause of 10 ms or more for the plugs).
SLICE_SECONDS = 0.004


def cooperator(clock: IReactorTime, seconds: float = SLICE_SECONDS) -> Cooperator:
    """A L{Cooperator} that runs its tasks' steps for about C{seconds} of wall time per turn of
    C{clock} (C{callLater(0)}), then lets the reactor serve what waits."""
    def slice() -> Callable[[], bool]:
        end = time.monotonic() + seconds
        return lambda: time.monotonic() >= end

    return Cooperator(terminationPredicateFactory=slice, scheduler=lambda work: clock.callLater(0, work))


def chunksInTurns(clock: IReactorTime, items: Sequence[T], perTurn: int,
                  step: Callable[[Sequence[T]], None]) -> Deferred[None]:
    """Call C{step(chunk)} for C{items} C{perTurn} at a time, in order: the first chunk now, each
    next in a later reactor turn; fire when the last is done (at once for at most C{perTurn}
    items), or fail with what C{step} raised, the chunks after it left alone."""
    if perTurn < 1:
        raise ValueError("perTurn must be at least 1")
    done: Deferred[None] = Deferred()

    def run(start: int) -> None:
        try:
            step(items[start:start + perTurn])
        except BaseException:
            done.errback()
            return
        if start + perTurn < len(items):
            clock.callLater(0, run, start + perTurn)
        else:
            done.callback(None)

    run(0)
    return done


def orderInSteps(keys: Sequence[Any], into: list[int], chunk: int = 1_000) -> Iterator[None]:
    """Put in C{into} the indices of C{keys} in the order a stable C{sorted} by key gives, a step at
    a time for a L{twisted.internet.task.Cooperator} to drive: each step sorts one chunk of
    C{chunk} keys, or takes the next C{chunk} indices of their merge.  For 10,000 keys no step holds
    the reactor for more than about a millisecond; one C{sorted} call held it ~5-9 ms."""
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    runs: list[list[tuple[Any, int]]] = []
    for start in range(0, len(keys), chunk):
        runs.append(sorted((keys[i], i) for i in range(start, min(start + chunk, len(keys)))))
        yield None
    merged = heapq.merge(*runs)  # (key, index): no two equal, so the merge keeps the stable order
    while True:
        taken = [index for _, index in (pair for _, pair in zip(range(chunk), merged))]
        into.extend(taken)
        if len(taken) < chunk:
            return
        yield None
