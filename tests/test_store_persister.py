"""Plug rows are saved coalesced: once per second for state changes, once a minute for "seen"."""

from __future__ import annotations

from twisted.internet.task import Clock

from vesyncd import hub as h
from vesyncd import messages as m
from vesyncd.store_tap import Persister
from tests.fakes import FakeConnection


class RecordingStore:
    """Keeps the plug rows and deletions the persister queues."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, bool | None]] = []
        self.deletes: list[str] = []

    def putPlug(self, plug: h.PlugState) -> None:
        self.puts.append((plug.id, plug.relay))

    def deletePlug(self, plugId: str) -> None:
        self.deletes.append(plugId)


def test_login_events_make_one_write_and_reports_wait_a_minute() -> None:
    """A login's events become one row write after 1 s; reports only after 60 s; forget at once."""
    clock = Clock()
    hub = h.Hub(clock)
    store = RecordingStore()
    persister = Persister(hub, store)  # type: ignore[arg-type]
    session = hub.login(FakeConnection(), m.Login(id="p", relay=True))
    session.received(m.RuntimeInfo(relay=True, power=(5.0, 5.0)))
    assert store.puts == []
    clock.advance(1.0)
    assert store.puts == [("p", True)]
    for _ in range(10):
        clock.advance(3)
        session.received(m.Report(wattSeconds=60, seconds=3))
    assert store.puts == [("p", True)]
    clock.advance(60)
    assert store.puts == [("p", True), ("p", True)]
    session.received(m.State(relay=False))
    persister.flush()
    assert store.puts[-1] == ("p", False)
    clock.advance(120)
    assert len(store.puts) == 3
    hub.forget("p")
    assert store.deletes == ["p"]
    clock.advance(120)
    assert len(store.puts) == 3
