"""In-memory tests of the MQTT bridge: discovery payloads, topic names, command parsing, URL
parsing, the pending-publish bound, and the bridge driven by a real hub on a L{Clock}."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock

from tests.fakes import FakeConnection
from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.plugs import codec as m
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt.bridge import BadCommand, MQTTBridge, parseRelayCommand, validPrefix
from vesyncd.mqtt.nodes import TopicNodes
from vesyncd.mqtt.outbox import PendingPublishes
from vesyncd.mqtt.settings import MQTTConfigError, backoffDelay, parseBrokerURL

PLUG = "2b8e1f5c-0000-4000-8000-000000000001"
LOGIN = m.Login(id=PLUG, firmVersion="1.89", deviceName="vesync_wifi_outlet", deviceVersion="1.5", relay=True)


class FakePublisher:
    """Keeps every publish and the latest retained payload per topic."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes]] = []
        self.retained: dict[str, bytes] = {}

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0,
                bulk: bool = False) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.log.append((topic, data))
        if retain:
            self.retained[topic] = data

    def congested(self) -> bool:
        return False

    def json(self, topic: str) -> Any:
        return json.loads(self.retained[topic])


def makeBridge(**kw: Any) -> tuple[Hub, MQTTBridge, FakePublisher, Clock]:
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = Hub(clock)
    publisher = FakePublisher()
    bridge = MQTTBridge(hub, publisher, **kw)
    bridge.start()
    bridge.publishAll()
    return hub, bridge, publisher, clock


# -- command parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload,expected", [
    (b"ON", True), (b"on", True), (b" On\n", True), (b"1", True), (b"true", True), (b"TRUE", True),
    (b"OFF", False), (b"off", False), (b"0", False), (b"False", False),
    (b"TOGGLE", None), (b"toggle", None),
])
def test_parseRelayCommand_accepts(payload: bytes, expected: bool | None) -> None:
    """Every documented command word is accepted in any case."""
    assert parseRelayCommand(payload) is expected


@pytest.mark.parametrize("payload", [b"", b"open", b"break", b"2", b"yes", b"\xff\xfe", b"ON" * 100, b"{}"])
def test_parseRelayCommand_refuses(payload: bytes) -> None:
    """Anything else, including the protocol's own words and oversized payloads, is refused."""
    with pytest.raises(BadCommand):
        parseRelayCommand(payload)


# -- names -------------------------------------------------------------------------------------

def test_slugify() -> None:
    """Aliases become lower-case [a-z0-9_-] topic levels."""
    assert ha.slugify("Living Room Lamp!") == "living_room_lamp"
    assert ha.slugify("Küche / Kaffee+#") == "k_che_kaffee"
    assert ha.slugify("++") == ""
    assert ha.slugify(None) == ""
    assert len(ha.slugify("x" * 200)) <= ha.MAX_SLUG


def test_topicNodes_collisions_fall_back_to_ids() -> None:
    """Colliding slugs, reserved words and slugs equal to another id use the plug id."""
    nodes = TopicNodes()
    nodes.reconcile([("a1", "Lamp"), ("b2", "lamp!"), ("c3", "Fan"), ("d4", None), ("e5", "Status"), ("f6", "a1")])
    assert nodes.nodes == {"a1": "a1", "b2": "b2", "c3": "fan", "d4": "d4", "e5": "e5", "f6": "f6"}


def test_safeId_hashes_unsafe_ids() -> None:
    """An id with topic wildcards or slashes never reaches a topic."""
    assert ha.safeId(PLUG) == PLUG
    unsafe = ha.safeId("a/b+#")
    assert unsafe.startswith("plug_") and "/" not in unsafe and unsafe == ha.safeId("a/b+#")


def test_validPrefix() -> None:
    """Prefixes have no wildcards and no empty levels."""
    assert validPrefix("vesyncd") and validPrefix("home/vesyncd")
    for bad in ("", "/vesyncd", "vesyncd/", "a//b", "a/+", "#", "x" * 65):
        assert not validPrefix(bad)


# -- discovery payloads ------------------------------------------------------------------------

