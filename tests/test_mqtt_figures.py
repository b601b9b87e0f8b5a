"""In-memory tests of the MQTT bridge's automation and energy figures (issues 15 and 16): relay/set with
"for", the automation and energy topics, their Home Assistant entities (templates rendered as Home
Assistant would), how often energy is read, and the bounds of the sweeps."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.fakes import FakeConnection
from vesyncd.automation.parse import AutomationError
from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt.bridge import MQTTBridge
from vesyncd.mqtt.commands import BadCommand, RelayCommand, parseCommand
from vesyncd.mqtt.figures import AUTOMATION_SWEEP, MAX_IN_FLIGHT, energyView
from vesyncd.plugs import codec as m

jinja2 = pytest.importorskip("jinja2.sandbox")

PLUG = "2b8e1f5c-0000-4000-8000-000000000001"
BERLIN = ZoneInfo("Europe/Berlin")
#: Wed 2 Dec 2026 13:10:00 in Berlin.
NOW = datetime(2026, 12, 2, 13, 10, tzinfo=BERLIN).timestamp()
PERIODS = {"today_wh": 412.5, "yesterday_wh": 1830.0, "week_wh": 2242.5, "month_wh": 2242.5, "year_wh": 803112.0,
           "lifetime_wh": 900000.0, "currency": "EUR", "today_cost": 0.1238, "yesterday_cost": 0.549,
           "week_cost": 0.6728, "month_cost": 0.6728, "year_cost": 240.93}
BASELINE = {"baseline_w": 8.0, "baseline_hours": 168.0, "baseline_yearly_kwh": 70.128, "baseline_yearly_cost": 21.0384,
            "currency": "EUR"}


def render(template: str, doc: Any) -> str:
    """A template rendered as Home Assistant does for an MQTT message carrying C{doc}."""
    env = jinja2.ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value_json=doc, value=json.dumps(doc))


class FakeAutomation:
    """The automation engine's MQTT-facing methods over a real hub, with answers set by the test."""

    def __init__(self, hub: Hub) -> None:
        """Over C{hub}, with no next actions and no rules."""
        self.hub = hub
        self.next: dict[str, dict[str, Any] | None] = {}
        self.rules: dict[str, list[dict[str, Any]]] = {}
        self.asked: list[tuple[str, bool, Any]] = []
        self.reads = 0

    def nextAction(self, plug: str) -> dict[str, Any] | None:
        """The next action the test set (counted)."""
        self.reads += 1
        return self.next.get(plug)

    def rulesOf(self, plug: str | None = None) -> list[dict[str, Any]]:
        """The rules the test set."""
        return list(self.rules.get(plug or "", []))

    def switchFor(self, plug: str, on: Any, seconds: Any) -> Deferred:
        """Record the countdown and switch through the hub; "8d" is refused as the engine would."""
        if seconds == "8d":
            raise AutomationError("--for", "at most 7 days")
        self.asked.append((plug, on, seconds))
        return self.hub.switch(plug, on).addCallback(lambda _: {"plug": plug})


class FakeInsight:
    """Energy insight answering from fixed figures; C{hold} keeps the answers back until L{answer}."""

    def __init__(self, currency: str | None = "EUR") -> None:
        """Answering at once, in C{currency}."""
        self.currency = currency
        self.zone = BERLIN
        self.asked: list[str] = []
        self.hold = False
        self.waiting: list[Deferred] = []

    def periods(self, plugId: str) -> Deferred:
        """The fixed periods, at once or (with C{hold}) when answered."""
        self.asked.append(plugId)
        if self.hold:
            self.waiting.append(Deferred())
            return self.waiting[-1]
        return succeed(dict(PERIODS))

    def answer(self, count: int) -> None:
        """Answer the C{count} oldest waiting reads."""
        for d in self.waiting[:count]:
            d.callback(dict(PERIODS))
        del self.waiting[:count]

    def baseline(self, plugId: str) -> dict[str, Any]:
        """The fixed baseline."""
        return dict(BASELINE)


