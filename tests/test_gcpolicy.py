"""
Tests for L{vesyncd.gcpolicy}: when it freezes and sweeps (fake collector, L{task.Clock}), and that
with the real collector no garbage is leaked by freezing.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, Iterator

import pytest
from twisted.internet.task import Clock

from vesyncd.core.model import Event, ONLINE, RELAY
from vesyncd.gcpolicy import GCPolicy, makeServices
from vesyncd.service import DaemonInfo
from twisted.application import service


class FakeCollector:
    """Records what the policy asks of the C{gc} module; passes are simulated with L{runPass}."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.callbacks: list[Any] = []
        self.threshold = (700, 10, 10)
        self.frozen = 0
        self.unreachable = 0

    def get_threshold(self) -> tuple[int, int, int]:
        """The thresholds last set."""
        return self.threshold

    def set_threshold(self, *values: int) -> None:
        """Record new thresholds."""
        self.threshold = tuple(values)

    def collect(self, generation: int = 2) -> int:
        """Record a collection and run the callbacks as CPython does; C{unreachable} objects found."""
        self.calls.append(("collect", generation))
        self.runPass(generation)
        return self.unreachable

    def runPass(self, generation: int, collected: int = 0) -> None:
        """Call every callback for one pass of C{generation}."""
        for cb in list(self.callbacks):
            cb("start", {"generation": generation, "collected": 0, "uncollectable": 0})
        for cb in list(self.callbacks):
            cb("stop", {"generation": generation, "collected": collected, "uncollectable": 0})

    def freeze(self) -> None:
        """Record a freeze."""
        self.calls.append("freeze")
        self.frozen = 100

    def unfreeze(self) -> None:
        """Record an unfreeze."""
        self.calls.append("unfreeze")
        self.frozen = 0

    def get_freeze_count(self) -> int:
        """Objects frozen (a made-up figure); recorded, as CPython walks every frozen object for it."""
        self.calls.append("get_freeze_count")
        return self.frozen


