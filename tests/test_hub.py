"""The network-free core on a fake clock: logins, liveness, commands, queueing, events."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.core.session import MAX_QUEUED_COMMANDS, firstProbePoint
from vesyncd.core.settings import Settings
from vesyncd.plugs import codec as m
from tests.fakes import FakeConnection

LOGIN = m.Login(id="plug-1", firmVersion="1.89", deviceName="vesync_wifi_outlet", relay=True)


def makeHub(**kw: Any) -> tuple[Hub, Clock, list[h.Event]]:
    """A hub on a fake clock that records every event."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = Hub(clock, Settings(**kw))
    events: list[h.Event] = []
    hub.subscribe(events.append)
    return hub, clock, events


def results(d: Any) -> list[Any]:
    """Collect a Deferred's result or failure into a list."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_login_replies_with_time_and_emits_events() -> None:
    """A login gets /loginReply with the clock's UTC time; new plug, online and relay events follow."""
    hub, clock, events = makeHub()
    conn = FakeConnection()
    hub.login(conn, LOGIN)
    assert conn.sent[0]["uri"] == "/loginReply"
    assert conn.sent[0]["ms"] == m.timeFields(clock.seconds())["ms"]
    assert [e.kind for e in events] == [h.PLUG_NEW, h.ONLINE, h.RELAY]
    assert events[2].data["cause"] == h.CAUSE_LOGIN
    plug = hub.get("plug-1")
    assert plug.online and plug.relay is True and plug.address == conn.peer and plug.firmware == "1.89"


def test_keepalive_answered_with_time() -> None:
    """A plug's /ka is answered at once with /kr and the time; its RSSI is kept."""
    hub, clock, events = makeHub()
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    session.received(m.KeepAlive(rssi=-40))
    assert conn.sent[-1]["uri"] == "/kr" and conn.sent[-1]["year"] >= 2023
    assert hub.get("plug-1").rssi_dbm == -40
    assert events[-1].kind == h.RSSI


def test_silent_plug_is_probed_then_marked_offline() -> None:
    """After keepalive_idle of silence the hub sends /ka; past offline_after the plug is offline."""
    hub, clock, events = makeHub(keepalive_idle=60, probe_interval=15, offline_after=110)
    conn = FakeConnection()
    hub.login(conn, LOGIN)
    clock.advance(59)
    assert "/ka" not in conn.uris()
    clock.advance(1)
    assert conn.uris().count("/ka") == 1
    clock.advance(15)
    assert conn.uris().count("/ka") == 2
    clock.advance(34.9)
    assert hub.get("plug-1").online
    clock.advance(0.2)
    assert not hub.get("plug-1").online
    assert conn.disconnected == "keepalive deadline passed"
    assert events[-1].kind == h.OFFLINE


def test_plugs_logging_in_together_are_first_probed_over_the_spread() -> None:
    """A wave of silent plugs logged in in the same second is first probed over one probe interval
    after keepalive_idle, evenly, never before keepalive_idle; each is still offline at offline_after."""
    hub, clock, events = makeHub(keepalive_idle=60, probe_interval=15, offline_after=110,
                                 max_new_plugs_per_minute=300)
    assert hub.settings.firstProbeSpread == 15
    conns = [FakeConnection(f"192.0.2.{1 + i % 200}:{40000 + i}") for i in range(300)]
    for i, conn in enumerate(conns):
        hub.login(conn, m.Login(id=f"wave-{i}"))
    firstProbe: dict[int, int] = {}
    for second in range(1, 111):
        clock.advance(1)
        for i, conn in enumerate(conns):
            if "/ka" in conn.uris() and i not in firstProbe:
                firstProbe[i] = second
    assert len(firstProbe) == 300 and min(firstProbe.values()) == 60 and max(firstProbe.values()) == 75
    perSecond = [list(firstProbe.values()).count(s) for s in range(60, 76)]
    assert max(perSecond) <= 2 * 300 / 15, perSecond  # an even share is 20 a second
    assert all(conn.disconnected == "keepalive deadline passed" for conn in conns)
    assert not any(p.online for p in hub.plugs())


