"""Integration tests of the MQTT bridge against a real mosquitto on loopback, with simulated plugs.

The daemon runs in-process on the real reactor, built by C{tap.makeService} with C{--mqtt}; a
paho client in its own thread watches every topic as Home Assistant would.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.mqtt_helpers import MOSQUITTO, SKIP_REASON, Broker, Daemon, Watcher, startBrokerAndWatcher, waitFor
from vesyncd.mqtt import discovery as ha

HA = "homeassistant"


class BridgeAgainstBroker(unittest.TestCase):
    """The bridge, a broker and simulated plugs, end to end."""

    if MOSQUITTO is None:
        skip = SKIP_REASON

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.broker, self.stateDir, self.watcher = yield startBrokerAndWatcher(self)
        self.daemon = yield self.startDaemon()

    @inlineCallbacks
    def startDaemon(self, plugs: int = 2) -> Any:
        daemon = Daemon(self.broker.port, self.stateDir)
        self.addCleanup(daemon.stop)
        yield daemon.start(plugs)
        return daemon

    def sim(self, index: int) -> Any:
        return self.daemon.sim.plugs[index]

    def configTopic(self, plugId: str, component: str, obj: str) -> str:
        return ha.configTopic(HA, component, plugId, obj)

    @inlineCallbacks
    def test_discoveryPayloads(self) -> Any:
        """Each plug gets a device with a switch and sensors HA can use, available via bridge and plug."""
        plug = self.sim(0)
        switch = yield self.watcher.waitJSON(self.configTopic(plug.id, "switch", "relay"), lambda d: True)
        self.assertEqual(switch["unique_id"], f"vesyncd_{plug.id}_relay")
        self.assertEqual(switch["device_class"], "outlet")
        self.assertEqual(switch["command_topic"], f"vesyncd/{plug.id}/relay/set")
        self.assertEqual(switch["state_topic"], f"vesyncd/{plug.id}/relay")
        self.assertEqual((switch["payload_on"], switch["payload_off"]), ("ON", "OFF"))
        self.assertEqual(switch["availability_mode"], "all")
        self.assertEqual([a["topic"] for a in switch["availability"]],
                         ["vesyncd/status", f"vesyncd/{plug.id}/availability"])
        device = switch["device"]
        self.assertEqual(device["identifiers"], [f"vesyncd_{plug.id}"])
        self.assertEqual(device["name"], plug.id)
        self.assertEqual(device["manufacturer"], "Etekcity")
        self.assertEqual(device["model"], "ESW01")
        self.assertEqual(device["model_id"], "vesync_wifi_outlet")
        self.assertEqual(device["sw_version"], "1.89")
        self.assertEqual(device["via_device"], ha.bridgeIdentifier("vesyncd"))

        energy = yield self.watcher.waitJSON(self.configTopic(plug.id, "sensor", "energy"), lambda d: True)
        self.assertEqual((energy["device_class"], energy["state_class"], energy["unit_of_measurement"]),
                         ("energy", "total_increasing", "kWh"))
        self.assertEqual(energy["state_topic"], f"vesyncd/{plug.id}/state")
        power = yield self.watcher.waitJSON(self.configTopic(plug.id, "sensor", "power"), lambda d: True)
        self.assertEqual((power["device_class"], power["state_class"], power["unit_of_measurement"]),
                         ("power", "measurement", "W"))
        rssi = yield self.watcher.waitJSON(self.configTopic(plug.id, "sensor", "rssi"), lambda d: True)
        self.assertEqual((rssi["entity_category"], rssi["device_class"], rssi["unit_of_measurement"]),
                         ("diagnostic", "signal_strength", "dBm"))
        seen = yield self.watcher.waitJSON(self.configTopic(plug.id, "sensor", "last_seen"), lambda d: True)
        self.assertEqual((seen["entity_category"], seen["device_class"]), ("diagnostic", "timestamp"))
        bridgeTopic, _ = ha.bridgeConfig("vesyncd", HA)
        bridge = yield self.watcher.waitJSON(bridgeTopic, lambda d: True)
        self.assertEqual(bridge["device"]["identifiers"], [ha.bridgeIdentifier("vesyncd")])

        yield self.watcher.waitValue("vesyncd/status", b"online")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/availability", b"online")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"ON")
        yield self.watcher.waitValue(f"vesyncd/{self.sim(1).id}/relay", b"OFF")
        state = yield self.watcher.waitJSON(f"vesyncd/{plug.id}/state", lambda d: d["online"])
        for key in ("power_w", "voltage_v", "energy_today_kwh", "energy_lifetime_kwh", "rssi_dbm", "last_seen",
                    "relay"):
            self.assertIn(key, state)
        self.assertEqual(state["relay"], "on")
        raw = b"".join(p for _, p, _ in self.watcher.messages)
        self.assertNotIn(b'"open"', raw)
        self.assertNotIn(b'"break"', raw)

    @inlineCallbacks
    def test_relaySetSwitchesPlug(self) -> Any:
        """OFF, then TOGGLE on relay/set switch the simulated plug; a bad payload is ignored."""
        plug = self.sim(0)
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"ON")
        self.watcher.publish(f"vesyncd/{plug.id}/relay/set", b"bogus")
        self.watcher.publish(f"vesyncd/{plug.id}/relay/set", b"off")
        yield waitFor(lambda: plug.relay is False, what="the plug to switch off")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"OFF")
        yield self.watcher.waitJSON(f"vesyncd/{plug.id}/state", lambda d: d["relay"] == "off" and d["power_w"] == 0)
        self.assertEqual(plug.commands, ["break"])
        self.watcher.publish(f"vesyncd/{plug.id}/relay/set", b"TOGGLE")
        yield waitFor(lambda: plug.relay is True, what="the plug to toggle on")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"ON")

    @inlineCallbacks
    def test_buttonPressPublishesRelay(self) -> Any:
        """A press on the plug's button shows on the relay topic."""
        plug = self.sim(1)
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"OFF")
        plug.press()
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"ON")
        yield self.watcher.waitJSON(f"vesyncd/{plug.id}/state", lambda d: d["relay_cause"] == "button")

    @inlineCallbacks
    def test_plugDisconnect(self) -> Any:
        """A plug that goes away is offline in its availability and state topics."""
        plug = self.sim(0)
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/availability", b"online")
        self.daemon.sim.runners[0].stop()
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/availability", b"offline")
        yield self.watcher.waitJSON(f"vesyncd/{plug.id}/state", lambda d: d["online"] is False)
        self.assertEqual(self.watcher.get("vesyncd/status"), b"online")

    @inlineCallbacks
    def test_brokerRestart(self) -> Any:
        """The bridge reconnects to a restarted broker, resubscribes and publishes the latest values."""
        plug = self.sim(1)
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"OFF")
        self.watcher.close()
        self.broker.stop()
        yield waitFor(lambda: not self.daemon.mqtt.client.connected, what="the bridge to notice")
        plug.press()  # while the broker is away
        plug.press()
        plug.press()
        yield waitFor(lambda: self.daemon.hub.get(plug.id).relay is True, what="the hub to see the press")
        yield self.broker.start()
        watcher = self.watcher = Watcher(self.broker.port)
        self.addCleanup(watcher.close)
        yield watcher.ready()
        yield watcher.waitValue("vesyncd/status", b"online")
        yield watcher.waitValue(f"vesyncd/{plug.id}/relay", b"ON")
        yield watcher.waitJSON(self.configTopic(plug.id, "switch", "relay"), lambda d: True)
        # The command subscription is back.
        watcher.publish(f"vesyncd/{plug.id}/relay/set", b"0")
        yield waitFor(lambda: plug.relay is False, what="a command after the reconnect")
        self.assertGreaterEqual(self.daemon.mqtt.client.connects, 2)

    @inlineCallbacks
    def test_daemonRestart(self) -> Any:
        """A clean stop says offline; discovery stays retained; a new daemon says online again."""
        plug = self.sim(0)
        yield self.watcher.waitValue("vesyncd/status", b"online")
        yield self.daemon.stop()
        yield self.watcher.waitValue("vesyncd/status", b"offline")
        late = Watcher(self.broker.port)
        self.addCleanup(late.close)
        yield late.ready()
        yield late.waitJSON(self.configTopic(plug.id, "switch", "relay"), lambda d: True)
        yield late.waitValue("vesyncd/status", b"offline")
        self.daemon = yield self.startDaemon()
        yield self.watcher.waitValue("vesyncd/status", b"online")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/availability", b"online")

    @inlineCallbacks
    def test_aliasMovesTopics(self) -> Any:
        """Renaming moves the state topics to the slug and clears the old ones; unique ids stay."""
        plug = self.sim(0)
        config = self.configTopic(plug.id, "switch", "relay")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"ON")
        self.daemon.hub.rename(plug.id, "Living Room Lamp!")
        yield self.watcher.waitValue("vesyncd/living_room_lamp/relay", b"ON")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/relay", b"")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/state", b"")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/availability", b"")
        switch = yield self.watcher.waitJSON(config, lambda d: d["device"]["name"] == "Living Room Lamp!")
        self.assertEqual(switch["unique_id"], f"vesyncd_{plug.id}_relay")
        self.assertEqual(switch["command_topic"], "vesyncd/living_room_lamp/relay/set")
        self.watcher.publish("vesyncd/living_room_lamp/relay/set", b"OFF")
        yield waitFor(lambda: plug.relay is False, what="a command on the slug topic")

    @inlineCallbacks
    def test_forgetAndHomeAssistantBirth(self) -> Any:
        """HA's 'online' brings discovery back; a forgotten plug's configs and topics are cleared."""
        plug = self.sim(0)
        config = self.configTopic(plug.id, "switch", "relay")
        yield self.watcher.waitJSON(config, lambda d: True)
        self.watcher.clear()
        self.watcher.publish("homeassistant/status", b"online")
        yield self.watcher.waitJSON(config, lambda d: True)
        self.daemon.hub.forget(plug.id)
        yield self.watcher.waitValue(config, b"")
        yield self.watcher.waitValue(f"vesyncd/{plug.id}/state", b"")
        for topic in ha.plugConfigTopics(HA, plug.id):
            yield self.watcher.waitValue(topic, b"")


