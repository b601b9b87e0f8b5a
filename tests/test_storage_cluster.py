"""The store service in a cluster: a stopping node saves only the rows of the plugs it holds."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed

from vesyncd.core.model import PlugState
from vesyncd.storage.tap import StoreService


class RecordingStore:
    def __init__(self) -> None:
        self.put: list[str] = []

    def start(self) -> None:
        pass

    def putPlug(self, plug: PlugState) -> None:
        self.put.append(plug.id)

    def stop(self) -> Any:
        return succeed(None)


class TwoPlugHub:
    """p-here is connected to this node; p-there is another node's (only known from its events)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def plugs(self) -> list[PlugState]:
        return [PlugState(id="p-here"), PlugState(id="p-there")]

    def session(self, plugId: str) -> Any:
        return object() if plugId == "p-here" else None


def stopWith(cluster: Any) -> list[str]:
    store = RecordingStore()
    service = StoreService(store)  # type: ignore[arg-type]
    service.hub = TwoPlugHub(cluster)  # type: ignore[assignment]
    service.startService()
    service.stopService()
    return store.put


def test_a_node_saves_only_its_own_plugs_at_stop() -> None:
    """Another node's plug is not written over with this node's older copy of it."""
    assert stopWith(cluster=object()) == ["p-here"]


def test_a_single_node_saves_every_plug_at_stop() -> None:
    """Alone, every known plug's last state is saved (last-seen times move without events)."""
    assert stopWith(cluster=None) == ["p-here", "p-there"]
