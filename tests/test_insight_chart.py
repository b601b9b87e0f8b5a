"""Live power chart series: the last hour as sampled, the last day as 5-minute means, bounded per plug."""

from __future__ import annotations

import json

from vesyncd.core.model import ENERGY, FORGOTTEN, RELAY, RUNTIME, Event
from vesyncd.insight.baseline import BaselineTracker
from vesyncd.insight.chart import DAY_SLOTS, MAX_HOUR_POINTS, PowerHistory, eventPower, feed

T0 = 1_800_000_000  # a multiple of 300 s, so 5-minute slots start on round offsets


def test_hour_series() -> None:
    """Readings of the last hour come back in order with their times; older ones are gone."""
    history = PowerHistory()
    for i in range(0, 7200, 60):
        history.add("p", T0 + i, i / 60)
    hour = history.chart("p", T0 + 7200)["hour"]
    assert hour[0] == [T0 + 3600, 60.0]
    assert hour[-1] == [T0 + 7140, 119.0]
    assert len(hour) == 60


def test_hour_series_is_bounded_at_fast_rates() -> None:
    """Readings every second keep one per 10 seconds (the newest), so an hour is at most 360 points."""
    history = PowerHistory()
    for i in range(7200):
        history.add("p", T0 + i, float(i % 10))
    hour = history.chart("p", T0 + 7199)["hour"]
    assert len(hour) <= MAX_HOUR_POINTS
    assert hour[-1] == [T0 + 7199, 9.0]
    assert all(b[0] - a[0] == 10 for a, b in zip(hour, hour[1:]))


def test_day_series_is_five_minute_means() -> None:
    """Each day point is the mean of its 5 minutes' readings, at the slot's start; 288 points at most."""
    history = PowerHistory()
    for i in range(0, 2 * 86400, 60):
        history.add("p", T0 + i, 10.0 if i % 300 < 120 else 40.0)  # 2 readings of 10 W, 3 of 40 W per slot
    day = history.chart("p", T0 + 2 * 86400 - 1)["day"]
    assert len(day) == DAY_SLOTS
    assert day[0] == [T0 + 86400, 28.0]
    assert {w for _, w in day} == {28.0}


def test_gaps_stay_gaps() -> None:
    """An hour without readings leaves no points for that hour in the day series."""
    history = PowerHistory()
    for i in list(range(0, 3600, 300)) + list(range(7200, 10800, 300)):
        history.add("p", T0 + i, 5.0)
    day = history.chart("p", T0 + 10800)["day"]
    times = [t for t, _ in day]
    assert len(day) == 24
    assert not any(T0 + 3600 <= t < T0 + 7200 for t in times)


def test_late_reading_counts_in_the_day_only() -> None:
    """A reading older than the last one keeps the hour series in order but joins its 5-minute mean."""
    history = PowerHistory()
    history.add("p", T0 + 200, 10.0)
    history.add("p", T0 + 100, 30.0)
    chart = history.chart("p", T0 + 250)
    assert chart["hour"] == [[T0 + 200, 10.0]]
    assert chart["day"] == [[T0, 20.0]]


def test_bad_readings_and_unknown_plugs() -> None:
    """Negative, NaN or out-of-range readings are ignored; an unknown plug has empty series."""
    history = PowerHistory()
    for at, watts in ((T0, -1.0), (T0, float("nan")), (float("nan"), 1.0), (-5, 1.0), (2**33, 1.0)):
        history.add("p", at, watts)
    assert history.chart("p", T0) == {"hour": [], "day": []}
    assert history.plugs() == []


def test_chart_is_compact_json() -> None:
    """The chart serialises as plain arrays of [t, w] pairs."""
    history = PowerHistory()
    history.add("p", T0 + 1, 12.34)
    text = json.dumps(history.chart("p", T0 + 2), separators=(",", ":"))
    assert text == f'{{"hour":[[{T0 + 1},12.3]],"day":[[{T0},12.3]]}}'


def test_feed_from_hub_events() -> None:
    """Runtime and energy events feed both sinks; other events do not; a forgotten plug is dropped by both."""
    history, baselines = PowerHistory(), BaselineTracker(minSlots=1)
    feed(Event(RUNTIME, "p", T0, {"power_w": 12.0}), history, baselines)
    feed(Event(ENERGY, "p", T0 + 180, {"average_w": 11.0}), history, baselines)
    feed(Event(RELAY, "p", T0 + 190, {"relay": True}), history, baselines)
    feed(Event(RUNTIME, "p", T0 + 200, {"power_w": None}), history, baselines)
    assert history.chart("p", T0 + 200)["hour"] == [[T0, 12.0], [T0 + 180, 11.0]]
    assert baselines.baseline("p", T0 + 200) == 11.0
    feed(Event(FORGOTTEN, "p", T0 + 300), history, baselines)
    assert history.plugs() == [] and list(baselines.plugs()) == []


def test_event_power() -> None:
    """Only numbers count as power readings."""
    assert eventPower(Event(RUNTIME, "p", T0, {"power_w": 3})) == 3.0
    assert eventPower(Event(RUNTIME, "p", T0, {"power_w": True})) is None
    assert eventPower(Event(ENERGY, "p", T0, {"average_w": "7"})) is None


def test_feed_keeps_exactly_what_each_sink_add_keeps() -> None:
    """feed() checks and converts a reading once for both sinks; what they keep is what their own
    add() keeps, odd readings included (negative, NaN and huge times, negative, NaN and huge power)."""
    import random

    rng = random.Random(7)
    viaFeed = (PowerHistory(), BaselineTracker())
    viaAdd = (PowerHistory(), BaselineTracker())
    at = T0
    odd = [float("nan"), -5.0, 2.0**33, float("inf")]
    for i in range(3000):
        at += rng.choice([0.5, 3.0, 9.0, 180.0, 4000.0, -20.0])
        when = rng.choice(odd) if i % 97 == 0 else at
        watts = rng.choice([float("nan"), -1.0, 7000.0, float("inf")]) if i % 89 == 0 else rng.uniform(0, 3000)
        plug = f"p{i % 5}"
        feed(Event(ENERGY, plug, when, {"average_w": watts}), *viaFeed)
        for sink in viaAdd:
            sink.add(plug, when, watts)
    for plug in (f"p{i}" for i in range(5)):
        assert viaFeed[0].chart(plug, at) == viaAdd[0].chart(plug, at)
        assert viaFeed[1]._minima(plug, at) == viaAdd[1]._minima(plug, at)
        assert viaFeed[1].baseline(plug, at) == viaAdd[1].baseline(plug, at)