class BridgeWithoutBroker(unittest.TestCase):
    """The daemon keeps working while the broker is absent or refuses it."""

    if MOSQUITTO is None:
        skip = SKIP_REASON

    timeout = 30

    def setUp(self) -> None:
        self.stateDir = tempfile.mkdtemp(prefix="vesyncd-mqtt-state-")
        self.addCleanup(shutil.rmtree, self.stateDir, True)

    @inlineCallbacks
    def test_brokerAbsentThenStarts(self) -> Any:
        """Plugs are switched while no broker listens; the latest state is published once one starts."""
        broker = Broker()
        self.addCleanup(broker.cleanup)
        daemon = Daemon(broker.port, self.stateDir)
        self.addCleanup(daemon.stop)
        yield daemon.start(1)
        plug = daemon.sim.plugs[0]
        yield daemon.hub.switch(plug.id, False)
        self.assertFalse(plug.relay)
        self.assertFalse(daemon.mqtt.client.connected)
        yield broker.start()
        watcher = Watcher(broker.port)
        self.addCleanup(watcher.close)
        yield watcher.ready()
        yield watcher.waitValue(f"vesyncd/{plug.id}/relay", b"OFF")
        yield watcher.waitValue("vesyncd/status", b"online")

    @inlineCallbacks
    def test_brokerRefuses(self) -> Any:
        """A broker that refuses the login is retried; plug control is unaffected."""
        broker = Broker(anonymous=False)
        self.addCleanup(broker.cleanup)
        yield broker.start()
        daemon = Daemon(broker.port, self.stateDir)
        self.addCleanup(daemon.stop)
        yield daemon.start(1)
        yield waitFor(lambda: daemon.mqtt.client.attempts >= 2, what="a refused connect to be retried")
        plug = daemon.sim.plugs[0]
        yield daemon.hub.switch(plug.id, None)
        self.assertFalse(plug.relay)
        self.assertFalse(daemon.mqtt.client.connected)
