"""The periodic power refresh reads every online plug once per interval, spread evenly over it."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from vesyncd.core.model import PlugOffline
from vesyncd.core.refresh import SpreadRefresh


class FakeHub:
    """Online plugs and the reads asked of them, each with the clock's time."""

    def __init__(self, clock: Clock, plugs: list[str]) -> None:
        self.clock = clock
        self.online = list(plugs)
        self.asked: list[tuple[float, str]] = []
        self.failing: set[str] = set()

    def onlineIds(self) -> list[str]:
        return list(self.online)

    def isOnline(self, plugId: str) -> bool:
        return plugId in self.online

    def refresh(self, plugId: str) -> Deferred:
        self.asked.append((self.clock.seconds(), plugId))
        return fail(PlugOffline(plugId)) if plugId in self.failing else succeed(None)


def started(plugs: int, interval: float = 60.0) -> tuple[SpreadRefresh, FakeHub, Clock]:
    clock = Clock()
    hub = FakeHub(clock, [f"plug-{i}" for i in range(plugs)])
    refresher = SpreadRefresh(hub, clock, interval)
    refresher.startService()
    return refresher, hub, clock


def run(clock: Clock, until: float, step: float = 0.05) -> None:
    while clock.seconds() < until - 1e-9:
        clock.advance(min(step, until - clock.seconds()))


def test_everyPlugOncePerIntervalInSmallEvenBatches() -> None:
    """10,000 plugs, 60 s: nothing before the first interval, then 17 plugs every 0.102 s, each plug
    once per cycle, the cycle done within the interval and the next one an interval later."""
    refresher, hub, clock = started(10_000)
    run(clock, 59.9)
    assert hub.asked == []
    run(clock, 120.0, step=0.01)
    firstCycle = [plug for at, plug in hub.asked if at < 120.0]
    assert sorted(firstCycle) == sorted(hub.online)  # each exactly once
    times = sorted({at for at, _ in hub.asked if at < 120.0})
    assert times[0] == pytest.approx(60.0, abs=0.011) and times[-1] < 120.0
    perTime = [sum(1 for at, _ in hub.asked if at == t) for t in times]
    assert max(perTime) == 17
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.099  # (the test's clock moves in steps of 0.01 s)
    run(clock, 120.05, step=0.01)
    assert [plug for at, plug in hub.asked if at >= 120.0] == hub.online[:17]  # the next cycle on time


def test_fewPlugsAreSpreadOverTheInterval() -> None:
    """Three plugs on a 60 s interval are read 20 s apart, one at a time."""
    refresher, hub, clock = started(3)
    run(clock, 179.0, step=1.0)
    assert hub.asked == [(60.0, "plug-0"), (80.0, "plug-1"), (100.0, "plug-2"),
                         (120.0, "plug-0"), (140.0, "plug-1"), (160.0, "plug-2")]


def test_plugsComingAndGoingDuringACycle() -> None:
    """A plug gone offline before its turn is skipped; one that logs in mid-cycle joins the next."""
    refresher, hub, clock = started(3)
    run(clock, 61.0, step=1.0)
    hub.online.remove("plug-2")
    hub.online.append("plug-new")
    run(clock, 121.0, step=1.0)
    assert hub.asked == [(60.0, "plug-0"), (80.0, "plug-1"), (120.0, "plug-0")]
    run(clock, 179.0, step=1.0)
    assert hub.asked[-2:] == [(140.0, "plug-1"), (160.0, "plug-new")]


def test_noPlugsThenSome() -> None:
    """With nobody online a cycle asks nothing and the next one looks again an interval later."""
    refresher, hub, clock = started(0)
    run(clock, 100.0, step=1.0)
    assert hub.asked == []
    hub.online.append("plug-a")
    run(clock, 121.0, step=1.0)
    assert hub.asked == [(120.0, "plug-a")]


def test_failedReadsAreLeftToTheNextCycle() -> None:
    """A read that fails is left alone; the next cycle asks again."""
    refresher, hub, clock = started(2)
    hub.failing.add("plug-0")
    run(clock, 150.0, step=1.0)
    assert [plug for _, plug in hub.asked] == ["plug-0", "plug-1", "plug-0", "plug-1"]
    assert refresher.asked == 4


def test_stopCancelsWhatIsScheduled() -> None:
    """Stopped, it asks nothing more and leaves no call behind."""
    refresher, hub, clock = started(1000)
    run(clock, 61.0)
    asked = len(hub.asked)
    assert 0 < asked < 1000
    refresher.stopService()
    assert clock.getDelayedCalls() == []
    run(clock, 200.0, step=1.0)
    assert len(hub.asked) == asked


def test_daemonWiresItWithTheRefreshInterval(tmp_path: Any) -> None:
    """C{--refresh-interval} builds the spread refresh over the hub; 0 builds none."""
    from vesyncd import tap

    def refreshers(interval: str) -> list[SpreadRefresh]:
        o = tap.Options()
        o.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--no-dns", "--no-http",
                        "--state-dir", str(tmp_path / interval), "--refresh-interval", interval])
        top = tap.makeService(o, Clock())
        return [s for s in top if isinstance(s, SpreadRefresh)]

    [refresher] = refreshers("30")
    assert refresher.interval == 30.0 and refresher.hub.onlineIds() == []
    assert refreshers("0") == []
