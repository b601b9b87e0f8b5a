"""The core's rules against hostile plugs, on a fake clock: energy bounded by wall time, no silent
name picks, first-seen identity and conflicts, held and rate-limited new ids; and the settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.core.interfaces import ISessionOwner
from vesyncd.core.session import PlugSession
from vesyncd.core.settings import Settings, optParameters
from vesyncd.core.trust import MAX_WATTS, REPORT_ALLOWANCE, REPORT_SLACK, hostOf
from vesyncd.plugs import codec as m
from tests.fakes import FakeConnection

VICTIM = "443c878f-f675-4c90-98e8-2f4566914d39"
REAL = m.Login(id=VICTIM, account="1234567", firmVersion="1.89", deviceName="vesync_wifi_outlet", relay=True)
HOME = "192.0.2.10:40000"


def makeHub(settings: Settings = Settings(), known: Any = ()) -> tuple[Hub, Clock, list[h.Event]]:
    """A hub on a fake clock that records every event."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = Hub(clock, settings, known=known)
    events: list[h.Event] = []
    hub.subscribe(events.append)
    return hub, clock, events


def kinds(events: list[h.Event]) -> list[str]:
    """The kinds of the events, in order."""
    return [e.kind for e in events]


def keepAliveFor(session: PlugSession, clock: Clock, seconds: float) -> None:
    """Let C{seconds} pass with the plug sending /ka every 60 s, as a live plug does."""
    while seconds > 0:
        step = min(60.0, seconds)
        clock.advance(step)
        session.received(m.KeepAlive())
        seconds -= step


# -- energy --------------------------------------------------------------------------------------

def test_energy_poisoning_with_reconnects_stays_within_wall_time() -> None:
    """A device using a victim's id, sending the largest reports the checks allow and reconnecting
    between them, adds at most 4000 W x (wall time + allowance) to the victim's lifetime energy."""
    hub, clock, events = makeHub()
    start = clock.seconds()
    real = hub.login(FakeConnection(HOME), REAL)
    assert real is not None
    keepAliveFor(real, clock, 183)
    real.received(m.Report(wattSeconds=183 * 20, seconds=183))
    for _ in range(60):
        clock.advance(1)
        attacker = hub.login(FakeConnection("192.0.2.66:5555"), m.Login(id=VICTIM, relay=True))
        assert attacker is not None
        for seconds in (86400, 3600, 200, 10, 1, 0):
            for _ in range(5):
                attacker.received(m.Report(wattSeconds=MAX_WATTS * max(seconds, 1), seconds=seconds))
    elapsed = clock.seconds() - start
    lifetime = hub.energy(VICTIM).lifetime_wh
    assert lifetime <= MAX_WATTS * (elapsed + REPORT_ALLOWANCE + REPORT_SLACK) / 3600.0
    assert lifetime < 600.0  # Wh; the same attack raised 4,608 kWh before the bound
    plug = hub.get(VICTIM)
    assert plug.energy_refused_wh > 1000.0 and plug.toJSON()["energy_refused_wh"] == round(plug.energy_refused_wh, 6)
    assert hub.stats["reports_refused_too_long"] > 100 and hub.stats["reports_refused"] >= hub.stats[
        "reports_refused_too_long"]