def test_a_plug_heard_from_is_not_probed_whatever_its_place_in_the_spread() -> None:
    """The spread only moves the first look: a plug that keeps talking is never probed, and one that
    falls silent later is probed keepalive_idle after it was last heard, as before."""
    hub, clock, events = makeHub(keepalive_idle=60, probe_interval=15, offline_after=110)
    sessions = [hub.login(FakeConnection(), m.Login(id=f"talk-{i}")) for i in range(20)]
    for _ in range(10):
        clock.advance(30)
        for session in sessions:
            session.received(m.KeepAlive())
    assert not any("/ka" in s.connection.uris() for s in sessions)
    clock.advance(59.9)
    assert not any("/ka" in s.connection.uris() for s in sessions)
    clock.advance(0.2)
    assert all(s.connection.uris().count("/ka") == 1 for s in sessions)


def test_first_probe_spread_is_bounded_by_the_offline_deadline() -> None:
    """The spread is one probe interval, at most half the time from keepalive_idle to offline_after."""
    assert Settings().firstProbeSpread == 15
    assert Settings(keepalive_idle=5, offline_after=9).firstProbeSpread == 2
    assert Settings(probe_interval=0.1).firstProbeSpread == 0.5


@pytest.mark.parametrize("first", [1, 2, 977, 123_456])
@pytest.mark.parametrize("count", [10, 100, 5_000])
def test_any_run_of_logins_falls_evenly_over_the_spread(first: int, count: int) -> None:
    """Whatever login a wave starts at, its points leave no gap wider than twice an even share."""
    assert firstProbePoint(1) == 0.0
    points = sorted(firstProbePoint(n) for n in range(first, first + count))
    assert all(0.0 <= p < 1.0 for p in points)
    gaps = [b - a for a, b in zip(points, points[1:])] + [points[0] + 1.0 - points[-1]]
    assert max(gaps) <= 2.0 / count


def test_answering_plug_stays_online() -> None:
    """A plug that answers the probe with a bare /kr stays online indefinitely."""
    hub, clock, events = makeHub(keepalive_idle=60, probe_interval=15, offline_after=110)
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    for _ in range(20):
        clock.advance(61)
        assert conn.sent[-1]["uri"] == "/ka"
        session.received(m.KeepAliveReply())
    assert hub.get("plug-1").online and conn.disconnected is None


def test_vanished_plug_offline_within_two_minutes_by_default() -> None:
    """With the default settings a plug that vanishes without FIN is offline within 120 s."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), LOGIN)
    clock.advance(120)
    assert not hub.get("plug-1").online


def test_switch_confirmed_by_runtime_info() -> None:
    """switch sends /relay and fires with the state /runtimeInfo confirms; the relay event says 'command'."""
    hub, clock, events = makeHub()
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    out = results(hub.switch("plug-1", False))
    assert conn.sent[-1] == {"uri": "/relay", "action": "break"}
    assert out == []
    session.received(m.RuntimeInfo(relay=False, power=(0.0, 0.0), voltage=(120.1, 120.0)))
    assert out[0].relay is False and out[0].voltage_v == pytest.approx(120.1)
    relay = [e for e in events if e.kind == h.RELAY][-1]
    assert relay.data == {"relay": False, "cause": h.CAUSE_COMMAND, "previous": True}


def test_toggle_decides_at_execution_time() -> None:
    """Two toggles queued back to back switch off, then on again."""
    hub, clock, events = makeHub()
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    first, second = results(hub.switch("plug-1", None)), results(hub.switch("plug-1", None))
    assert [x for x in conn.uris() if x == "/relay"] == ["/relay"]
    session.received(m.RuntimeInfo(relay=False))
    assert conn.sent[-1] == {"uri": "/relay", "action": "open"}
    session.received(m.RuntimeInfo(relay=True))
    assert first[0].relay is False and second[0].relay is True


def test_commands_are_queued_not_interleaved() -> None:
    """A second command is sent only after the first is confirmed."""
    hub, clock, events = makeHub()
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    a = results(hub.switch("plug-1", False))
    b = results(hub.refresh("plug-1"))
    assert conn.uris()[-1] == "/relay"
    assert "/getRuntime" not in conn.uris()
    session.received(m.RuntimeInfo(relay=False))
    assert conn.uris()[-1] == "/getRuntime"
    session.received(m.RuntimeInfo(relay=False, power=(5.0, 5.0)))
    assert a[0].relay is False and b[0].power_w == 5.0


def test_command_timeout_then_next_runs() -> None:
    """A plug that does not answer fails the command after command_timeout; the queue moves on."""
    hub, clock, events = makeHub(command_timeout=5)
    conn = FakeConnection()
    hub.login(conn, LOGIN)
    a = results(hub.switch("plug-1", False))
    b = results(hub.refresh("plug-1"))
    clock.advance(4.9)
    assert a == []
    clock.advance(0.2)
    assert a[0].check(h.CommandTimeout)
    assert conn.uris()[-1] == "/getRuntime" and b == []


def test_unknown_and_offline_fail_at_once() -> None:
    """Commands to unknown or offline plugs fail immediately with clear errors."""
    hub, clock, events = makeHub()
    out = results(hub.switch("nope", True))
    assert out[0].check(h.UnknownPlug)
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    session.lost("connection closed")
    out = results(hub.switch("plug-1", True))
    assert out[0].check(h.PlugOffline)
    assert "offline" in str(out[0].value)


def test_connection_loss_fails_pending_commands() -> None:
    """When the connection drops, the command in flight and the queued ones fail with PlugOffline."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), LOGIN)
    a, b = results(hub.switch("plug-1", True)), results(hub.refresh("plug-1"))
    session.lost("gone")
    assert a[0].check(h.PlugOffline) and b[0].check(h.PlugOffline)
    assert events[-1].kind == h.OFFLINE