def test_plugConfigs_fields() -> None:
    """The switch and sensors carry what HA needs, with unique ids from the plug id."""
    plug = h.PlugState(id=PLUG, alias="Desk", firmware="1.89",
                       device={"deviceName": "vesync_wifi_outlet", "deviceVersion": "1.5"})
    configs = ha.plugConfigs(plug, "desk", prefix="vesyncd", discoveryPrefix="homeassistant")
    assert set(configs) == set(ha.plugConfigTopics("homeassistant", PLUG))
    switch = configs[f"homeassistant/switch/vesyncd/{PLUG}_relay/config"]
    assert switch["unique_id"] == f"vesyncd_{PLUG}_relay"
    assert switch["command_topic"] == "vesyncd/desk/relay/set"
    assert switch["state_topic"] == "vesyncd/desk/relay"
    assert switch["device_class"] == "outlet"
    assert switch["availability"] == [{"topic": "vesyncd/status"}, {"topic": "vesyncd/desk/availability"}]
    assert switch["availability_mode"] == "all"
    assert switch["device"] == {
        "identifiers": [f"vesyncd_{PLUG}"], "name": "Desk", "manufacturer": "Etekcity", "model": "ESW01",
        "model_id": "vesync_wifi_outlet", "sw_version": "1.89", "hw_version": "1.5",
        "via_device": "vesyncd_bridge_vesyncd"}
    sensors = {topic.split("/")[3].split("_", 1)[1]: c for topic, c in configs.items() if "/sensor/" in topic}
    assert sensors["power"]["unit_of_measurement"] == "W"
    assert (sensors["energy"]["device_class"], sensors["energy"]["state_class"]) == ("energy", "total_increasing")
    assert "energy_lifetime_kwh" in sensors["energy"]["value_template"]
    assert "energy_today_kwh" in sensors["energy_today"]["value_template"]
    assert sensors["energy_today"]["state_class"] == "total_increasing"
    assert sensors["voltage"]["unit_of_measurement"] == "V"
    assert sensors["rssi"]["entity_category"] == "diagnostic"
    assert sensors["last_seen"]["device_class"] == "timestamp"
    for config in configs.values():
        assert config["unique_id"].startswith(f"vesyncd_{PLUG}_")
        json.dumps(config)  # serialisable


def test_bridgeConfig() -> None:
    """The bridge device is a connectivity sensor on the status topic."""
    topic, config = ha.bridgeConfig("vesyncd", "homeassistant")
    assert topic == "homeassistant/binary_sensor/vesyncd/vesyncd_bridge_vesyncd_status/config"
    assert config["state_topic"] == "vesyncd/status"
    assert config["device"]["identifiers"] == ["vesyncd_bridge_vesyncd"]


# -- broker URL, backoff, pending --------------------------------------------------------------

def test_parseBrokerURL() -> None:
    """URLs give host, port, TLS and credentials; the password never shows in descriptions."""
    s = parseBrokerURL("mqtt://bob:s%3Acret@broker.lan")
    assert (s.host, s.port, s.tls, s.username, s.password) == ("broker.lan", 1883, False, "bob", "s:cret")
    assert "cret" not in s.describe() and "cret" not in repr(s)
    t = parseBrokerURL("mqtts://broker.lan:8884", "/etc/ca.pem")
    assert (t.port, t.tls, t.caFile) == (8884, True, "/etc/ca.pem")
    assert parseBrokerURL("mqtts://h").port == 8883


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:99999", "mqtt://h/path", "mqtt://:pw@h",
                                 "mqtt://u:hunter2@h:x"])
def test_parseBrokerURL_refuses(url: str) -> None:
    """Malformed URLs are refused without echoing the password."""
    with pytest.raises(MQTTConfigError) as e:
        parseBrokerURL(url)
    assert "hunter2" not in str(e.value)


def test_ca_needs_tls() -> None:
    """A CA file makes sense only with mqtts://."""
    with pytest.raises(MQTTConfigError):
        parseBrokerURL("mqtt://h", "/ca.pem")


def test_backoff_doubles_capped_jittered() -> None:
    """Delays double from the minimum, stop at the cap, and are jittered into [half, full]."""
    top = lambda a, b: b  # noqa: E731
    assert [backoffDelay(n, 1, 60, top) for n in (1, 2, 3, 7, 50)] == [1, 2, 4, 60, 60]
    assert backoffDelay(3, 1, 60, lambda a, b: a) == 2


def test_pending_keeps_latest_per_topic_bounded() -> None:
    """Only the latest payload per topic is kept, and at most C{limit} topics."""
    pending = PendingPublishes(limit=3)
    for i in range(10):
        pending.put("a", str(i).encode())
    assert pending.drain() == [("a", b"9")]
    for topic in "abcde":
        pending.put(topic, b"x")
    assert len(pending) == 3 and pending.dropped == 2
    assert [t for t, _ in pending.drain()] == ["c", "d", "e"]


# -- the bridge with a real hub ----------------------------------------------------------------

def test_bridge_publishes_plug_lifecycle() -> None:
    """Login, relay change, offline: retained topics follow; status is online."""
    hub, bridge, pub, clock = makeBridge()
    assert pub.retained["vesyncd/status"] == b"online"
    conn = FakeConnection()
    session = hub.login(conn, LOGIN)
    assert pub.retained[f"vesyncd/{PLUG}/availability"] == b"online"
    assert pub.retained[f"vesyncd/{PLUG}/relay"] == b"ON"
    assert pub.json(f"homeassistant/switch/vesyncd/{PLUG}_relay/config")["device"]["sw_version"] == "1.89"
    session.received(m.State(relay=False))
    assert pub.retained[f"vesyncd/{PLUG}/relay"] == b"OFF"
    assert pub.json(f"vesyncd/{PLUG}/state")["relay_cause"] == "button"
    session.lost("gone")
    assert pub.retained[f"vesyncd/{PLUG}/availability"] == b"offline"
    assert pub.json(f"vesyncd/{PLUG}/state")["online"] is False


