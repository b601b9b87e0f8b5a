"""Tests for power rules: hysteresis, the done-below cycle, firing through the engine, and the polling budget."""

from __future__ import annotations

import collections
from datetime import datetime

import pytest
from twisted.internet import task
from twisted.internet.defer import succeed

from vesyncd.automation.model import Rule
from vesyncd.automation.parse import AutomationError, AutomationRefused
from vesyncd.automation.rules import PowerPoller, RuleTracker
from tests.automation_helpers import BERLIN, clockAt, makeEngine

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN)


def feed(tracker: RuleTracker, readings: list[tuple[float, float]]) -> list[float]:
    """Feed (time, watts) readings; the times at which the rule fired."""
    return [at for at, watts in readings if tracker.feed(watts, at)]


def test_above_rule_hysteresis() -> None:
    """An above-100 W rule waits 60 s through readings in its 10 W band, fires once, and re-arms only
    after the power fell below 90 W."""
    tracker = RuleTracker(Rule("r1", "p1", "above", 100.0, 60, "off"))
    fired = feed(tracker, [(0, 105), (30, 95), (60, 120), (70, 95), (80, 130), (90, 89), (100, 101), (160, 101)])
    assert fired == [60, 160]


def test_above_rule_resets_when_the_condition_clears_before_the_duration() -> None:
    """A dip below the band before the duration is up starts the wait again."""
    tracker = RuleTracker(Rule("r1", "p1", "above", 100.0, 60, "off"))
    assert feed(tracker, [(0, 150), (50, 80), (60, 150), (110, 150), (120, 150)]) == [120]