class Publisher:
    """Keeps every message and the latest retained payload per topic."""

    def __init__(self) -> None:
        """Nothing published yet."""
        self.log: list[tuple[str, bytes, bool]] = []
        self.retained: dict[str, bytes] = {}

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0, bulk: bool = False) -> None:
        """Keep the message."""
        data = payload.encode() if isinstance(payload, str) else payload
        self.log.append((topic, data, retain))
        if retain:
            self.retained[topic] = data

    def congested(self) -> bool:
        """Never congested."""
        return False

    def json(self, topic: str) -> Any:
        """The retained payload of C{topic} as JSON (None when absent or cleared)."""
        return json.loads(self.retained[topic]) if self.retained.get(topic) else None


def makeBridge(automation: bool = True, insight: FakeInsight | None = None, **kw: Any
               ) -> tuple[Hub, MQTTBridge, Publisher, Clock, FakeAutomation]:
    """A started bridge over a real hub on a clock at L{NOW}."""
    clock = Clock()
    clock.advance(NOW)
    hub = Hub(clock, **kw)
    engine = FakeAutomation(hub)
    pub = Publisher()
    bridge = MQTTBridge(hub, pub, clock=clock, automation=engine if automation else None, insight=insight)
    bridge.start()
    bridge.publishAll()
    return hub, bridge, pub, clock, engine


def login(hub: Hub, plugId: str = PLUG, relay: bool = False) -> Any:
    """Log a plug in over a fake connection; returns its session."""
    return hub.login(FakeConnection(), m.Login(id=plugId, firmVersion="1.89", deviceName="x", relay=relay))


def config(pub: Publisher, component: str, obj: str, plugId: str = PLUG) -> Any:
    """The retained discovery payload of one entity (None when absent or cleared)."""
    return pub.json(ha.configTopic("homeassistant", component, plugId, obj))


# -- relay/set with "for" ------------------------------------------------------------------------

@pytest.mark.parametrize("payload,expected", [
    (b'{"state": "ON", "for": 1800}', RelayCommand(True, 1800.0)),
    (b'{"state": "off", "for": "30m"}', RelayCommand(False, "30m")),
    (b' {"state": "TOGGLE", "for": 2.5}', RelayCommand(None, 2.5)),
    (b'{"state": true}', RelayCommand(True, None)),
    (b'{"state": "ON", "for": null}', RelayCommand(True, None)),
    (b"ON", RelayCommand(True, None)),
])
def test_parseCommand_accepts(payload: bytes, expected: RelayCommand) -> None:
    """Words and JSON objects with a state and an optional duration are commands."""
    assert parseCommand(payload) == expected


@pytest.mark.parametrize("payload", [
    b'{"state": "ON", "for": true}', b'{"state": "ON", "for": [1]}', b'{"for": 10}', b'{"state": "ON", "x": 1}',
    b'{"state": "DIM"}', b'{"state": 1}', b'{"state": "ON", "for": ""}', b'{"state": "ON", "for": "1\\u001b[2J"}',
    b'{"state": "ON", "for": "' + b"9" * 40 + b'"}', b"{" + b" " * 200 + b"}", b'{"state": "ON"', b"[1]",
    b"{" * 100, b'{"state": "\xff"}',
])
def test_parseCommand_refuses(payload: bytes) -> None:
    """Other keys, wrong types, bad durations, broken or overlong JSON are refused."""
    with pytest.raises(BadCommand):
        parseCommand(payload)


def test_relaySetFor_goesThroughTheCountdown() -> None:
    """A command with "for" is the engine's switchFor (toggle reads the relay); a refused one switches nothing."""
    hub, bridge, pub, clock, engine = makeBridge()
    conn = FakeConnection()
    hub.login(conn, m.Login(id=PLUG, firmVersion="1.89", deviceName="x", relay=False))
    bridge.message(f"vesyncd/{PLUG}/relay/set", b'{"state": "ON", "for": 1800}')
    assert engine.asked == [(PLUG, True, 1800.0)]
    assert conn.sent[-1]["uri"] == "/relay"
    bridge.message(f"vesyncd/{PLUG}/relay/set", b'{"state": "TOGGLE", "for": "30m"}')
    assert engine.asked[-1] == (PLUG, True, "30m")  # the relay is still off: toggling means on
    sent = len(conn.sent)
    bridge.message(f"vesyncd/{PLUG}/relay/set", b'{"state": "ON", "for": "8d"}')
    bridge.message(f"vesyncd/{PLUG}/relay/set", b'{"state": "ON", "for": 10}', retained=True)
    assert len(conn.sent) == sent and len(engine.asked) == 2
    clock.advance(hub.settings.command_timeout + 1)  # unanswered: the timeout is logged, not raised


