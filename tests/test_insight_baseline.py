"""The always-on baseline on synthetic power traces, its bounds, and its persistence."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vesyncd.insight.baseline import (MIN_SLOTS, SLOT_SECONDS, SLOTS, BaselineTracker, baselineJSON, deciwatts,
                                      nearestRank)
from vesyncd.insight.ring import SlotRing
from vesyncd.insight.tariff import Tariff, TariffSchedule

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 11, 2, tzinfo=BERLIN).timestamp()  # a Monday midnight
WEEK = 7 * 86400


def trace(tracker: BaselineTracker, plug: str, power, seconds: int = WEEK, every: int = 60,
          start: float = START) -> float:
    """Feed C{power(t)} every C{every} seconds for C{seconds}; return the time after the last sample."""
    for offset in range(0, seconds, every):
        tracker.add(plug, start + offset, power(offset))
    return start + seconds


def test_fridge_cycling() -> None:
    """A fridge at 80 W for 15 minutes then 1.2 W for 30: its baseline is the off draw."""
    tracker = BaselineTracker()
    noise = random.Random(1)
    now = trace(tracker, "fridge", lambda t: 80 + noise.uniform(-3, 3) if t % 2700 < 900 else 1.2)
    assert tracker.baseline("fridge", now) == 1.2


def test_fridge_with_short_off_phases() -> None:
    """Even when the compressor is off for only 10 minutes an hour, the baseline stays at the off draw (0-2 W)."""
    tracker = BaselineTracker()
    now = trace(tracker, "fridge", lambda t: 0.0 if t % 3600 < 600 else 80.0, every=180)
    assert 0.0 <= tracker.baseline("fridge", now) <= 2.0


def test_tv_on_standby_with_evening_use() -> None:
    """A TV on standby at 0.5 W, watched 18:00-23:00 at 90 W and reported every 3 minutes: 0.5 W."""
    tracker = BaselineTracker()
    now = trace(tracker, "tv", lambda t: 90.0 if 18 * 3600 <= t % 86400 < 23 * 3600 else 0.5, every=180)
    assert tracker.baseline("tv", now) == 0.5


def test_router_always_on() -> None:
    """A router drawing 8 W (give or take 0.1 W) all the time has a baseline of about 8 W."""
    tracker = BaselineTracker()
    noise = random.Random(2)
    now = trace(tracker, "router", lambda t: 8.0 + noise.uniform(-0.1, 0.1))
    assert tracker.baseline("router", now) == pytest.approx(8.0, abs=0.1)


def test_needs_a_day_of_data() -> None:
    """Before 24 hours' worth of slots hold samples there is no baseline; from then on there is."""
    tracker = BaselineTracker()
    now = trace(tracker, "p", lambda t: 3.0, seconds=MIN_SLOTS * SLOT_SECONDS - SLOT_SECONDS)
    assert tracker.baseline("p", now) is None
    assert tracker.hoursOfData("p", now) == 23.75
    now = trace(tracker, "p", lambda t: 3.0, seconds=SLOT_SECONDS, start=now)
    assert tracker.baseline("p", now) == 3.0
    assert tracker.baseline("unknown", now) is None


def test_old_samples_age_out() -> None:
    """A week at 50 W then a week at 5 W gives 5 W: only the last 7 days count."""
    tracker = BaselineTracker()
    now = trace(tracker, "p", lambda t: 5.0 if t >= WEEK else 50.0, seconds=2 * WEEK, every=300)
    assert tracker.baseline("p", now) == 5.0
    # Asked about a time a week after the last sample, nothing is left.
    assert tracker.baseline("p", now + WEEK) is None


def test_silence_leaves_empty_slots_not_stale_ones() -> None:
    """After three silent days, the slots of those days hold nothing, not the values of a week before."""
    tracker = BaselineTracker()
    now = trace(tracker, "p", lambda t: 1.0, seconds=WEEK)
    later = trace(tracker, "p", lambda t: 20.0, seconds=86400, start=now + 3 * 86400)
    assert tracker.hoursOfData("p", later) == pytest.approx(24 + 3 * 24, abs=0.5)
    assert tracker.baseline("p", later) == 1.0


def test_memory_is_bounded() -> None:
    """However many samples arrive, a plug keeps one 16-bit minimum per 15-minute slot of the week."""
    tracker = BaselineTracker()
    trace(tracker, "p", lambda t: t % 97, seconds=4 * WEEK, every=30)
    data = tracker.dump("p")
    assert len(data) == 20 + SLOTS * 2


