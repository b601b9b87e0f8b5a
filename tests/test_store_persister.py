"""Plug rows are saved coalesced: once per second for state changes, once a minute for "seen"."""

from __future__ import annotations

from twisted.internet.task import Clock

from vesyncd.core import hub as h
from vesyncd.core.model import PlugState
from vesyncd.core.settings import Settings
from vesyncd.plugs import codec as m
from vesyncd.storage.persister import Persister
from tests.fakes import FakeConnection

#: Hundreds of plugs never seen before log in at once here; the new-id limit is not under test.
MANY_NEW = Settings(max_new_plugs_per_minute=10_000)


class RecordingStore:
    """Keeps the plug rows and deletions the persister queues."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, bool | None]] = []
        self.deletes: list[str] = []

    def putPlug(self, plug: PlugState) -> None:
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


class TurnClock(Clock):
    """Like the reactor: a call scheduled while calls run waits for the next turn (C{advance})."""

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        due = [c for c in self.calls if c.getTime() <= self.seconds()]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def test_a_large_window_is_saved_a_chunk_per_reactor_turn() -> None:
    """Hundreds of plugs due at once are saved L{Persister.CHUNK} per turn, all of them, once."""
    clock = TurnClock()
    hub = h.Hub(clock, MANY_NEW)
    store = RecordingStore()
    persister = Persister(hub, store)  # type: ignore[arg-type]
    count = persister.CHUNK * 2 + 7
    sessions = [hub.login(FakeConnection(), m.Login(id=f"p{i}", relay=True)) for i in range(count)]
    clock.advance(1.0)
    assert len(store.puts) == persister.CHUNK
    clock.advance(0)
    assert len(store.puts) == persister.CHUNK * 2
    clock.advance(0)
    assert sorted(p for p, _ in store.puts) == sorted(f"p{i}" for i in range(count))
    clock.advance(0)
    assert len(store.puts) == count
    # a stop in the middle of a chunked window saves the rest at once, and nothing later
    for s in sessions:
        s.received(m.State(relay=False))
    clock.advance(1.0)
    assert len(store.puts) == count + persister.CHUNK
    persister.flush()
    assert len(store.puts) == count * 2
    assert all(relay is False for _, relay in store.puts[count:])
    clock.advance(10)
    assert len(store.puts) == count * 2


def test_a_window_closing_during_a_chunked_save_keeps_one_chain() -> None:
    """A new window that closes while the last one is still being saved takes over its chain:
    every plug is saved, and after C{flush} no save is left scheduled."""
    clock = TurnClock()
    hub = h.Hub(clock, MANY_NEW)
    store = RecordingStore()
    persister = Persister(hub, store)  # type: ignore[arg-type]
    count = persister.CHUNK * 4
    sessions = [hub.login(FakeConnection(), m.Login(id=f"p{i}", relay=True)) for i in range(count)]
    clock.advance(1.0)                      # the window closes: the first chunk
    sessions[0].received(m.State(relay=False))
    clock.advance(1.0)                      # the chain's next chunk and the new window, same turn
    saves = [c for c in clock.getDelayedCalls() if c.func == persister._flushSome]
    assert len(saves) == 1
    persister.flush()
    assert not [c for c in clock.getDelayedCalls() if c.func == persister._flushSome]
    assert {p for p, _ in store.puts} == {f"p{i}" for i in range(count)}
    assert ("p0", False) in store.puts
