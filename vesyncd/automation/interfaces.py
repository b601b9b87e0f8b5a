"""
The two seams of the automation engine: the plugs it switches and watches (L{IAutomationHub}) and
where its items are kept (L{IAutomationStore}).  The engine depends on nothing else outside its package
but the core's error values; the core's L{Hub} provides L{IAutomationHub} as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from zope.interface import Attribute, Interface, classImplements

from vesyncd.core.hub import Hub

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class IAutomationEvent(Interface):
    """One hub event as the engine reads it (the core's C{Event} value has these attributes)."""

    kind = Attribute("The event kind: the engine reads 'online', 'offline', 'runtime', 'relay', 'forgotten'.")
    plug = Attribute("The plug id the event is about.")
    at = Attribute("POSIX time of the event.")
    data = Attribute("A dict; for 'runtime' it holds 'power_w' (watts or None).")


class IAutomationHub(Interface):
    """What the automation engine needs from the plug registry."""

    def switch(plugId: str, on: bool, cause: str) -> "Deferred":
        """Switch a plug on or off, recording C{cause} (e.g. C{"timer"}, C{"schedule:s1a2b3c"}) as the
        relay change's cause; fires with the confirmed plug state or fails (C{PlugOffline},
        C{CommandTimeout}, C{QueueFull}, C{UnknownPlug})."""

    def refresh(plugId: str) -> "Deferred":
        """Ask a plug for fresh readings; fires with a state object having C{.power_w} (and emits a
        'runtime' event), or fails like L{switch}."""

    def isOnline(plugId: str) -> bool:
        """True while the plug has a live connection."""

    def subscribe(callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call C{callback} with every event (see L{IAutomationEvent}); returns a function that stops it."""

    def announce(kind: str, plugId: str, **data: Any) -> None:
        """Emit an event of C{kind} about C{plugId} to every subscriber (the engine's C{"rule"} and
        C{"rule_running"} events), stamped with the hub's clock."""


class IAutomationStore(Interface):
    """Where automation items live: JSON documents keyed by (kind, id, plug)."""

    def load() -> list[tuple[str, str, str, dict[str, Any]]]:
        """Every stored item as C{(kind, id, plug, document)} (blocking: called once at start-up,
        before the reactor runs).  Unreadable rows are logged and left out."""

    def save(kind: str, id: str, plug: str, document: dict[str, Any]) -> None:
        """Create or replace one item (may be written later; L{flush} waits for it)."""

    def delete(kind: str, id: str, plug: str) -> None:
        """Remove one item (nothing if it is not there)."""

    def deletePlug(plug: str) -> None:
        """Remove every item of one plug."""

    def flush() -> "Deferred":
        """Fire once every save and delete asked for so far is written (or has failed and been logged)."""


# The hub has exactly these methods (switch with a cause, announce); declared here so the core
# does not import the automation package.
classImplements(Hub, IAutomationHub)