def test_queue_is_bounded() -> None:
    """Beyond MAX_QUEUED_COMMANDS waiting commands, more are refused with QueueFull."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), LOGIN)
    outs = [results(hub.refresh("plug-1")) for _ in range(MAX_QUEUED_COMMANDS + 2)]
    refused = [o for o in outs if o and o[0].check(h.QueueFull)]
    assert len(refused) == 1


def test_new_login_replaces_old_connection() -> None:
    """A second login with the same id closes the first connection; the plug stays online."""
    hub, clock, events = makeHub()
    old, new = FakeConnection("192.0.2.10:1"), FakeConnection("192.0.2.10:2")
    oldSession = hub.login(old, LOGIN)
    pending = results(hub.refresh("plug-1"))
    newSession = hub.login(new, LOGIN)
    assert old.disconnected is not None
    assert pending[0].check(h.PlugOffline)
    oldSession.lost("closed after replacement")
    assert hub.get("plug-1").online and hub.get("plug-1").address == "192.0.2.10:2"
    assert [e.kind for e in events].count(h.OFFLINE) == 0
    out = results(hub.switch("plug-1", False))
    assert new.sent[-1]["uri"] == "/relay"
    newSession.received(m.RuntimeInfo(relay=False))
    assert out[0].relay is False


def test_button_and_timer_causes() -> None:
    """/state is a button press and /evtimer a timer; each relay change carries its cause."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), LOGIN)
    session.received(m.State(relay=False))
    session.received(m.EvTimer(relay=True, timerId=1, aname="b"))
    causes = [e.data["cause"] for e in events if e.kind == h.RELAY]
    assert causes == [h.CAUSE_LOGIN, h.CAUSE_BUTTON, h.CAUSE_TIMER]


def test_report_accounts_energy() -> None:
    """A /report adds its watt-seconds to today's and lifetime totals and emits an energy event."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), LOGIN)
    session.received(m.Report(wattSeconds=3600, seconds=180))
    for _ in range(3):  # a second report's time must have passed (see test_trust_core)
        clock.advance(60)
        session.received(m.KeepAlive())
    session.received(m.Report(wattSeconds=3600, seconds=180))
    energy = hub.energy("plug-1")
    assert energy.lifetime_wh == pytest.approx(2.0) and energy.today_wh == pytest.approx(2.0)
    ev = events[-1]
    assert ev.kind == h.ENERGY and ev.data["average_w"] == pytest.approx(20.0)


def test_implausible_report_is_refused() -> None:
    """A report beyond what a plug could draw does not poison the counter."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), LOGIN)
    session.received(m.Report(wattSeconds=10**12, seconds=1))
    assert hub.energy("plug-1").lifetime_wh == 0
    assert hub.stats["reports_rejected"] == 1


