"""Tests for the automation engine's timers and schedules on a task.Clock with a fake hub."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from vesyncd.automation.model import Location, Timer
from vesyncd.automation.parse import AutomationError, AutomationRefused
from vesyncd.core.model import CommandTimeout
from tests.automation_helpers import BERLIN, NEW_YORK, FakeAutomationHub, advanceTo, clockAt, makeEngine

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN)


# -- countdown timers ------------------------------------------------------------------------------

def test_switch_for_switches_now_and_back_later() -> None:
    """on --for 30m: on at once (cause command), off with cause timer after exactly 30 minutes."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock, start=False)
    hub.add("p1")
    engine.start()
    result = []
    engine.switchFor("p1", "on", "30m").addCallback(result.append)
    assert hub.causes("p1") == [(True, "command")]
    assert result[0]["switch"] == "off" and result[0]["left_s"] == 1800 and result[0]["waiting"] is False
    clock.advance(1799)
    assert engine.timer("p1")["left_s"] == 1
    clock.advance(1)
    assert hub.causes("p1") == [(True, "command"), (False, "timer")]
    assert engine.timer("p1") is None and store.items == {}


def test_switch_for_fails_without_a_timer_when_the_plug_is_offline() -> None:
    """If the switch now fails, the error reaches the caller and no timer is left behind."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    hub.add("p1", online=False)
    failures = []
    engine.switchFor("p1", True, 60).addErrback(failures.append)
    assert failures and engine.timer("p1") is None


def test_one_timer_per_plug_and_cancel() -> None:
    """A new timer replaces the old one; cancelling removes it and nothing switches."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    hub.add("p1")
    engine.setTimer("p1", "off", "10m")
    engine.setTimer("p1", "on", "20m")
    clock.advance(600)
    assert hub.switches == []
    assert engine.cancelTimer("p1") is True and engine.cancelTimer("p1") is False
    clock.advance(3600)
    assert hub.switches == [] and store.items == {}


def test_a_timer_held_over_an_armed_one_takes_its_place_on_the_clock() -> None:
    """A timer held for a plug (as another node saved it) replaces the armed one: the old deadline
    switches nothing, the new one switches."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    hub.add("p1")
    engine.setTimer("p1", "off", "10m")
    engine.countdowns.hold(Timer("p1", True, clock.seconds() + 1200, clock.seconds()))
    engine.countdowns.arm("p1")
    assert len(engine.countdowns) == 1 and "p1" in engine.countdowns
    clock.advance(600)
    assert hub.switches == []
    clock.advance(600)
    assert hub.causes("p1") == [(True, "timer")] and engine.timer("p1") is None


def test_countdown_across_a_restart() -> None:
    """A timer survives a restart: due while the daemon was down, it runs when the plug is back."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    hub.add("p1")
    engine.setTimer("p1", "off", "30m")
    engine.stop()
    clock.advance(3600)  # the daemon was down at the deadline
    hub2 = FakeAutomationHub(clock)
    hub2.add("p1", online=False)  # at start-up no plug has logged in yet
    engine2, _, _ = makeEngine(clock, hub=hub2, store=store)
    clock.advance(0)
    assert hub2.switches == [] and engine2.timer("p1")["waiting"] is True
    hub2.setOnline("p1", True)
    assert hub2.causes("p1") == [(False, "timer")] and engine2.timer("p1") is None


def test_countdown_not_yet_due_after_restart_keeps_its_deadline() -> None:
    """A timer restored before its deadline fires at the original deadline, not later."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    hub.add("p1")
    engine.setTimer("p1", "on", "1h")
    engine.stop()
    clock.advance(600)
    engine2, hub2, _ = makeEngine(clock, store=store, start=False)
    hub2.add("p1")
    engine2.start()
    clock.advance(2999)
    assert hub2.switches == []
    clock.advance(1)
    assert hub2.causes() == [(True, "timer")]


def test_offline_at_deadline_switches_when_back() -> None:
    """A plug offline at the deadline is switched when it comes back, however late."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    hub.add("p1")
    engine.setTimer("p1", "off", 60)
    hub.setOnline("p1", False)
    clock.advance(86400)
    assert hub.switches == []
    hub.setOnline("p1", True)
    assert hub.causes() == [(False, "timer")]


