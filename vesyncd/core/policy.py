"""
The per-plug power-on policy: what a plug's relay should be when it logs in after an outage.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from vesyncd.core.hub import Hub
from vesyncd.core.model import ONLINE, CommandError, Event, UnknownPlug

log = Logger()


class PowerOnPolicy:
    """Applies a plug's power-on policy (on, off, last) when it logs in after an outage."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.unsubscribe: Callable[[], None] = hub.subscribe(self.event)

    def event(self, event: Event) -> None:
        """On C{online}, note the relay state from before the outage and decide once the login is applied."""
        if event.kind != ONLINE:
            return
        try:
            plug = self.hub.get(event.plug)
        except UnknownPlug:
            return
        if plug.power_on is None:
            return
        # The hub emits C{online} before it takes the relay from the login, so this is still the
        # last state known before the outage; look again once the login has been applied.
        self.hub.clock.callLater(0, self.apply, plug.id, plug.power_on, plug.relay)

    def apply(self, plugId: str, policy: str, before: bool | None) -> Deferred | None:
        """Switch the plug if what it reported at login differs from what its policy asks."""
        try:
            plug = self.hub.get(plugId)
        except UnknownPlug:
            return None
        if not self.hub.isOnline(plugId):
            return None
        target = {"on": True, "off": False}.get(policy, before)
        if target is None or plug.relay is target:
            return None
        log.info("plug {plug}: power-on policy {policy}: switching {state} (it came back {now})",
                 plug=plug.name, policy=policy, state="on" if target else "off",
                 now={True: "on", False: "off"}.get(plug.relay, "in an unknown state"))
        d = self.hub.switch(plugId, target)

        def failed(f: Any) -> None:
            if f.check(CommandError):
                log.warn("plug {plug}: power-on policy {policy} failed: {error}", plug=plug.name,
                         policy=policy, error=f.getErrorMessage())
            else:
                log.failure("plug {plug}: power-on policy {policy} failed", f, plug=plug.name, policy=policy)

        d.addCallbacks(lambda _: None, failed)
        return d
