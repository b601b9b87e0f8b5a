"""Test doubles shared by the core tests: a plug connection that records what the core sends."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks

from zope.interface import implementer

from vesyncd.core.interfaces import IPlugConnection


@implementer(IPlugConnection)
class FakeConnection:
    """Records every message the core sends and whether it was told to disconnect."""

    def __init__(self, peer: str = "192.0.2.10:40000") -> None:
        self.peer = peer
        self.sent: list[dict[str, Any]] = []
        self.disconnected: str | None = None

    def send(self, payload: bytes) -> None:
        """Keep the decoded JSON of each message."""
        self.sent.append(json.loads(payload))

    def disconnect(self, reason: str) -> None:
        """Remember the first reason given."""
        if self.disconnected is None:
            self.disconnected = reason

    def uris(self) -> list[str]:
        """The URIs sent so far, in order."""
        return [m.get("uri") for m in self.sent]


def waitFor(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Deferred:
    """The tests' one polling helper: fire with C{predicate()}'s first truthy value, polled on the real
    reactor every 20 ms (it waits for I/O, never sleeps); fail with AssertionError after C{timeout} s."""
    deadline = reactor.seconds() + timeout

    @inlineCallbacks
    def poll() -> Any:
        while True:
            value = predicate()
            if value:
                return value
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            yield task.deferLater(reactor, 0.02, lambda: None)

    return poll()


def result(d: Deferred) -> Any:
    """The result of a Deferred that has already fired (a failure is raised)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


class Turns:
    """A reactor's C{callLater(0, ...)} run by hand, one turn of the calls made so far at a time."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []

    def callLater(self, delay: float, f: Any, *args: Any) -> None:
        """Keep the call for the next turn."""
        self.waiting.append((f, args))

    def turn(self) -> None:
        """Run the calls made before this turn."""
        calls, self.waiting = self.waiting, []
        for f, args in calls:
            f(*args)