def test_relaySetFor_withoutAutomationIsIgnored() -> None:
    """Without the automation engine a command with "for" is refused (logged), and nothing is switched."""
    hub, bridge, pub, clock, engine = makeBridge(automation=False)
    conn = FakeConnection()
    hub.login(conn, m.Login(id=PLUG, firmVersion="1.89", deviceName="x", relay=False))
    sent = len(conn.sent)
    bridge.message(f"vesyncd/{PLUG}/relay/set", b'{"state": "ON", "for": 60}')
    assert len(conn.sent) == sent
    bridge.message(f"vesyncd/{PLUG}/relay/set", b'{"state": "ON"}')
    assert conn.sent[-1]["uri"] == "/relay"


# -- the automation topic and entities ---------------------------------------------------------

def test_automationTopicAndEntities() -> None:
    """The next action, "running" and rule firings reach MQTT and HA's entities render them as HA expects."""
    hub, bridge, pub, clock, engine = makeBridge()
    engine.next[PLUG] = {"switch": "off", "at": "2026-12-02T18:30:00+01:00", "ts": NOW + 19200, "cause": "schedule:s1a2b3c"}
    login(hub)
    topic = f"vesyncd/{PLUG}/automation"
    doc = pub.json(topic)
    assert doc == {"next": engine.next[PLUG], "running": None, "rules": 0}
    time, switch = config(pub, "sensor", "next_action"), config(pub, "sensor", "next_switch")
    assert time["device_class"] == "timestamp" and time["state_topic"] == topic
    assert render(time["value_template"], doc) == "2026-12-02T18:30:00+01:00"
    assert render(time["value_template"], {"next": None}) == "None"  # HA: unknown
    assert json.loads(render(time["json_attributes_template"], doc)) == {"switch": "off", "cause": "schedule:s1a2b3c"}
    assert render(switch["value_template"], doc) == "off" and "off" in switch["options"]
    assert render(switch["value_template"], {"next": None}) in switch["options"]
    # No rules yet: no running sensor, no rule event entity (cleared, in case an older run made them).
    assert config(pub, "binary_sensor", "running") is None and config(pub, "event", "rule") is None

    engine.rules[PLUG] = [{"id": "r08b2de", "when": "done_below", "enabled": True, "running": False}]
    clock.advance(AUTOMATION_SWEEP)  # a rule added from the control port is seen by the sweep
    running = config(pub, "binary_sensor", "running")
    assert running["device_class"] == "running" and render(running["value_template"], pub.json(topic)) == "OFF"
    engine.rules[PLUG][0]["running"] = True
    hub.announce("rule_running", PLUG, rule="r08b2de", running=True)
    assert pub.json(topic)["running"] is False  # read on the next turn: the engine settles after its event
    clock.advance(0)
    assert pub.json(topic)["running"] is True and render(running["value_template"], pub.json(topic)) == "ON"

    event = config(pub, "event", "rule")
    assert event["state_topic"] == f"vesyncd/{PLUG}/event" and set(event["event_types"]) == {"on", "off", "notify"}
    hub.announce("rule", PLUG, rule="r08b2de", power_w=3.5, action="notify", ok=True)
    fired = [json.loads(p) for t, p, retain in pub.log if t == f"vesyncd/{PLUG}/event" and not retain][-1]
    assert fired["event"] == "rule" and fired["data"]["rule"] == "r08b2de"
    assert json.loads(render(event["value_template"], fired)) == {"event_type": "notify", "rule": "r08b2de",
                                                                   "power_w": 3.5, "ok": True}
    relay = [json.loads(p) for t, p, _ in pub.log if t.endswith("/event") and json.loads(p)["event"] == "online"][-1]
    assert render(event["value_template"], relay).strip() == ""  # other events: HA skips an empty rendering

    engine.rules[PLUG] = []
    clock.advance(AUTOMATION_SWEEP)
    assert pub.retained[ha.configTopic("homeassistant", "binary_sensor", PLUG, "running")] == b""


