"""vesyncd.core.subscribers: who gets which event, in order, whatever a subscriber does."""

from __future__ import annotations

from typing import Any

from vesyncd.core.model import Event
from vesyncd.core.subscribers import Subscribers

HERE = Event("relay", "p1", 1.0, {"relay": True})
THERE = Event("relay", "p2", 2.0, {"relay": False}, origin="node-b")


def test_local_events_reach_all_and_remote_ones_only_the_watchers() -> None:
    """Subscribers with remote=False get this node's events only; the others get both, in order."""
    subs = Subscribers()
    watcher: list[Any] = []
    actor: list[Any] = []
    subs.add(watcher.append)
    subs.add(actor.append, remote=False)
    subs.deliver(HERE)
    subs.deliverRemote(THERE)
    assert watcher == [HERE, THERE] and actor == [HERE] and len(subs) == 2


def test_a_failing_subscriber_is_logged_and_the_rest_still_get_the_event() -> None:
    """An exception in one callback does not stop delivery to the ones after it."""
    subs = Subscribers()
    got: list[Any] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    subs.add(broken)
    subs.add(got.append)
    subs.deliver(HERE)
    subs.deliverRemote(THERE)
    assert got == [HERE, THERE]


def test_unsubscribing_stops_delivery_once_and_keeps_other_subscriptions() -> None:
    """Unsubscribing removes one subscription; the same callback subscribed twice keeps the other,
    still local-only; calling the stopper again does nothing."""
    subs = Subscribers()
    got: list[Any] = []
    first = subs.add(got.append, remote=False)
    subs.add(got.append, remote=False)
    first()
    first()
    subs.deliver(HERE)
    subs.deliverRemote(THERE)
    assert got == [HERE] and len(subs) == 1


def test_a_subscriber_added_during_delivery_waits_for_the_next_event() -> None:
    """Delivery walks the subscribers as they were when the event came."""
    subs = Subscribers()
    late: list[Any] = []
    subs.add(lambda event: subs.add(late.append))
    subs.deliver(HERE)
    assert late == []
    subs.deliver(HERE)
    assert late == [HERE]