def test_resolve_by_alias_prefix_and_ambiguity() -> None:
    """Plugs are found by id, case-insensitive alias, or unique id prefix."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), m.Login(id="abc123"))
    hub.login(FakeConnection(), m.Login(id="abd456"))
    hub.rename("abc123", "Kettle")
    assert hub.get("kettle").id == "abc123"
    assert hub.get("abd").id == "abd456"
    with pytest.raises(h.AmbiguousPlug):
        hub.resolve("ab")
    with pytest.raises(h.UnknownPlug):
        hub.resolve("zzz")
    with pytest.raises(h.InvalidArgument):
        hub.rename("abd456", "KETTLE")
    hub.rename("abc123", "")
    assert hub.get("abc123").alias is None


def test_unknown_uri_tolerated_and_logged_once() -> None:
    """Unknown URIs are counted, never fatal, and logged once per plug and URI."""
    from twisted.logger import globalLogPublisher

    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        hub, clock, events = makeHub()
        session = hub.login(FakeConnection(), LOGIN)
        for _ in range(3):
            session.received(m.Unknown(uri="/assignGuid"))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert hub.stats["unknown_uris"] == 3
    assert len([e for e in seen if e.get("uri") == "/assignGuid"]) == 1


def test_forget_drops_plug_and_closes_connection() -> None:
    """forget removes the plug and closes its connection without an offline event."""
    hub, clock, events = makeHub()
    conn = FakeConnection()
    hub.login(conn, LOGIN)
    hub.forget("plug-1")
    assert conn.disconnected == "plug forgotten"
    assert events[-1].kind == h.FORGOTTEN
    with pytest.raises(h.UnknownPlug):
        hub.resolve("plug-1")


def test_subscriber_errors_do_not_break_others() -> None:
    """A failing subscriber is logged; other subscribers still get the event."""
    hub, clock, events = makeHub()

    def broken(event: h.Event) -> None:
        raise RuntimeError("boom")

    hub.subscribe(broken)
    seen: list[h.Event] = []
    hub.subscribe(seen.append)
    hub.login(FakeConnection(), LOGIN)
    assert [e.kind for e in seen] == [h.PLUG_NEW, h.ONLINE, h.RELAY]


def test_json_form() -> None:
    """toJSON gives the documented schema with on/off words and ISO 8601 UTC times."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), LOGIN)
    doc = hub.get("plug-1").toJSON(hub.energy("plug-1"))
    assert doc["relay"] == "on" and doc["online"] is True
    assert doc["last_seen"].endswith("Z")
    for key in ("id", "alias", "power_w", "voltage_v", "rssi_dbm", "firmware", "address",
                "energy_today_kwh", "energy_lifetime_kwh"):
        assert key in doc


def test_close_all_marks_every_plug_offline() -> None:
    """closeAll drops every connection and emits offline events at once, failing pending commands."""
    hub, clock, events = makeHub()
    a, b = FakeConnection("192.0.2.1:1"), FakeConnection("192.0.2.2:1")
    hub.login(a, m.Login(id="a"))
    hub.login(b, m.Login(id="b"))
    pending = results(hub.refresh("a"))
    assert hub.closeAll("stopping") == 2
    assert a.disconnected == b.disconnected == "stopping"
    assert pending[0].check(h.PlugOffline)
    assert sorted(e.plug for e in events if e.kind == h.OFFLINE) == ["a", "b"]
    assert not hub.get("a").online and not hub.get("b").online


def test_cancelled_liveness_timer_lets_go_of_the_session() -> None:
    """A closed session's cancelled timer no longer refers to it (so it can be freed at once)."""
    import gc
    import weakref

    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), LOGIN)
    call = session._liveness
    ref = weakref.ref(session)
    session.lost("gone")
    del session
    gc.collect()
    assert ref() is None
    assert not call.active() and call.args == ()