def test_zero_second_reports_cannot_add_energy_for_free() -> None:
    """Reports claiming energy over zero seconds count as the time that energy needs at 4000 W."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(), REAL)
    for _ in range(10_000):
        session.received(m.Report(wattSeconds=MAX_WATTS, seconds=0))
    assert hub.energy(VICTIM).lifetime_wh <= MAX_WATTS * (REPORT_ALLOWANCE + REPORT_SLACK + 1) / 3600.0


def test_real_plug_reports_are_all_accepted_across_a_daemon_restart() -> None:
    """A plug's ~183 s cycle is accepted, and so is its first report after a restart of vesyncd,
    which covers time from before the restart (the mark is kept with the plug's state)."""
    hub, clock, events = makeHub()
    session = hub.login(FakeConnection(HOME), REAL)
    session.received(m.Report(wattSeconds=180 * 20, seconds=180))  # the first report reaches back
    for _ in range(5):
        keepAliveFor(session, clock, 183)
        session.received(m.Report(wattSeconds=183 * 20, seconds=183))
    keepAliveFor(session, clock, 100)
    saved = hub.plugs()
    hub.closeAll("vesyncd is stopping")
    clock.advance(5)
    again, clock2 = Hub(clock, Settings(), known=saved), clock
    session = again.login(FakeConnection("192.0.2.10:40001"), REAL)
    keepAliveFor(session, clock2, 78)
    session.received(m.Report(wattSeconds=183 * 20, seconds=183))
    assert hub.stats["reports"] == 6 and again.stats["reports"] == 1
    assert hub.stats["reports_refused"] == 0 and again.stats["reports_refused"] == 0


def test_first_report_of_a_plug_stored_without_a_mark_is_accepted() -> None:
    """A plug stored by an older vesyncd (no mark) may report the ~180 s before its login at once."""
    hub, clock, events = makeHub(known=[h.PlugState(id=VICTIM, alias="Kettle")])
    session = hub.login(FakeConnection(), REAL)
    session.received(m.Report(wattSeconds=180 * 2000, seconds=180))
    assert hub.stats["reports"] == 1 and hub.energy(VICTIM).lifetime_wh == pytest.approx(100.0)


# -- names ---------------------------------------------------------------------------------------

def test_login_with_an_id_that_is_another_plugs_alias_is_refused() -> None:
    """After a plug is named Kettle2, a device logging in as kettle2 is closed, logged and counted."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), REAL)
    hub.rename(VICTIM, "Kettle2")
    squatter = FakeConnection("192.0.2.66:5555")
    assert hub.login(squatter, m.Login(id="kettle2", relay=True)) is None
    assert squatter.disconnected and squatter.sent == []
    assert [p.id for p in hub.plugs()] == [VICTIM]
    assert hub.stats["logins_refused_alias"] == 1
    assert hub.get("KETTLE2").id == VICTIM


def test_alias_equal_to_another_plugs_id_is_refused() -> None:
    """Renaming a plug to another plug's id, in any case, is an invalid argument."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), REAL)
    hub.login(FakeConnection(), m.Login(id="Lamp"))
    with pytest.raises(h.InvalidArgument, match="Lamp"):
        hub.rename(VICTIM, "lamp")


def test_a_name_that_is_one_plugs_alias_and_anothers_id_is_ambiguous() -> None:
    """Resolving never picks silently: the error lists the plug by alias and the one by id."""
    hub, clock, events = makeHub(known=[h.PlugState(id="plug-a", alias="Kettle2"), h.PlugState(id="KETTLE2")])
    for ref in ("kettle2", "KETTLE2", "Kettle2"):
        with pytest.raises(h.AmbiguousPlug) as e:
            hub.resolve(ref)
        assert "plug-a" in str(e.value) and "KETTLE2" in str(e.value) and "alias" in str(e.value)
    out: list[Any] = []
    hub.switch("kettle2", False).addErrback(out.append)
    assert out and out[0].check(h.AmbiguousPlug)
    assert hub.resolve("plug-a").id == "plug-a"


# -- identity and conflicts ----------------------------------------------------------------------

def test_conflicting_login_is_recorded_announced_once_and_the_last_login_wins() -> None:
    """A login for a known id with another account or host sets the conflict and emits plug_conflict once."""
    hub, clock, events = makeHub()
    first = FakeConnection(HOME)
    hub.login(first, REAL)
    hub.login(FakeConnection("192.0.2.10:40002"), REAL)  # same host, new port: no conflict
    assert hub.get(VICTIM).conflict is None
    assert hub.get(VICTIM).first_identity == {"account": "1234567", "host": "192.0.2.10", "firmware": "1.89"}
    del events[:]
    evil = m.Login(id=VICTIM, account="666", firmVersion="1.89", relay=False)
    newest = FakeConnection("192.0.2.66:5555")
    assert hub.login(newest, evil) is not None
    hub.login(FakeConnection("192.0.2.66:5556"), evil)
    conflicts = [e for e in events if e.kind == h.PLUG_CONFLICT]
    assert len(conflicts) == 1
    assert conflicts[0].data["fields"] == ["account", "host"]
    assert conflicts[0].data["first"]["account"] == "1234567" and conflicts[0].data["now"]["host"] == "192.0.2.66"
    plug = hub.get(VICTIM)
    assert plug.toJSON()["conflict"]["fields"] == ["account", "host"] and plug.address == "192.0.2.66:5556"
    assert hub.isOnline(VICTIM) and plug.relay is False  # the last login wins
    cleared = hub.clearConflict(VICTIM)
    assert cleared.conflict is None and cleared.first_identity["account"] == "666"
    assert cleared.toJSON()["conflict"] is None


def test_host_of_peer_addresses() -> None:
    """The host part of IPv4, bracketed IPv6 and bare addresses."""
    assert [hostOf(p) for p in ("192.0.2.1:5", "[::1]:5", "::1", None)] == ["192.0.2.1", "::1", "::1", None]


# -- new plugs -----------------------------------------------------------------------------------

def test_held_plug_is_answered_but_invisible_until_approved() -> None:
    """With new-plugs hold an unknown id is answered and kept, emits only plug_pending and records no
    energy; approving it announces it as a first login would, and from then on it counts."""
    hub, clock, events = makeHub(Settings(new_plugs="hold"))
    conn = FakeConnection(HOME)
    session = hub.login(conn, REAL)
    assert session is not None and conn.uris() == ["/loginReply"] and conn.disconnected is None
    session.received(m.Report(wattSeconds=3600, seconds=180))
    session.received(m.State(relay=False))
    assert kinds(events) == [h.PLUG_PENDING]
    assert hub.plugs() == [] and [p.id for p in hub.pending()] == [VICTIM]
    assert hub.energy(VICTIM).lifetime_wh == 0 and hub.status()["plugs_online"] == 0
    out: list[Any] = []
    hub.switch(VICTIM, True).addErrback(out.append)
    assert out[0].check(h.UnknownPlug)
    hub.login(FakeConnection(HOME), REAL)  # a reconnect while pending: still one pending event
    assert kinds(events) == [h.PLUG_PENDING]
    approved = hub.approve(VICTIM[:8])
    assert approved.id == VICTIM and hub.pending() == [] and [p.id for p in hub.plugs()] == [VICTIM]
    assert kinds(events)[1:] == [h.PLUG_NEW, h.ONLINE, h.RELAY]
    clock.advance(30)
    hub.login(FakeConnection(HOME), REAL).received(m.Report(wattSeconds=600, seconds=30))
    assert hub.energy(VICTIM).lifetime_wh == pytest.approx(600 / 3600)
    with pytest.raises(h.UnknownPlug):
        hub.approve("nothing-like-this")


def test_pending_plugs_are_bounded() -> None:
    """Beyond max_pending connected plugs waiting, new ids are refused; an offline one makes room."""
    hub, clock, events = makeHub(Settings(new_plugs="hold", max_pending=2))
    a, b, c = FakeConnection(), FakeConnection(), FakeConnection()
    sa = hub.login(a, m.Login(id="a"))
    hub.login(b, m.Login(id="b"))
    assert hub.login(c, m.Login(id="c")) is None and c.disconnected
    assert hub.stats["logins_refused_pending_full"] == 1
    sa.lost("gone")
    assert hub.login(FakeConnection(), m.Login(id="c")) is not None
    assert sorted(p.id for p in hub.pending()) == ["b", "c"]


def test_new_ids_per_minute_are_bounded_and_known_ids_never() -> None:
    """Only max_new_plugs_per_minute unknown ids get in per minute; the refused get in the next
    minute, and known ids always log in."""
    hub, clock, events = makeHub(Settings(max_new_plugs_per_minute=3))
    conns = {f"p{i}": FakeConnection() for i in range(5)}
    results = {pid: hub.login(conn, m.Login(id=pid)) for pid, conn in conns.items()}
    assert [pid for pid, s in results.items() if s is not None] == ["p0", "p1", "p2"]
    assert conns["p3"].disconnected and hub.stats["logins_refused_new_rate"] == 2
    for _ in range(10):
        assert hub.login(FakeConnection(), m.Login(id="p0")) is not None
    clock.advance(61)
    assert hub.login(FakeConnection(), m.Login(id="p3")) is not None
    assert hub.login(FakeConnection(), m.Login(id="p4")) is not None
    assert len(hub.plugs()) == 5


# -- the seam and the settings -------------------------------------------------------------------

@implementer(ISessionOwner)
class RecordingOwner:
    """An owner that records what a session asks of it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[Any, ...]] = []

    def count(self, counter: str) -> None:
        """Record the counter."""
        self.calls.append(("count", counter))

    def plugEvent(self, kind: str, plug: h.PlugState, at: float, **data: Any) -> None:
        """Record the event kind."""
        self.calls.append(("event", kind))

    def relayChanged(self, plug: h.PlugState, relay: bool | None, cause: str, at: float) -> None:
        """Record the relay and cause."""
        self.calls.append(("relay", relay, cause))

    def reported(self, plug: h.PlugState, peer: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Record the report."""
        self.calls.append(("report", peer, wattSeconds, seconds))

    def snapshot(self, plug: h.PlugState) -> h.PlugState:
        """The plug itself."""
        return plug

    def sessionEnded(self, session: Any, why: str, replaced: bool) -> None:
        """Record the end."""
        self.calls.append(("ended", why))


def test_a_session_needs_only_the_public_owner_interface() -> None:
    """A session runs against any ISessionOwner, with its timeouts from the Settings it is given."""
    clock = Clock()
    owner = RecordingOwner(clock)
    verifyObject(ISessionOwner, owner)
    verifyObject(ISessionOwner, Hub(clock))
    conn = FakeConnection(HOME)
    session = PlugSession(owner, conn, h.PlugState(id="x"), Settings(keepalive_idle=5, offline_after=9))
    session.received(m.Report(wattSeconds=10, seconds=2))
    session.received(m.State(relay=True))
    clock.advance(5)
    assert conn.uris() == ["/ka"]
    clock.advance(4)
    assert conn.disconnected and owner.calls == [("report", HOME, 10, 2), ("relay", True, h.CAUSE_BUTTON),
                                                 ("count", "liveness_timeouts"), ("ended", "silent for 9 s")]


def test_settings_are_validated_once_naming_the_option() -> None:
    """Out-of-range settings raise ValueError naming the option; fromOptions reads the option table."""
    with pytest.raises(ValueError, match="--offline-after .* must be longer than --keepalive-idle"):
        Settings(keepalive_idle=60, offline_after=50)
    with pytest.raises(ValueError, match="--new-plugs"):
        Settings(new_plugs="maybe")
    with pytest.raises(ValueError, match="--command-timeout"):
        Settings(command_timeout=0)
    with pytest.raises(ValueError, match="--max-new-plugs-per-minute"):
        Settings(max_new_plugs_per_minute=0)
    names = [row[0] for row in optParameters]
    assert names == ["keepalive-idle", "probe-interval", "offline-after", "command-timeout", "login-timeout",
                     "new-plugs", "max-new-plugs-per-minute"]
    config = {row[0]: row[2] for row in optParameters} | {"new-plugs": "hold", "offline-after": 300.0}
    settings = Settings.fromOptions(config)
    assert settings.new_plugs == "hold" and settings.offline_after == 300.0 and settings == Settings(
        new_plugs="hold", offline_after=300.0)


def test_ids_that_would_take_a_known_plugs_name_are_refused() -> None:
    """A new id that is a known id in other case, or the start of a known id, is refused: a user
    typing a victim's id or its prefix never reaches the newcomer."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), REAL)
    for squat, reason in ((VICTIM.upper(), "id_case"), (VICTIM[:8], "prefix"), (VICTIM[:1].upper(), "prefix")):
        conn = FakeConnection("192.0.2.66:5555")
        assert hub.login(conn, m.Login(id=squat)) is None and conn.disconnected
        assert hub.stats["logins_refused_" + reason] >= 1
    assert [p.id for p in hub.plugs()] == [VICTIM] and hub.get(VICTIM[:8]).id == VICTIM
    assert hub.login(FakeConnection(), m.Login(id=VICTIM + "-2")) is not None  # longer ids are other plugs


def test_a_refused_login_closes_the_websocket_without_a_reply() -> None:
    """Through the real plug server: a login refused by the hub gets no /loginReply, its connection
    is closed, and the frames after it in the same read are ignored."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from tests.test_ws import PLUG_REQUEST, frame, serverFrames
    from vesyncd.plugs import server as ws

    hub, clock, events = makeHub()
    hub.login(FakeConnection(), REAL)
    hub.rename(VICTIM, "Kettle2")
    factory = ws.PlugServerFactory(hub, reactor=clock)
    proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.66", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.66", 5555))
    proto.makeConnection(transport)
    proto.dataReceived(PLUG_REQUEST)
    transport.clear()
    proto.dataReceived(frame(json.dumps({"id": "kettle2", "relay": "open"}).encode())
                       + frame(json.dumps({"uri": "/report", "e": "fa0", "t": "1"}).encode()))
    texts = [payload for op, payload in serverFrames(transport.value()) if op == 1]
    assert texts == [] and transport.disconnecting
    assert hub.stats["logins_refused_alias"] == 1 and hub.stats["internal_errors"] == 0
    assert [p.id for p in hub.plugs()] == [VICTIM] and hub.stats["reports"] == 0


def test_a_forgotten_plug_no_longer_guards_its_names() -> None:
    """After forget, the id's prefix and the alias are free for a new plug again."""
    hub, clock, events = makeHub()
    hub.login(FakeConnection(), REAL)
    hub.rename(VICTIM, "Kettle2")
    hub.forget(VICTIM)
    assert hub.login(FakeConnection(), m.Login(id=VICTIM[:8])) is not None
    assert hub.login(FakeConnection(), m.Login(id="kettle2")) is not None
    assert sorted(p.id for p in hub.plugs()) == [VICTIM[:8], "kettle2"]


def test_approving_an_id_that_became_another_plugs_alias_is_refused() -> None:
    """A held id that a known plug was renamed to meanwhile cannot be approved until that changes."""
    hub, clock, events = makeHub(Settings(new_plugs="hold"))
    hub.login(FakeConnection(), m.Login(id="kettle"))
    hub.login(FakeConnection(), REAL)
    hub.approve(VICTIM)
    hub.rename(VICTIM, "Kettle")
    with pytest.raises(h.InvalidArgument, match="rename"):
        hub.approve("kettle")
    hub.rename(VICTIM, "Kettle 2")
    assert hub.approve("kettle").id == "kettle"