class Ticker:
    """A timer that advances by a fixed step on every reading."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def started(**kw: Any) -> tuple[GCPolicy, Clock, FakeCollector]:
    """A started policy on a fake collector whose start-up sweep has run (no periodic freezes unless
    C{freezeEvery} is given)."""
    kw.setdefault("freezeEvery", None)
    clock, collector = Clock(), FakeCollector()
    policy = GCPolicy(clock, collector, **kw)
    policy.startService()
    clock.advance(0)
    collector.calls.clear()
    return policy, clock, collector


def test_startInstallsThresholdsSweepsOnceAndStopRestores() -> None:
    """Start sets the thresholds and sweeps on the first turn; stop restores thresholds, callbacks, frozen objects."""
    clock, collector = Clock(), FakeCollector()
    collector.threshold = (1, 2, 3)
    policy = GCPolicy(clock, collector, thresholds=(500, 5, 7))
    policy.startService()
    assert collector.threshold == (500, 5, 7)
    assert collector.calls == []
    clock.advance(0)
    assert collector.calls == ["unfreeze", ("collect", 2), "freeze"]
    assert policy.sweeps == 1
    policy.stopService()
    assert collector.threshold == (1, 2, 3)
    assert collector.callbacks == []
    assert collector.calls[-1] == "unfreeze"
    assert clock.getDelayedCalls() == []


def test_freezesOnceLoginsSettle() -> None:
    """Survivors are frozen C{settle} seconds after the last login of a wave, not before."""
    policy, clock, collector = started(settle=30.0)
    policy.login()
    clock.advance(20)
    policy.login()
    clock.advance(29)
    assert collector.calls == []
    clock.advance(1)
    assert collector.calls == [("collect", 1), "freeze"]
    assert policy.freezes == 1
    clock.advance(1000)
    assert collector.calls.count("freeze") == 1


def test_freezesUnderChurnAfterMaxDefer() -> None:
    """Logins that never stop still get their survivors frozen C{maxDefer} seconds after the first."""
    policy, clock, collector = started(settle=30.0, maxDefer=120.0)
    for _ in range(12):
        policy.login()
        clock.advance(10)
    assert collector.calls == [("collect", 1), "freeze"]
    assert clock.seconds() >= 120


def test_passSurvivorsFrozenOnNextTurn() -> None:
    """Every automatic pass, of any generation, is followed on the next reactor turn by one freeze
    (no pass of its own); several passes in one turn make one freeze."""
    policy, clock, collector = started()
    for generation in (0, 1, 2):
        collector.runPass(generation)
        assert collector.calls == []
        clock.advance(0)
        assert collector.calls == ["freeze"]
        collector.calls.clear()
    collector.runPass(0)
    collector.runPass(0)
    collector.runPass(1)
    clock.advance(0)
    assert collector.calls == ["freeze"]
    assert policy.figures()["young_freezes"] == 4


def test_youngGenerationsFrozenEveryHalfSecond() -> None:
    """Every freezeEvery seconds the young generations are frozen, without a pass of their own."""
    policy, clock, collector = started(freezeEvery=0.5)
    clock.advance(0.4)
    assert collector.calls == []
    clock.advance(0.1)
    assert collector.calls == ["freeze"]
    clock.pump([0.5, 0.5])
    assert collector.calls == ["freeze"] * 3
    assert policy.figures()["young_freezes"] == 3
    policy.stopService()
    clock.advance(5)
    assert collector.calls == ["freeze"] * 3 + ["unfreeze"]


def test_memoryGrowthBringsTheSweepForward() -> None:
    """Memory grown by half since the last sweep makes the next one due now (at a quiet moment);
    grown by twice that it runs even while plugs log in."""
    blocks = [1000]
    policy, clock, collector = started(blocks=lambda: blocks[0], sweepEvery=3600.0)
    policy.freeze()  # a login wave settled: the mark growth is measured from
    clock.advance(60)
    assert policy.sweeps == 1 and policy.growthSweeps == 0
    blocks[0] = 1600
    clock.advance(59)
    policy.login()
    clock.advance(1)
    assert policy.growthSweeps == 1 and policy.sweeps == 1  # due, but plugs are logging in
    clock.advance(30)
    assert policy.sweeps == 2  # quiet again: swept
    blocks[0] = 5000
    clock.advance(59)
    policy.login()
    clock.advance(1)
    assert policy.growthSweeps == 2 and policy.sweeps == 3  # grown past twice the step: no waiting for quiet
    clock.advance(60)
    assert policy.growthSweeps == 2 and policy.sweeps == 3  # measured from the last sweep now


def test_plugsConnectingToAFreshDaemonAreNotGrowth() -> None:
    """The start-up sweep sets no mark: memory that plugs add by connecting before their wave is
    frozen brings no sweep forward, however large (a full pass over them would hold the reactor while
    they log in); from the wave's freeze on, growth counts."""
    blocks = [1000]
    policy, clock, collector = started(blocks=lambda: blocks[0], sweepEvery=3600.0, settle=30.0)
    for at in (0, 25, 50):  # ten thousand connections, logging in for 50 s
        clock.advance(at - clock.seconds())
        policy.login()
        blocks[0] += 3000
    clock.advance(10)  # the growth check at 60 s
    assert policy.sweeps == 1 and policy.growthSweeps == 0 and policy.freezes == 0
    assert ("collect", 2) not in collector.calls
    clock.advance(20)  # the wave settles 30 s after its last login: frozen, and the mark is set
    assert policy.freezes == 1
    blocks[0] = 16_000
    clock.advance(40)  # the growth check at 120 s
    assert policy.growthSweeps == 1 and policy.sweeps == 2


def test_ownPassesScheduleNoFreeze() -> None:
    """The passes the policy runs itself (a wave's freeze, a sweep) freeze at once and schedule nothing."""
    policy, clock, collector = started()
    policy.freeze()
    policy.sweep()
    clock.advance(0)
    assert collector.calls == [("collect", 1), "freeze", "unfreeze", ("collect", 2), "freeze"]
    assert policy.figures()["young_freezes"] == 0


