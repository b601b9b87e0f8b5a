"""In-memory tests of who appears on MQTT and under which name: plugs held for approval never do
(issue 17), and aliases that cannot be topic names are logged once and listed for doctor (issue 18)."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from tests.fakes import FakeConnection
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt import tap as mqttTap
from vesyncd.mqtt.bridge import MQTTBridge
from vesyncd.mqtt.nodes import TopicNodes
from vesyncd.plugs import codec as m
from vesyncd.service import DaemonInfo

KNOWN = "2b8e1f5c-0000-4000-8000-000000000001"
OTHER = "2b8e1f5c-0000-4000-8000-000000000002"
HELD = "9c9c9c9c-0000-4000-8000-00000000dead"


class Publisher:
    """Keeps every message."""

    def __init__(self) -> None:
        """Nothing published yet."""
        self.log: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0, bulk: bool = False) -> None:
        """Keep the message."""
        self.log.append((topic, payload.encode() if isinstance(payload, str) else payload))

    def congested(self) -> bool:
        """Never congested."""
        return False

    def mentions(self, text: str) -> list[tuple[str, bytes]]:
        """Every message whose topic or payload names C{text}."""
        return [(t, p) for t, p in self.log if text in t or text.encode() in p]


def bridgeOver(hub: Hub) -> tuple[MQTTBridge, Publisher]:
    """A started, published bridge over C{hub}."""
    pub = Publisher()
    bridge = MQTTBridge(hub, pub, clock=hub.clock)
    bridge.start()
    bridge.publishAll()
    return bridge, pub


def logged() -> tuple[list[dict[str, Any]], Any]:
    """Start collecting log events; returns the list and the observer (to remove)."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    return events, events.append


def test_heldPlugNeverReachesMQTT() -> None:
    """A plug held for approval publishes nothing (no event, no state, no discovery) until it is approved."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = Hub(clock, Settings(new_plugs="hold"))
    bridge, pub = bridgeOver(hub)
    session = hub.login(FakeConnection(), m.Login(id=HELD, firmVersion="1.89", deviceName="x", relay=True))
    assert session is not None and [p.id for p in hub.pending()] == [HELD]
    session.received(m.State(relay=False))
    bridge.publishAll()
    bridge.message(f"vesyncd/{HELD}/relay/set", b"ON")
    assert pub.mentions(HELD) == []
    assert HELD not in bridge.nodes
    hub.approve(HELD)
    assert any(t == f"vesyncd/{HELD}/event" for t, _ in pub.mentions(HELD))
    assert pub.mentions(ha.configTopic("homeassistant", "switch", HELD, "relay"))


def collisions(plugs: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """The slug collisions among C{plugs} (id, alias)."""
    nodes = TopicNodes()
    nodes.reconcile(plugs)
    return nodes.collisions()


def test_slugCollisions_listed() -> None:
    """Aliases giving one slug, a slug that is another plug's id, and reserved words are collisions."""
    assert collisions([("a", "Desk Lamp"), ("b", "desk-lamp!"), ("c", "Desk_Lamp"), ("d", "Kettle")]) == [
        {"slug": "desk_lamp", "plugs": ["a", "c"]}]
    assert collisions([("a", "b"), ("b", None)]) == [{"slug": "b", "plugs": ["a", "b"]}]
    assert collisions([("a", "Status")]) == [{"slug": "status", "plugs": ["a"]}]
    assert collisions([("a", "A")]) == []  # a plug's alias may be its own id


def test_slugCollisionLoggedOnceAndFactForDoctor() -> None:
    """Two plugs named alike both use their ids, with one warning naming both, and the daemon fact lists them."""
    clock = Clock()
    hub = Hub(clock)
    for plugId in (KNOWN, OTHER):
        hub.login(FakeConnection(), m.Login(id=plugId, firmVersion="1.89", deviceName="x", relay=True))
    info = DaemonInfo()
    config = {"mqtt": "mqtt://127.0.0.1:1", "mqtt-ca": None, "mqtt-prefix": "vesyncd", "ha-discovery-prefix": "homeassistant",
              "no-ha-discovery": False, "mqtt-settings": None}
    mqtt = mqttTap.makeServices(service.MultiService(), hub, config, clock, info)
    assert mqtt is not None
    bridge = mqtt.bridge
    bridge.start()
    events, observer = logged()
    try:
        hub.rename(KNOWN, "Lamp")
        hub.rename(OTHER, "lamp!")
        bridge.publishAll()
        hub.rename(KNOWN, "LAMP")
    finally:
        globalLogPublisher.removeObserver(observer)
        bridge.stop()
    assert bridge.nodes == {KNOWN: KNOWN, OTHER: OTHER}
    warnings = [e for e in events if "cannot use the topic name" in e.get("log_format", "")]
    assert len(warnings) == 1
    assert KNOWN in warnings[0]["plugs"] and OTHER in warnings[0]["plugs"] and warnings[0]["slug"] == "lamp"
    assert info.facts["mqtt_slug_collisions"]() == [{"slug": "lamp", "plugs": sorted([KNOWN, OTHER])}]
    hub.rename(OTHER, "Kettle")
    bridge.start()
    bridge.publishAll()
    assert info.facts["mqtt_slug_collisions"]() == []
    assert bridge.nodes == {KNOWN: "lamp", OTHER: "kettle"}
    bridge.stop()
