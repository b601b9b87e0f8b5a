"""
Carrying out the engine's switches: each carries its cause, a plug that is offline keeps the newest
switch asked of it until it comes back (or until that switch's own deadline), and a switch that fails
on an online plug (timeout, busy queue) is tried again a few times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.automation.interfaces import IAutomationHub
from vesyncd.core.model import PlugOffline, UnknownPlug

log = Logger()

#: Tries of one switch on an online plug before it is given up.
TRIES = 3


@dataclass
class Intent:
    """A switch to make: C{on} with C{cause}, asked for at C{asked}, worth making until C{until} (None: ever).

    C{settled(done)} is called once: True when the plug confirmed it, False when it was given up,
    replaced by a newer switch, or ran out of time."""

    plug: str
    on: bool
    cause: str
    asked: float
    until: float | None = None
    settled: Callable[[bool], None] | None = None
    tries: int = 0

    def settle(self, done: bool) -> None:
        """Tell the owner once what became of this switch."""
        settled, self.settled = self.settled, None
        if settled is not None:
            settled(done)


class Switcher:
    """Makes the engine's switches through the hub, holding one per offline plug until it is back."""

    def __init__(self, hub: IAutomationHub, clock: IReactorTime, retryDelay: float = 30.0) -> None:
        self.hub = hub
        self.clock = clock
        self.retryDelay = retryDelay
        self.waiting: dict[str, Intent] = {}
        self._retries: dict[str, tuple[Intent, IDelayedCall]] = {}
        self.switched = 0
        self.failed = 0
        #: In a cluster: the other node holding a plug's connection, or None (see L{apply}).
        self.elsewhere: Callable[[str], str | None] = lambda plug: None

    def apply(self, intent: Intent) -> None:
        """Make the switch now if the plug is online, else keep it for when it comes back.

        In a cluster, a switch for a plug connected to another node is that node's to make (its engine
        runs the same items): it is neither made nor kept here, and not settled.
        """
        if self.elsewhere(intent.plug) is not None:
            return
        kept = self.waiting.get(intent.plug)
        if kept is not None and kept is not intent and kept.asked > intent.asked:
            intent.settle(False)  # a switch asked for later already waits: it wins
            return
        self._supersede(intent)
        if not self.hub.isOnline(intent.plug):
            self.waiting[intent.plug] = intent
            return
        intent.tries += 1
        self.hub.switch(intent.plug, intent.on, intent.cause).addCallbacks(
            lambda _: self._done(intent), lambda f: self._failed(intent, f))

    def _supersede(self, intent: Intent) -> None:
        """A newer switch for a plug replaces one that waits (for the plug or for a retry)."""
        old = self.waiting.get(intent.plug)
        if old is not None and old is not intent:
            del self.waiting[intent.plug]
            old.settle(False)
        retry = self._retries.get(intent.plug)
        if retry is not None and retry[0] is not intent:
            del self._retries[intent.plug]
            if retry[1].active():
                retry[1].cancel()
            retry[0].settle(False)

    def _done(self, intent: Intent) -> None:
        """The plug confirmed the switch."""
        self.switched += 1
        intent.settle(True)

    def _failed(self, intent: Intent, failure: Failure) -> None:
        """Keep the switch for later if the plug went away; retry other failures a few times."""
        if failure.check(UnknownPlug):
            self.failed += 1
            intent.settle(False)
            return
        if failure.check(PlugOffline) or not self.hub.isOnline(intent.plug):
            if intent.plug in self.waiting:
                intent.settle(False)  # a newer switch already waits for this plug
            else:
                self.waiting[intent.plug] = intent
            return
        if intent.tries < TRIES and intent.plug not in self._retries:
            call = self.clock.callLater(self.retryDelay, self._retry, intent)
            self._retries[intent.plug] = (intent, call)
            return
        self.failed += 1
        log.warn("automation: could not switch {plug} {state} ({cause}): {error}", plug=intent.plug,
                 state="on" if intent.on else "off", cause=intent.cause, error=failure.getErrorMessage())
        intent.settle(False)

    def _retry(self, intent: Intent) -> None:
        """Try a failed switch again unless a newer one replaced it."""
        if self._retries.get(intent.plug, (None,))[0] is intent:
            del self._retries[intent.plug]
            self.apply(intent)

    def online(self, plug: str) -> None:
        """The plug is back: make the switch it kept, unless that switch's time is over."""
        intent = self.waiting.pop(plug, None)
        if intent is None:
            return
        if intent.until is not None and self.clock.seconds() > intent.until:
            log.info("automation: {plug} came back too late for {cause}", plug=plug, cause=intent.cause)
            intent.settle(False)
            return
        self.apply(intent)

    def pendingFor(self, plug: str) -> Intent | None:
        """The switch a plug keeps for when it comes back, if any."""
        return self.waiting.get(plug)

    def drop(self, plug: str, cause: str | None = None) -> None:
        """Forget the switches kept for C{plug} (only those with C{cause}, if given)."""
        intent = self.waiting.get(plug)
        if intent is not None and cause in (None, intent.cause):
            del self.waiting[plug]
            intent.settle(False)
        retry = self._retries.get(plug)
        if retry is not None and cause in (None, retry[0].cause):
            del self._retries[plug]
            if retry[1].active():
                retry[1].cancel()
            retry[0].settle(False)

    def release(self, plug: str) -> None:
        """Let go of what waits for C{plug} without settling it: the plug came online on another node,
        whose engine makes its switches."""
        self.waiting.pop(plug, None)
        retry = self._retries.pop(plug, None)
        if retry is not None and retry[1].active():
            retry[1].cancel()

    def stop(self) -> None:
        """Cancel the retries (what waits for a plug is rebuilt from the store at the next start)."""
        for _, call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