def test_sweepWaitsForQuietButNotForever() -> None:
    """The periodic sweep waits while plugs log in, and runs anyway once a whole period overdue."""
    policy, clock, collector = started(settle=30.0, sweepEvery=600.0, maxDefer=1e9)
    t = 0.0
    while t < 1150:
        policy.login()
        clock.advance(5)
        t += 5
    assert "unfreeze" not in collector.calls
    while t < 1250:
        policy.login()
        clock.advance(5)
        t += 5
    assert collector.calls.count("unfreeze") == 1
    assert policy.sweeps == 2


def test_sweepRunsWhenQuiet() -> None:
    """With no logins, the sweep comes every C{sweepEvery} seconds."""
    policy, clock, collector = started(sweepEvery=600.0)
    clock.advance(600)
    assert collector.calls == ["unfreeze", ("collect", 2), "freeze"]
    clock.advance(600)
    assert policy.sweeps == 3


def test_figuresTimePausesPerGeneration() -> None:
    """Pauses are timed from each pass's start to its stop, per generation."""
    clock, collector = Clock(), FakeCollector()
    policy = GCPolicy(clock, collector, timer=Ticker(0.002))
    policy.startService()
    collector.runPass(0, collected=3)
    collector.runPass(2, collected=4)
    doc = policy.figures()
    assert doc["passes"] == [1, 0, 1]
    assert doc["longest_ms"] == [2.0, 0.0, 2.0]
    assert doc["collected"] == 7
    assert doc["thresholds"] == [700, 10, 10]
    policy.stopService()


def test_figuresAndSweepsNeverCountFrozenObjects() -> None:
    """C{info}'s figures and the sweep's log line never ask for the frozen count (a walk over every
    frozen object with the reactor held); the figures tell what the last sweep found instead."""
    policy, clock, collector = started(sweepEvery=3600.0)
    assert policy.figures()["last_sweep_collected"] == 0
    collector.unreachable = 42
    clock.advance(3600)
    clock.advance(policy.settle)
    assert policy.sweeps == 2
    doc = policy.figures()
    assert doc["last_sweep_collected"] == 42 and "frozen" not in doc
    assert "get_freeze_count" not in collector.calls


def test_makeServicesPublishesAndFollowsLogins() -> None:
    """The wiring publishes C{info.facts["gc"]} and counts an ONLINE event as a login."""
    subscribers: list[Any] = []

    class Hub:
        def subscribe(self, cb: Any, remote: bool = True) -> None:
            assert remote is False, "logins on other nodes of a cluster are not this process's objects"
            subscribers.append(cb)

    clock = Clock()
    info = DaemonInfo()
    parent = service.MultiService()
    policy = makeServices(parent, Hub(), clock, info)
    policy.collector = FakeCollector()
    policy.startService()
    try:
        assert info.facts["gc"]()["freezes"] == 0
        subscribers[0](Event(RELAY, "p", 0.0, {}))
        assert policy.quiet()
        subscribers[0](Event(ONLINE, "p", 0.0, {}))
        assert not policy.quiet()
    finally:
        policy.stopService()


# -- the real collector: nothing leaks ------------------------------------------------------------


class Node:
    """A container that can point at another (to build cycles) and be weakly referenced."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[weakref.ref, Node]:
    """A two-node cycle; a weak reference to one node and a strong one to the other."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a), b


@pytest.fixture
def realPolicy() -> Iterator[tuple[GCPolicy, Clock]]:
    """A policy on the real C{gc} module, stopped (and so everything unfrozen) afterwards."""
    clock = Clock()
    policy = GCPolicy(clock, gc, settle=30.0, sweepEvery=600.0)
    policy.startService()
    clock.advance(0)
    try:
        yield policy, clock
    finally:
        policy.stopService()
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_frozenObjectsFreedByRefcount(realPolicy: tuple[GCPolicy, Clock]) -> None:
    """An object frozen while alive is freed the moment its last reference goes, without any pass."""
    policy, clock = realPolicy
    node = Node()
    ref = weakref.ref(node)
    policy.login()
    clock.advance(30)
    assert policy.freezes == 1
    assert gc.get_freeze_count() > 0
    del node
    assert ref() is None