def test_automationTopicPublishesOnlyChanges() -> None:
    """A sweep with nothing new publishes nothing; a relay change re-reads the next action at once."""
    hub, bridge, pub, clock, engine = makeBridge()
    session = login(hub)
    pub.log.clear()
    clock.advance(AUTOMATION_SWEEP)
    assert pub.log == []
    engine.next[PLUG] = {"switch": "off", "at": "2026-12-02T13:40:00+01:00", "ts": NOW + 1800, "cause": "timer"}
    session.received(m.State(relay=True))
    clock.advance(0)
    assert pub.json(f"vesyncd/{PLUG}/automation")["next"]["cause"] == "timer"
    assert pub.json(f"vesyncd/{PLUG}/state")["relay_cause"] == "button"


def test_switchShowsTheCause() -> None:
    """The switch entity takes the last switch's cause as an attribute from the state document."""
    hub, bridge, pub, clock, engine = makeBridge()
    session = login(hub)
    session.received(m.State(relay=True))
    switch = config(pub, "switch", "relay")
    assert json.loads(render(switch["json_attributes_template"], pub.json(switch["json_attributes_topic"]))) == {
        "cause": "button"}


# -- energy figures ----------------------------------------------------------------------------

def test_energyTopicAndEntities() -> None:
    """Periods, costs and the baseline reach HA with the state classes HA accepts and the period starts."""
    insight = FakeInsight()
    hub, bridge, pub, clock, engine = makeBridge(automation=False, insight=insight)
    login(hub)
    doc = pub.json(f"vesyncd/{PLUG}/energy")
    assert doc["week_wh"] == 2242.5 and doc["baseline_w"] == 8.0
    assert doc["last_reset"] == {"today": "2026-12-02T00:00:00+01:00", "week": "2026-11-30T00:00:00+01:00",
                                 "month": "2026-12-01T00:00:00+01:00", "year": "2026-01-01T00:00:00+01:00"}
    expect = {"energy_yesterday": ("energy", None, "kWh", "1.83"), "energy_week": ("energy", "total_increasing", "kWh", "2.2425"),
              "energy_month": ("energy", "total_increasing", "kWh", "2.2425"),
              "energy_year": ("energy", "total_increasing", "kWh", "803.112"),
              "baseline_power": ("power", "measurement", "W", "8.0"),
              "cost_today": ("monetary", "total", "EUR", "0.1238"), "cost_yesterday": ("monetary", None, "EUR", "0.549"),
              "cost_week": ("monetary", "total", "EUR", "0.6728"), "cost_month": ("monetary", "total", "EUR", "0.6728"),
              "cost_year": ("monetary", "total", "EUR", "240.93"),
              "baseline_cost": ("monetary", None, "EUR", "21.0384")}
    for obj, (deviceClass, stateClass, unit, value) in expect.items():
        entity = config(pub, "sensor", obj)
        assert (entity["device_class"], entity.get("state_class"), entity["unit_of_measurement"]) == (
            deviceClass, stateClass, unit), obj
        assert render(entity["value_template"], doc) == value, obj
        assert entity["availability"] == [{"topic": "vesyncd/status"}]
        if stateClass == "total":
            period = obj.split("_")[1]
            assert render(entity["last_reset_value_template"], doc) == doc["last_reset"][period]
    # The lifetime counter stays the never-resetting total_increasing sensor from the state document.
    assert config(pub, "sensor", "energy")["state_class"] == "total_increasing"
    assert render(config(pub, "sensor", "energy_week")["value_template"], dict(doc, week_wh=None)) == "None"


def test_energyWithoutTariffHasNoCostEntities() -> None:
    """Without a currency the cost entities are cleared, the energy ones stay."""
    hub, bridge, pub, clock, engine = makeBridge(automation=False, insight=FakeInsight(currency=None))
    login(hub)
    assert config(pub, "sensor", "cost_today") is None
    assert pub.retained[ha.configTopic("homeassistant", "sensor", PLUG, "cost_today")] == b""
    assert config(pub, "sensor", "energy_week")["state_class"] == "total_increasing"


def test_energyReadOncePerHour() -> None:
    """A plug's figures are read when it first appears and once after each hour turns, not on its events."""
    insight = FakeInsight()
    hub, bridge, pub, clock, engine = makeBridge(automation=False, insight=insight)
    session = login(hub)
    assert insight.asked == [PLUG]
    session.received(m.State(relay=True))
    session.lost("gone")
    login(hub)
    bridge.publishAll()
    assert insight.asked == [PLUG]
    clock.advance(50 * 60 + 5 + 1)  # 14:00:06, just after the hour turned
    assert insight.asked == [PLUG, PLUG]