def test_bridge_relay_set_commands_hub() -> None:
    """relay/set sends the plug a relay command; bad, retained and unknown commands are ignored."""
    hub, bridge, pub, clock = makeBridge()
    conn = FakeConnection()
    hub.login(conn, LOGIN)
    before = len(conn.sent)
    bridge.message(f"vesyncd/{PLUG}/relay/set", b"nonsense")
    bridge.message(f"vesyncd/{PLUG}/relay/set", b"OFF", retained=True)
    bridge.message("vesyncd/nobody/relay/set", b"OFF")
    bridge.message("vesyncd/x/y/relay/set", b"OFF")
    assert len(conn.sent) == before
    bridge.message(f"vesyncd/{PLUG}/relay/set", b"off")
    assert conn.sent[-1]["uri"] == "/relay"
    clock.advance(hub.settings.command_timeout + 1)  # the timeout is logged, not raised


def test_bridge_alias_moves_topics_and_keeps_ids() -> None:
    """An alias moves state topics to the slug (old ones cleared); config topics and ids stay."""
    hub, bridge, pub, clock = makeBridge()
    hub.login(FakeConnection(), LOGIN)
    config = f"homeassistant/switch/vesyncd/{PLUG}_relay/config"
    hub.rename(PLUG, "Desk Lamp")
    for leaf in ("availability", "relay", "state"):
        assert pub.retained[f"vesyncd/{PLUG}/{leaf}"] == b""
    assert pub.retained["vesyncd/desk_lamp/relay"] == b"ON"
    doc = pub.json(config)
    assert doc["unique_id"] == f"vesyncd_{PLUG}_relay"
    assert doc["command_topic"] == "vesyncd/desk_lamp/relay/set"
    assert doc["device"]["name"] == "Desk Lamp"
    assert bridge._plugForNode("desk_lamp") == PLUG
    assert bridge._plugForNode(PLUG) == PLUG


def test_bridge_forget_clears_everything() -> None:
    """A forgotten plug's configs and topics get empty retained payloads."""
    hub, bridge, pub, clock = makeBridge()
    hub.login(FakeConnection(), LOGIN)
    hub.forget(PLUG)
    for topic in ha.plugConfigTopics("homeassistant", PLUG):
        assert pub.retained[topic] == b""
    assert pub.retained[f"vesyncd/{PLUG}/state"] == b""
    assert PLUG not in bridge.nodes


def test_bridge_ha_birth_republishes_and_no_discovery_flag() -> None:
    """HA's live 'online' republishes configs; with discovery off, none are published."""
    hub, bridge, pub, clock = makeBridge()
    hub.login(FakeConnection(), LOGIN)
    pub.log.clear()
    bridge.message("homeassistant/status", b"online", retained=True)
    assert pub.log == []
    bridge.message("homeassistant/status", b"online")
    assert any(t.endswith("_relay/config") for t, _ in pub.log)

    hub2, bridge2, pub2, _ = makeBridge(discovery=False)
    hub2.login(FakeConnection(), LOGIN)
    assert not any(t.startswith("homeassistant/") for t in pub2.retained)
    assert bridge2.subscriptions == ["vesyncd/+/relay/set"]


# -- options -----------------------------------------------------------------------------------

def test_tap_options() -> None:
    """--mqtt is off by default; bad values stop start-up with a line that hides the password."""
    from twisted.python import usage

    from vesyncd import tap

    config = tap.Options()
    config.parseOptions(["--state-dir", "/tmp/unused"])
    assert config["mqtt"] is None and config["mqtt-settings"] is None
    assert (config["mqtt-prefix"], config["ha-discovery-prefix"]) == ("vesyncd", "homeassistant")
    config = tap.Options()
    config.parseOptions(["--state-dir", "/tmp/unused", "--mqtt", "mqtt://u:pw@127.0.0.1:1884", "--no-ha-discovery"])
    assert config["mqtt-settings"].port == 1884 and config["no-ha-discovery"]
    for argv in (["--mqtt", "ftp://u:hunter2@h"], ["--mqtt-ca", "/nonexistent"], ["--mqtt-prefix", "/x"],
                 ["--mqtt", "mqtts://h", "--mqtt-ca", "/nonexistent/ca.pem"]):
        with pytest.raises(usage.UsageError) as e:
            tap.Options().parseOptions(["--state-dir", "/tmp/unused", *argv])
        assert "hunter2" not in str(e.value)