def test_cyclicGarbageAfterFreezeCollected(realPolicy: tuple[GCPolicy, Clock]) -> None:
    """A cycle that becomes garbage after a freeze is collected by an ordinary pass."""
    policy, clock = realPolicy
    policy.freeze()
    ref, b = cycle()
    del b
    assert ref() is not None
    gc.collect()
    assert ref() is None


def test_cyclicGarbageFrozenBeforeIsSwept(realPolicy: tuple[GCPolicy, Clock]) -> None:
    """A cycle frozen while alive that dies later survives ordinary passes and is collected by the sweep."""
    policy, clock = realPolicy
    ref, b = cycle()
    policy.freeze()
    del b
    gc.collect()
    assert ref() is not None  # frozen: no automatic or explicit pass walks it
    clock.advance(600)
    assert policy.sweeps == 2
    assert ref() is None


def test_survivorsOfAnAutomaticPassAreFrozenAndStillFreed(realPolicy: tuple[GCPolicy, Clock]) -> None:
    """What survives an automatic pass is frozen on the next turn: later passes skip it, reference
    counting still frees it, and a cycle among it that dies later is collected by the sweep."""
    policy, clock = realPolicy
    alone = Node()
    freed = weakref.ref(alone)
    ref, b = cycle()
    gc.collect(0)  # a young pass not run by the policy: to it, as any automatic one
    frozenBefore = gc.get_freeze_count()
    clock.advance(0)
    assert policy.youngFreezes >= 1 and gc.get_freeze_count() > frozenBefore
    del alone
    assert freed() is None
    del b
    gc.collect()
    assert ref() is not None  # frozen while alive: no pass walks it
    clock.advance(600)
    assert ref() is None


def test_garbageFrozenWithTheWaveIsSwept(realPolicy: tuple[GCPolicy, Clock]) -> None:
    """Cyclic garbage that was already garbage when a wave was frozen is gone after the next sweep."""
    policy, clock = realPolicy
    gc.disable()  # keep an automatic full pass from collecting it before the freeze
    try:
        ref, b = cycle()
        gc.collect(1)  # alive: promoted to the oldest generation, which the freeze does not collect
        del b
        policy.login()
        clock.advance(30)
    finally:
        gc.enable()
    assert policy.freezes == 1
    gc.collect()
    assert ref() is not None  # frozen with the wave
    clock.advance(600)
    assert ref() is None


def test_daemonPublishesGCFigures(tmp_path: Any) -> None:
    """The daemon built by twistd wires the policy: its figures are among the daemon's facts."""
    from vesyncd import tap

    o = tap.Options()
    o.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--no-dns", "--no-http", "--state-dir", str(tmp_path)])
    top = tap.makeService(o, Clock())
    doc = top.context.info.facts["gc"]()
    assert set(doc) >= {"passes", "longest_ms", "freezes", "sweeps", "last_sweep_collected"}


def test_passInAnotherThreadReachesTheReactorThreadSafely() -> None:
    """A pass run by another thread (the SQLite writer) schedules the freeze through callFromThread."""
    import threading

    class ThreadedClock(Clock):
        def __init__(self) -> None:
            super().__init__()
            self.fromThreads: list[Any] = []

        def callFromThread(self, f: Any, *a: Any) -> None:
            self.fromThreads.append((f, a))

    clock, collector = ThreadedClock(), FakeCollector()
    policy = GCPolicy(clock, collector)
    policy.startService()
    clock.advance(0)
    collector.calls.clear()
    worker = threading.Thread(target=collector.runPass, args=(2,))
    worker.start()
    worker.join(10)
    assert all(c.getTime() > 0 for c in clock.getDelayedCalls())  # only the sweep: nothing scheduled from the thread
    assert len(clock.fromThreads) == 1
    f, a = clock.fromThreads[0]
    f(*a)
    clock.advance(0)
    assert collector.calls == ["freeze"]
    policy.stopService()
