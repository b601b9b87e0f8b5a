"""The web page's power history: bounded per plug, windowed to the last hour, dropped on forget."""

from __future__ import annotations

from twisted.internet.task import Clock

from vesyncd.core import hub as h
from vesyncd.plugs import codec as m
from vesyncd.web.events import PowerHistory
from tests.fakes import FakeConnection


def test_bounded_windowed_and_forgotten() -> None:
    """At most maxPoints readings are kept, older than the window are dropped, forget clears them."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = h.Hub(clock)
    history = PowerHistory(hub, window=3600, maxPoints=10)
    session = hub.login(FakeConnection(), m.Login(id="p"))
    for i in range(25):
        clock.advance(10)
        session.received(m.RuntimeInfo(relay=True, power=(float(i), float(i))))
    series = history.series("p", clock.seconds())
    assert len(series) == 10
    assert [w for _, w in series] == [float(i) for i in range(15, 25)]
    assert series[-1][0] == float(int(clock.seconds()))
    assert history.series("p", clock.seconds() + 3600 - 45) == series[-5:]
    hub.forget("p")
    assert history.series("p", clock.seconds()) == []