def test_late_and_bad_samples() -> None:
    """Late samples land in their own slot while it is kept; negative, NaN and too-old samples are ignored."""
    tracker = BaselineTracker()
    now = trace(tracker, "p", lambda t: 10.0, seconds=2 * 86400)
    tracker.add("p", now - 3600, 0.3)
    tracker.add("p", now - 9 * 86400, 0.1)
    for bad in (-1.0, float("nan"), float("inf")):
        tracker.add("p", now, bad)
    ordered = sorted([100] * (2 * 96 - 1) + [3])
    assert tracker.baseline("p", now) == nearestRank(ordered, 10) / 10.0 == 10.0
    tracker = BaselineTracker(percentile=0)
    trace(tracker, "p", lambda t: 10.0, seconds=2 * 86400)
    tracker.add("p", START + 2 * 86400 - 3600, 0.3)
    assert tracker.baseline("p", START + 2 * 86400) == 0.3


def test_dump_and_load_survive_a_restart() -> None:
    """A dumped ring loaded into a new tracker gives the same baseline."""
    tracker = BaselineTracker()
    now = trace(tracker, "tv", lambda t: 90.0 if t % 86400 > 72000 else 0.5, every=180)
    data = tracker.dump("tv")
    fresh = BaselineTracker()
    fresh.load("tv", data)
    assert fresh.baseline("tv", now) == tracker.baseline("tv", now) == 0.5
    assert list(fresh.plugs()) == ["tv"]
    with pytest.raises(KeyError):
        fresh.dump("other")


def test_load_refuses_bad_bytes() -> None:
    """Cut, padded, foreign-shaped or out-of-range dumps are refused with ValueError."""
    tracker = BaselineTracker()
    trace(tracker, "p", lambda t: 1.0, seconds=86400)
    data = tracker.dump("p")
    other = SlotRing(300, SLOTS, (("H", 0xFFFF),)).dump(SlotRing(300, SLOTS, (("H", 0xFFFF),)).new())
    for bad in (b"", data[:10], data[:-2], data + b"\0", b"XXXX" + data[4:], other):
        with pytest.raises(ValueError):
            BaselineTracker().load("p", bad)
    assert list(BaselineTracker().plugs()) == []


def test_forget() -> None:
    """A forgotten plug has no baseline and no samples."""
    tracker = BaselineTracker()
    now = trace(tracker, "p", lambda t: 1.0, seconds=2 * 86400)
    tracker.forget("p")
    assert tracker.baseline("p", now) is None
    assert list(tracker.plugs()) == []


def test_deciwatts() -> None:
    """Watts become tenths of a watt, capped at 6553.4 W; nonsense is None."""
    assert deciwatts(0.54) == 5
    assert deciwatts(1e9) == 65534
    assert deciwatts(True) is None and deciwatts(-0.1) is None


def test_baseline_json() -> None:
    """The JSON shape gives the baseline, its hours of data, a year in kWh and its cost at today's tariff."""
    tracker = BaselineTracker()
    now = trace(tracker, "router", lambda t: 8.0)
    schedule = TariffSchedule([Tariff.flat(0.30, "EUR")])
    doc = baselineJSON(tracker, "router", now - 1, schedule, BERLIN)
    assert doc == {"baseline_w": 8.0, "baseline_hours": 168.0, "baseline_yearly_kwh": 70.128,
                   "baseline_yearly_cost": 21.0384, "currency": "EUR"}
    assert baselineJSON(tracker, "new", now, None, BERLIN) == {
        "baseline_w": None, "baseline_hours": 0.0, "baseline_yearly_kwh": None, "baseline_yearly_cost": None,
        "currency": None}


@settings(max_examples=100, deadline=None)
@given(samples=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 500)), min_size=1, max_size=80),
       ahead=st.integers(0, 1500))
def test_ring_matches_a_plain_replay(samples: list[tuple[int, int]], ahead: int) -> None:
    """In any order, with gaps and late samples, the baseline equals one computed from the samples kept."""
    tracker = BaselineTracker(slotSeconds=60, slots=20, minSlots=1, percentile=30)
    newest = None
    kept: dict[int, int] = {}
    for offset, dw in samples:
        tracker.add("p", START + offset, dw / 10)
        slot = int((START + offset) // 60)
        newest = slot if newest is None else max(newest, slot)
        if slot > newest - 20:
            kept[slot] = min(kept.get(slot, dw), dw)
    now = START + max(o for o, _ in samples) + ahead
    nowSlot = int(now // 60)
    assert newest is not None
    live = sorted(v for s, v in kept.items() if max(newest, nowSlot) - 20 < s <= min(newest, nowSlot))
    expected = nearestRank(live, 30) / 10 if live else None
    assert tracker.baseline("p", now) == expected