def test_switch_carries_its_cause_to_the_relay_event() -> None:
    """A switch with a cause (the automation's) puts it in the relay event and the plug's relay_cause."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), LOGIN)
    out = results(hub.switch("plug-1", False, cause="schedule:s1a2b3c"))
    session.received(m.RuntimeInfo(relay=False, power=(0.0, 0.0)))
    assert out[0].relay is False and out[0].relay_cause == "schedule:s1a2b3c"
    relay = [e for e in events if e.kind == h.RELAY][-1]
    assert relay.data["cause"] == "schedule:s1a2b3c"
    assert hub.get("plug-1").relay_cause == "schedule:s1a2b3c"
    # A refresh that finds the relay changed is the plug's own doing, not the last command's.
    hub.refresh("plug-1")
    session.received(m.RuntimeInfo(relay=True, power=(0.0, 0.0)))
    assert [e for e in events if e.kind == h.RELAY][-1].data["cause"] == h.CAUSE_PLUG


def test_announce_emits_an_event_with_the_hubs_clock() -> None:
    """announce sends any kind of event about a plug to subscribers, at the hub clock's time."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), LOGIN)
    clock.advance(5)
    hub.announce(h.RULE, "plug-1", rule="r000001", power_w=3.0, action="notify", ok=True)
    event = events[-1]
    assert (event.kind, event.plug, event.at) == (h.RULE, "plug-1", clock.seconds())
    assert event.data == {"rule": "r000001", "power_w": 3.0, "action": "notify", "ok": True}
    assert h.RULE in h.EVENT_KINDS and h.RULE_RUNNING in h.EVENT_KINDS


def test_hub_provides_the_automation_seam() -> None:
    """The hub is what the automation engine needs (IAutomationHub), with no adapter."""
    from zope.interface.verify import verifyObject

    from vesyncd.automation.interfaces import IAutomationHub

    hub, _, _ = makeHub()
    assert verifyObject(IAutomationHub, hub)


def test_sessions_are_readable() -> None:
    """session(id) and sessions() show the live connections, and forget what closed."""
    hub, _, _ = makeHub()
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    assert hub.session("plug-1") is session and hub.sessions() == [session]
    session.lost("gone")
    assert hub.session("plug-1") is None and hub.sessions() == []


def test_copiesInPlaceAndReadings() -> None:
    """plugs() gives copies (changing one leaves the hub alone); plugsInPlace() the hub's own objects
    in the same order; readings() each plug's figures for /metrics, lifetime energy included."""
    clock = Clock()
    hub = Hub(clock)
    a = hub.login(FakeConnection(), m.Login(id="plug-b", relay=True))
    hub.login(FakeConnection(), m.Login(id="plug-a", relay=False))
    a.received(m.RuntimeInfo(relay=True, power=(12.5, 0.0), voltage=(230.0, 0.0)))
    a.received(m.Report(wattSeconds=7200, seconds=180))
    hub.rename("plug-b", "Kettle")
    copies, own = hub.plugs(), hub.plugsInPlace()
    assert [p.id for p in copies] == [p.id for p in own] == ["plug-b", "plug-a"]  # by name: Kettle, plug-a
    assert all(c == o and c is not o and c.device is not o.device for c, o in zip(copies, own))
    copies[0].alias = "changed"
    assert hub.get("plug-b").alias == "Kettle"
    assert own[0] is hub.plugsInPlace()[0]
    assert hub.readings() == [("plug-b", "Kettle", True, True, 12.5, 230.0, 2.0, None, own[0].last_seen),
                              ("plug-a", None, True, False, None, None, 0.0, None, own[1].last_seen)]


def test_name_order_follows_every_change_here_and_from_other_nodes() -> None:
    """The plugs' name order is worked out again after a plug is added, renamed or forgotten, here
    or by another node's event."""
    clock = Clock()
    hub = Hub(clock, known=[h.PlugState(id="id-b", alias="Bravo"), h.PlugState(id="id-c", alias="Charlie")])
    names = lambda: [p.name for p in hub.plugs()]  # noqa: E731
    assert names() == ["Bravo", "Charlie"]
    hub.rename("id-c", "Alpha")
    assert names() == ["Alpha", "Bravo"]
    hub.remoteEvent("node-2", h.ALIAS, "id-b", 1.0, {"alias": "Aardvark"})
    assert names() == ["Aardvark", "Alpha"]
    hub.remoteEvent("node-2", h.ONLINE, "id-new", 2.0, {})
    assert names() == ["Aardvark", "Alpha", "id-new"]
    hub.remoteEvent("node-2", h.FORGOTTEN, "id-b", 3.0, {})
    assert names() == ["Alpha", "id-new"]
    hub.forget("id-c")
    assert names() == ["id-new"] and [row[0] for row in hub.readings()] == ["id-new"]