def test_energySweepIsBoundedAndSliced() -> None:
    """With hundreds of plugs the hourly sweep has at most MAX_IN_FLIGHT reads waiting and goes on as they answer."""
    insight = FakeInsight()
    plugs = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(300)]
    clock = Clock()
    clock.advance(NOW)
    hub = Hub(clock, known=[h.PlugState(id=p) for p in plugs])
    pub = Publisher()
    bridge = MQTTBridge(hub, pub, clock=clock, insight=insight)
    bridge.start()
    insight.hold = True

    def answerAll() -> None:
        for _ in range(20):
            clock.advance(0)
        assert 0 < len(insight.waiting) <= MAX_IN_FLIGHT
        while insight.waiting:
            insight.answer(MAX_IN_FLIGHT)
            for _ in range(5):
                clock.advance(0)
            assert len(insight.waiting) <= MAX_IN_FLIGHT

    bridge.publishAll()  # every plug's first read
    answerAll()
    assert sorted(insight.asked) == sorted(plugs)
    assert all(pub.json(f"vesyncd/{p}/energy") for p in plugs)
    clock.advance(3600)  # the hour turned: the sweep reads every plug again, as boundedly
    answerAll()
    assert sorted(insight.asked) == sorted(plugs * 2)


def test_energyReadFailureIsLogged() -> None:
    """A failed read publishes nothing and stops nothing."""
    insight = FakeInsight()
    insight.periods = lambda plugId: fail(RuntimeError("database gone"))  # type: ignore[method-assign]
    hub, bridge, pub, clock, engine = makeBridge(automation=False, insight=insight)
    login(hub)
    assert f"vesyncd/{PLUG}/energy" not in pub.retained
    assert pub.retained[f"vesyncd/{PLUG}/relay"] == b"OFF"


def test_energyView_lastReset_dst() -> None:
    """The period starts carry the offset in force then (CEST for a summer week's Monday)."""
    now = datetime(2026, 10, 26, 12, 0, tzinfo=BERLIN).timestamp()  # Monday after the fall-back Sunday
    doc = energyView(PERIODS, BASELINE, now, BERLIN)
    assert doc["last_reset"]["today"] == "2026-10-26T00:00:00+01:00"
    assert doc["last_reset"]["month"] == "2026-10-01T00:00:00+02:00"


def test_forgetClearsFigureEntities() -> None:
    """Forgetting a plug clears its automation and energy topics and entities."""
    hub, bridge, pub, clock, engine = makeBridge(insight=FakeInsight())
    login(hub)
    hub.forget(PLUG)
    for topic in ha.plugConfigTopics("homeassistant", PLUG, figures=True):
        assert pub.retained.get(topic, b"") == b""
    assert pub.retained[f"vesyncd/{PLUG}/automation"] == b"" and pub.retained[f"vesyncd/{PLUG}/energy"] == b""


def test_fullRepublishSendsEveryFigureTopicAgain() -> None:
    """Home Assistant's restart (a full republish) sends the automation and energy topics and their
    entities again although nothing changed, and entities already cleared stay cleared (not sent
    again); between republishes an unchanged figure is not sent twice."""
    insight = FakeInsight()
    hub, bridge, pub, clock, engine = makeBridge(insight=insight)
    login(hub)
    clock.advance(0)
    figureTopics = {f"vesyncd/{PLUG}/automation", f"vesyncd/{PLUG}/energy",
                    ha.configTopic("homeassistant", "sensor", PLUG, "energy_week")}
    assert figureTopics <= set(pub.retained)
    cleared = {t for t, p, _ in pub.log if p == b"" and t.startswith("homeassistant/")}
    assert cleared  # entities the plug does not have (no schedule, say)
    pub.log.clear()
    bridge.figures.refreshAutomation(PLUG)
    assert [t for t, _, _ in pub.log if t in figureTopics] == []
    bridge.message("homeassistant/status", b"online")
    for _ in range(5):
        clock.advance(0)
    sent = [t for t, _, _ in pub.log]
    assert figureTopics <= set(sent)
    assert not cleared & set(sent)