def test_failed_switch_is_retried_then_given_up() -> None:
    """A timer whose switch times out on an online plug is tried three times, then dropped."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock, retry_delay=30.0)
    hub.add("p1")
    hub.failNext = [CommandTimeout("slow"), CommandTimeout("slow"), CommandTimeout("slow")]
    engine.setTimer("p1", "off", 60)
    clock.advance(60)
    assert engine.timer("p1") is not None
    clock.advance(30)
    clock.advance(30)
    assert hub.switches == [] and engine.timer("p1") is None and engine.status()["switch_failures"] == 1


# -- schedules -------------------------------------------------------------------------------------

def test_schedule_lifecycle_and_json() -> None:
    """add, list, disable, enable and rm, with the documented JSON."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    added = engine.addSchedule("p1", "on", "18:30", "weekdays")
    assert set(added) == {"id", "plug", "switch", "at", "days", "once", "enabled", "next", "next_ts", "last_run_ts"}
    assert added["at"] == "18:30:00" and added["days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert added["next"] == "2026-12-02T18:30:00+01:00" and added["enabled"] is True
    sid = added["id"]
    assert len(sid) <= 8 and engine.schedulesOf("p1") == [added] and engine.schedulesOf("p2") == []
    assert engine.disableSchedule(sid)["next"] is None
    assert engine.enableSchedule(sid)["next_ts"] == added["next_ts"]
    assert engine.removeSchedule(sid)["id"] == sid and engine.schedulesOf() == [] and store.items == {}
    with pytest.raises(AutomationRefused) as e:
        engine.removeSchedule(sid)
    assert e.value.field == "id"


def test_schedules_run_with_their_cause() -> None:
    """Schedules switch at their times with cause schedule:<id>, every day."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    hub.add("p1")
    on = engine.addSchedule("p1", "on", "18:00")["id"]
    off = engine.addSchedule("p1", "off", "23:00:30")["id"]
    advanceTo(clock, NOON + timedelta(days=2))
    assert hub.causes() == [(True, f"schedule:{on}"), (False, f"schedule:{off}")] * 2
    times = [datetime.fromtimestamp(t, BERLIN).strftime("%H:%M:%S") for t, *_ in hub.switches]
    assert times == ["18:00:00", "23:00:30"] * 2


def test_once_schedule_runs_once_and_disables_itself() -> None:
    """--once runs on its date and is then disabled; a date in the past is refused naming --once."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    hub.add("p1")
    sid = engine.addSchedule("p1", "off", "07:00", once="2026-12-03")["id"]
    advanceTo(clock, NOON + timedelta(days=3))
    assert hub.causes() == [(False, f"schedule:{sid}")]
    assert engine.schedulesOf("p1")[0]["enabled"] is False
    with pytest.raises(AutomationRefused):
        engine.enableSchedule(sid)
    for once in ("2026-12-01", "2026-12-02"):
        with pytest.raises(AutomationError) as e:
            engine.addSchedule("p1", "on", "07:00", once=once)
        assert e.value.field == "--once" and e.value.code == "usage"
    with pytest.raises(AutomationError) as e:
        engine.addSchedule("p1", "on", "07:00", days="mon", once="2026-12-24")
    assert e.value.field == "--days"


@pytest.mark.parametrize("zone, spring, fall", [
    (BERLIN, datetime(2026, 3, 28, 12), datetime(2026, 10, 24, 12)),
    (NEW_YORK, datetime(2026, 3, 7, 12), datetime(2026, 10, 31, 12)),
])
def test_engine_runs_once_across_both_dst_changes(zone: object, spring: datetime, fall: datetime) -> None:
    """Run by the engine on a clock, a 01:30 and a 02:30 schedule each run once on both change days."""
    for start in (spring, fall):
        clock = clockAt(start.replace(tzinfo=zone))
        engine, hub, _ = makeEngine(clock, zone=zone)
        hub.add("p1")
        engine.addSchedule("p1", "on", "02:30")
        engine.addSchedule("p1", "off", "01:30")
        advanceTo(clock, start.replace(tzinfo=zone) + timedelta(days=1))
        local = sorted(datetime.fromtimestamp(t, zone).strftime("%H:%M") for t, *_ in hub.switches)
        expected = ["01:30", "03:00"] if start is spring else ["01:30", "02:30"]
        assert local == expected, (zone, start, local)
        engine.stop()


def test_sun_schedule_needs_location_and_runs_at_sunset() -> None:
    """Without a location --at sunset is refused naming --at; with one it runs at sunset."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    with pytest.raises(AutomationError) as e:
        engine.addSchedule("p1", "on", "sunset")
    assert e.value.field == "--at"
    engine2, hub2, _ = makeEngine(clock, location=Location(52.52, 13.405))
    hub2.add("p1")
    added = engine2.addSchedule("p1", "on", "sunset+10m")
    # Berlin's sunset on 2 December 2026 is at about 15:55 (timeanddate.com: 15:55).
    expected = datetime(2026, 12, 2, 16, 5, tzinfo=BERLIN)
    assert abs(datetime.fromisoformat(added["next"]) - expected) <= timedelta(minutes=2), added["next"]
    assert added["at"] == "sunset+10m"


def test_catch_up_within_the_window() -> None:
    """After a restart each plug gets the state of its most recent missed run within the catch-up window."""
    clock = clockAt(datetime(2026, 12, 2, 6, 0, tzinfo=BERLIN))
    engine, hub, store = makeEngine(clock)
    hub.add("p1")
    hub.add("p2")
    engine.addSchedule("p1", "on", "07:00")
    late = engine.addSchedule("p1", "off", "07:30")["id"]
    engine.addSchedule("p2", "on", "05:00")   # long ago at the next start: outside the window
    engine.stop()
    clock.advance(2 * 3600)   # down from 06:00 to 08:00
    engine2, hub2, _ = makeEngine(clock, store=store, start=False, catch_up=3600.0)
    hub2.add("p1", online=False)
    hub2.add("p2", online=False)
    engine2.start()
    hub2.setOnline("p1", True)
    hub2.setOnline("p2", True)
    assert hub2.causes() == [(False, f"schedule:{late}")]
    # The missed runs are noted: another restart does not catch them up again.
    engine2.stop()
    engine3, hub3, _ = makeEngine(clock, store=store, start=False)
    hub3.add("p1")
    engine3.start()
    assert hub3.switches == []


def test_catch_up_expires_for_a_plug_that_comes_back_too_late() -> None:
    """A caught-up switch for a plug that comes back after the window is not made."""
    clock = clockAt(datetime(2026, 12, 2, 6, 0, tzinfo=BERLIN))
    engine, hub, store = makeEngine(clock)
    engine.addSchedule("p1", "on", "07:30")
    engine.stop()
    clock.advance(2 * 3600)
    engine2, hub2, _ = makeEngine(clock, store=store, start=False, catch_up=3600.0)
    hub2.add("p1", online=False)
    engine2.start()
    clock.advance(1800 + 1)
    hub2.setOnline("p1", True)
    assert hub2.switches == []


def test_bounds_and_forget() -> None:
    """64 schedules per plug and the total bound are refused naming the field; forget drops everything."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock, max_schedules=70)
    hub.add("p1")
    hub.add("p2")
    for n in range(64):
        engine.addSchedule("p1", "on", f"{n // 60:02d}:{n % 60:02d}")
    with pytest.raises(AutomationRefused) as e:
        engine.addSchedule("p1", "on", "12:00")
    assert e.value.field == "plug" and e.value.code == "refused"
    for n in range(6):
        engine.addSchedule("p2", "on", f"13:0{n}")
    with pytest.raises(AutomationRefused) as e:
        engine.addSchedule("p2", "on", "14:00")
    assert e.value.field == "schedule"
    engine.setTimer("p1", "off", "2h")
    engine.addRule("p1", above=100, duration="1m")
    engine.away("p1", "18:00", "23:00")
    hub.forget("p1")
    assert engine.describe("p1") == {"plug": "p1", "timer": None, "schedules": [], "rules": [], "away": None,
                                     "next": None}
    assert all(key[2] == "p2" for key in store.items) and len(engine.schedulesOf()) == 6
    advanceTo(clock, NOON + timedelta(days=1))
    assert all(plug == "p2" for _, plug, _, _ in hub.switches)


def test_next_action_and_status() -> None:
    """nextAction picks the soonest of timer and schedules; status counts items."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    sid = engine.addSchedule("p1", "off", "12:30")["id"]
    assert engine.nextAction("p1")["cause"] == f"schedule:{sid}"
    engine.setTimer("p1", "on", "10m")
    nxt = engine.nextAction("p1")
    assert nxt == {"switch": "on", "at": "2026-12-02T12:10:00+01:00", "ts": NOON.timestamp() + 600, "cause": "timer"}
    assert engine.status()["timers"] == 1 and engine.status()["schedules"] == 1
    assert datetime.fromtimestamp(nxt["ts"], timezone.utc).hour == 11


def test_newest_switch_wins_for_a_plug_that_comes_back() -> None:
    """A timer due at 07:45 and a caught-up 07:30 schedule both wait for an offline plug: the later one wins."""
    clock = clockAt(datetime(2026, 12, 2, 7, 0, tzinfo=BERLIN))
    engine, hub, store = makeEngine(clock)
    engine.addSchedule("p1", "on", "07:30")
    engine.setTimer("p1", "off", "45m")
    engine.stop()
    clock.advance(3600)
    engine2, hub2, _ = makeEngine(clock, store=store, start=False)
    hub2.add("p1", online=False)
    engine2.start()
    clock.advance(0)
    hub2.setOnline("p1", True)
    assert hub2.causes() == [(False, "timer")] and engine2.timer("p1") is None


def test_damaged_stored_items_are_skipped() -> None:
    """A damaged stored item is logged and skipped; the others still load and run."""
    clock = clockAt(NOON)
    engine, hub, store = makeEngine(clock)
    sid = engine.addSchedule("p1", "on", "13:00")["id"]
    engine.stop()
    store.save("schedule", "sbad", "p1", {"switch": "on", "at": "29:99"})
    store.save("timer", "p2", "p2", {"switch": "off", "due": "never"})
    store.save("gadget", "g1", "p1", {})
    engine2, hub2, _ = makeEngine(clock, store=store, start=False)
    hub2.add("p1")
    engine2.start()
    assert [s["id"] for s in engine2.schedulesOf()] == [sid] and engine2.timer("p2") is None
    clock.advance(3600)
    assert hub2.causes() == [(True, f"schedule:{sid}")]


def test_new_timer_replaces_one_waiting_for_an_offline_plug() -> None:
    """A timer set while an older one waits for its offline plug replaces it: only the new one switches."""
    clock = clockAt(NOON)
    engine, hub, _ = makeEngine(clock)
    hub.add("p1")
    engine.setTimer("p1", "off", 60)
    hub.setOnline("p1", False)
    clock.advance(120)
    assert engine.timer("p1")["waiting"] is True
    engine.setTimer("p1", "on", 600)
    hub.setOnline("p1", True)
    assert hub.switches == []
    clock.advance(600)
    assert hub.causes() == [(True, "timer")] and engine.timer("p1") is None
