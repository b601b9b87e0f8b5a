"""Tests for away mode: random switching that stays inside the daily window and ends with the plug off."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from vesyncd.automation.parse import AutomationError
from tests.automation_helpers import BERLIN, advanceTo, clockAt, makeEngine

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN)


def inWindow(ts: float, start: tuple[int, int], end: tuple[int, int]) -> bool:
    """True if local time of C{ts} is in [start, end), the window possibly crossing midnight."""
    local = datetime.fromtimestamp(ts, BERLIN)
    minutes = local.hour * 60 + local.minute + local.second / 60
    lo, hi = start[0] * 60 + start[1], end[0] * 60 + end[1]
    return lo <= minutes < hi if lo < hi else minutes >= lo or minutes < hi


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("window", [((18, 0), (23, 30)), ((22, 0), (1, 0)), ((1, 0), (4, 0))])
@pytest.mark.parametrize("start", [NOON, datetime(2026, 3, 26, 12, tzinfo=BERLIN),
                                   datetime(2026, 10, 22, 12, tzinfo=BERLIN)])
def test_away_stays_inside_its_window(seed: int, window: tuple[tuple[int, int], tuple[int, int]],
                                      start: datetime) -> None:
    """Over a week (also across both daylight-saving changes), every away switch-on happens inside the
    window, the plug changes several times, and the last switch of each window is off, at its end."""
    import random

    clock = clockAt(start)
    engine, hub, _ = makeEngine(clock, start=False)
    engine.awayMode.rng = random.Random(seed)
    hub.add("p1")
    engine.start()
    (sh, sm), (eh, em) = window
    shown = engine.away("p1", f"{sh:02d}:{sm:02d}", f"{eh:02d}:{em:02d}")
    assert shown["from"] == f"{sh:02d}:{sm:02d}:00" and shown["next_switch"] == "on"
    advanceTo(clock, start + timedelta(days=7))
    switches = [(t, on, cause) for t, _, on, cause in hub.switches]
    assert switches and all(cause == "away" for _, _, cause in switches)
    for t, on, _ in switches:
        if on:
            assert inWindow(t, window[0], window[1]), datetime.fromtimestamp(t, BERLIN)
        else:
            assert inWindow(t, window[0], window[1]) or datetime.fromtimestamp(t, BERLIN).strftime("%H:%M") == \
                f"{eh:02d}:{em:02d}"
    ends = [t for t, on, _ in switches if not on and datetime.fromtimestamp(t, BERLIN).strftime("%H:%M:%S")
            == f"{eh:02d}:{em:02d}:00"]
    assert len(ends) == 7
    # After each end the next switch (if any) is a switch-on in the next window: the plug is never left on.
    state = False
    for t, on, _ in switches:
        assert on != state or not on, "switched to the state it already had"
        state = on
    assert state is False
    ons = sum(1 for _, on, _ in switches if on)
    assert ons >= 7


def test_away_off_switches_off_and_stops() -> None:
    """away --off stops away mode, switching the plug off if away mode had switched it on."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    hub.add("p1")
    engine.away("p1", "12:00", "20:00")
    clock.advance(600)  # the first switch-on comes within the shortest off time (10 min)
    assert hub.causes() == [(True, "away")]
    assert engine.awayOff("p1") is True and engine.awayOff("p1") is False
    assert hub.causes() == [(True, "away"), (False, "away")]
    assert engine.awayStatus("p1") is None and store.items == {}
    clock.advance(86400)
    assert len(hub.switches) == 2


def test_away_survives_a_restart_and_validates() -> None:
    """Away mode is restored from the store; equal from and to are refused naming --to, bad times their field."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    engine.away("p1", "18:00", "19:00")
    engine.stop()
    engine2, hub2, _ = makeEngine(clock, store=store, start=False)
    hub2.add("p1")
    engine2.start()
    assert engine2.awayStatus("p1")["window_start"] == "2026-12-02T18:00:00+01:00"
    advanceTo(clock, NOON + timedelta(hours=8))
    assert hub2.causes()[-1] == (False, "away") and any(on for on, _ in hub2.causes())
    for args, field in ((("18:00", "18:00"), "--to"), (("6pm", "19:00"), "--from"), (("18:00", "25:00"), "--to")):
        with pytest.raises(AutomationError) as e:
            engine2.away("p1", *args)
        assert e.value.field == field