def test_flapping_around_the_threshold_fires_once() -> None:
    """Power wobbling between 99 and 101 W every 5 s for an hour fires an above-100 rule exactly once."""
    tracker = RuleTracker(Rule("r1", "p1", "above", 100.0, 60, "off"))
    readings = [(t, 101.0 if (t // 5) % 2 == 0 else 99.0) for t in range(0, 3600, 5)]
    assert feed(tracker, readings) == [60]


def test_below_rule_mirrors() -> None:
    """A below-20 W rule fires after 30 s under 20 W and re-arms only above 22 W (the 2 W minimum band)."""
    tracker = RuleTracker(Rule("r1", "p1", "below", 20.0, 30, "on"))
    assert feed(tracker, [(0, 10), (20, 21), (30, 15), (40, 21.5), (50, 23), (60, 5), (90, 5)]) == [30, 90]


def test_done_below_fires_once_per_cycle() -> None:
    """done-below 5 W for 3 min: nothing while idle, arms after a minute of real draw, fires once when the
    cycle ends, not again while idle, and again after the next cycle; a short blip is no cycle."""
    tracker = RuleTracker(Rule("r1", "p1", "done_below", 5.0, 180, "notify"), runningAfter=60.0)
    idle = [(t, 1.0) for t in range(0, 600, 5)]
    blip = [(600, 50.0), (610, 50.0), (620, 1.0)] + [(t, 1.0) for t in range(625, 1200, 5)]
    cycle = [(t, 2000.0) for t in range(1200, 2400, 5)] + [(2400, 6.0)] + [(t, 3.0) for t in range(2405, 6000, 5)]
    assert feed(tracker, idle + blip) == []
    assert tracker.running is False
    fired = feed(tracker, cycle)
    assert fired == [2405 + 180]
    second = [(t, 900.0) for t in range(6000, 6300, 5)] + [(t, 0.0) for t in range(6300, 6600, 5)]
    assert feed(tracker, second) == [6300 + 180]


def test_engine_fires_a_rule_with_cause_and_event() -> None:
    """A polled plug over its limit for a minute is switched off with cause rule:<id> and a rule event."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock, start=False)
    heater = hub.add("heater", power=1500.0)
    hub.plugs["heater"].relay = True
    engine.start()
    rid = engine.addRule("heater", above="1000", duration="1m", then="off")["id"]
    assert engine.rulesOf("heater")[0]["state"] in ("idle", "pending")
    for _ in range(70 * 4):
        clock.advance(0.25)
    assert hub.causes("heater") == [(False, f"rule:{rid}")]
    events = [e for e in hub.announced if e.kind == "rule"]
    assert [(e.plug, e.data) for e in events] == [("heater", {"rule": rid, "power_w": 1500.0, "action": "off",
                                                              "ok": True})]
    times = [t for t, p in hub.refreshes]
    assert all(b - a >= 5.0 for a, b in zip(times, times[1:])) and len(times) >= 13
    heater.power_w = 0.0
    engine.disableRule(rid)
    count = len(hub.refreshes)
    clock.advance(60)
    assert len(hub.refreshes) == count  # nothing armed: no more polling


def test_done_rule_announces_running_and_notifies() -> None:
    """A done-below rule announces rule_running true and false and a notify event when the cycle ends."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock, start=False, done_running_after=30.0)
    washer = hub.add("washer", power=500.0)
    engine.start()
    rid = engine.addRule("washer", doneBelow=5, duration="2m")["id"]
    assert engine.rulesOf()[0]["then"] == "notify"
    for _ in range(60 * 4):
        clock.advance(0.25)
    assert engine.rulesOf("washer")[0]["running"] is True
    washer.power_w = 1.0
    for _ in range(200 * 4):
        clock.advance(0.25)
    kinds = [(e.kind, e.data.get("running", e.data.get("action"))) for e in hub.announced]
    assert kinds == [("rule_running", True), ("rule_running", False), ("rule", "notify")]
    assert hub.switches == [] and hub.announced[-1].data["rule"] == rid


def test_rule_input_errors_name_the_field() -> None:
    """Bad rule input is refused naming the option; 16 rules per plug and the total are bounds."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock, max_rules=20)
    cases = [({}, "--above"), ({"above": 5, "below": 3, "duration": "1m"}, "--above"),
             ({"below": "lots", "duration": "1m"}, "--below"), ({"doneBelow": -1, "duration": "1m"}, "--done-below"),
             ({"above": 5}, "--for"), ({"above": 5, "duration": "soon"}, "--for"),
             ({"above": 5, "duration": "1m", "then": "explode"}, "--then")]
    for kwargs, field in cases:
        with pytest.raises(AutomationError) as e:
            engine.addRule("p1", **kwargs)
        assert e.value.field == field, kwargs
    for n in range(16):
        engine.addRule("p1", above=100 + n, duration="1m")
    with pytest.raises(AutomationRefused) as e:
        engine.addRule("p1", above=5, duration="1m")
    assert e.value.field == "plug"
    for n in range(4):
        engine.addRule("p2", above=100 + n, duration="1m")
    with pytest.raises(AutomationRefused) as e:
        engine.addRule("p3", above=5, duration="1m")
    assert e.value.field == "rule"
    rid = engine.rulesOf("p2")[0]["id"]
    assert engine.removeRule(rid)["id"] == rid and len(engine.rulesOf("p2")) == 3
    with pytest.raises(AutomationRefused):
        engine.removeRule(rid)


def test_poll_rate_never_exceeds_the_budget_with_every_plug_armed() -> None:
    """500 armed plugs at one read per 5 s each would want 100 reads/s; with a budget of 20/s no second
    has more than 20, the budget is used, and every plug is still read within 500/20 s."""
    clock = task.Clock()
    reads: list[tuple[float, str]] = []

    def refresh(plug: str) -> object:
        reads.append((clock.seconds(), plug))
        return succeed(None)

    poller = PowerPoller(clock, refresh, lambda plug: True, interval=5.0, maxPerSecond=20.0)
    poller.start()
    for n in range(500):
        poller.arm(f"p{n}")
    for _ in range(120 * 4):
        clock.advance(0.25)
    perSecond = collections.Counter(int(t) for t, _ in reads)
    assert max(perSecond.values()) <= 20
    assert len(reads) >= 20 * 119
    # Not only per calendar second: no window of one second, wherever it starts, holds more than 20.
    times = [t for t, _ in reads]
    assert all(sum(1 for u in times if t - 1.0 < u <= t) <= 20 for t in times[::37])
    last: dict[str, float] = {}
    gaps = []
    for t, plug in reads:
        if plug in last:
            gaps.append(t - last[plug])
        last[plug] = t
    assert len(last) == 500 and max(gaps) <= 500 / 20 + 1 and min(gaps) >= 5.0


def test_poller_skips_offline_and_busy_plugs() -> None:
    """An offline plug is not read, and a plug whose read is unanswered is not read again meanwhile."""
    clock = task.Clock()
    reads: list[str] = []
    from twisted.internet.defer import Deferred

    hanging: Deferred = Deferred()

    def refresh(plug: str) -> Deferred:
        reads.append(plug)
        return hanging if plug == "slow" else succeed(None)

    poller = PowerPoller(clock, refresh, lambda plug: plug != "gone", interval=5.0, maxPerSecond=10.0)
    poller.start()
    for plug in ("slow", "gone", "fine"):
        poller.arm(plug)
    for _ in range(21 * 4):
        clock.advance(0.25)
    assert reads.count("slow") == 1 and reads.count("gone") == 0 and reads.count("fine") == 5
    hanging.callback(None)
    for _ in range(5 * 4):
        clock.advance(0.25)
    assert reads.count("slow") == 2


def test_engine_poll_rate_with_every_plug_armed() -> None:
    """With 200 plugs each holding a rule and a budget of 10 reads/s, the engine never reads more than 10
    plugs in any second, and an offline plug's wait for its rule starts again when it is back."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock, start=False, max_polls_per_second=10.0)
    for n in range(200):
        hub.add(f"p{n}", power=50.0)
    engine.start()
    for n in range(200):
        engine.addRule(f"p{n}", above=100, duration="30s")
    for _ in range(60 * 4):
        clock.advance(0.25)
    perSecond = collections.Counter(int(t) for t, _ in hub.refreshes)
    assert max(perSecond.values()) <= 10 and sum(perSecond.values()) >= 10 * 59
    assert engine.status()["polled_plugs"] == 200


def test_offline_restarts_a_pending_rule() -> None:
    """A plug going offline while its rule waits starts the wait again: no firing for time it was away."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock, start=False)
    plug = hub.add("p1", power=500.0)
    engine.start()
    engine.addRule("p1", above=100, duration="1m")
    for _ in range(40 * 4):
        clock.advance(0.25)
    assert engine.rulesOf("p1")[0]["state"] == "pending"
    hub.setOnline("p1", False)
    assert engine.rulesOf("p1")[0]["state"] == "idle"
    clock.advance(120)
    hub.setOnline("p1", True)
    for _ in range(55 * 4):
        clock.advance(0.25)
    assert hub.switches == []
    for _ in range(10 * 4):
        clock.advance(0.25)
    assert hub.causes() == [(False, f"rule:{engine.rulesOf('p1')[0]['id']}")]
    assert plug.relay is False
