"""
Work over many items cut into chunks, one chunk per reactor turn, so whatever else is waiting
(plugs above all) is served in between: the first chunk at once, each next one in a later turn of
the injected clock (C{callLater(0)}).

This is for work whose chunks cost about the same (reading a thousand plugs' figures, dumping a
thousand baselines).  Work whose pieces cost anything, or several tasks sharing the turns, goes
through Twisted's L{twisted.internet.task.Cooperator}, which cuts by time instead.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

T = TypeVar("T")


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

