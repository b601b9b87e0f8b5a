"""The automation and energy figures against a real mosquitto on loopback, with the daemon built by
C{tap.makeService} (automation and energy insight wired as in production) and simulated plugs:
the new discovery payloads as Home Assistant receives them, and C{relay/set} with C{"for"} end to end."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.mqtt_helpers import MOSQUITTO, SKIP_REASON, Daemon, startBrokerAndWatcher, waitFor
from vesyncd.mqtt import discovery as ha

HA = "homeassistant"


class FiguresAgainstBroker(unittest.TestCase):
    """A daemon with a tariff, one simulated plug, a broker and a watching client."""

    if MOSQUITTO is None:
        skip = SKIP_REASON

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.broker, stateDir, self.watcher = yield startBrokerAndWatcher(self)
        self.daemon = Daemon(self.broker.port, stateDir, ["--currency", "EUR", "--price-kwh", "0.30"])
        self.addCleanup(self.daemon.stop)
        yield self.daemon.start(1)
        self.plug = self.daemon.sim.plugs[0]

    def config(self, component: str, obj: str) -> Any:
        """Fires with the entity's discovery payload once the broker has it."""
        return self.watcher.waitJSON(ha.configTopic(HA, component, self.plug.id, obj), lambda d: True)

    @inlineCallbacks
    def test_discoveryOfFigures(self) -> Any:
        """Energy periods, costs, baseline and the next action reach the broker with HA's classes and topics."""
        base = f"vesyncd/{self.plug.id}"
        week = yield self.config("sensor", "energy_week")
        self.assertEqual((week["device_class"], week["state_class"], week["unit_of_measurement"]),
                         ("energy", "total_increasing", "kWh"))
        self.assertEqual(week["state_topic"], f"{base}/energy")
        self.assertEqual(week["device"]["identifiers"], [f"vesyncd_{self.plug.id}"])
        yesterday = yield self.config("sensor", "energy_yesterday")
        self.assertNotIn("state_class", yesterday)
        cost = yield self.config("sensor", "cost_month")
        self.assertEqual((cost["device_class"], cost["state_class"], cost["unit_of_measurement"]),
                         ("monetary", "total", "EUR"))
        self.assertIn("last_reset", cost["last_reset_value_template"])
        baseline = yield self.config("sensor", "baseline_power")
        self.assertEqual((baseline["device_class"], baseline["unit_of_measurement"]), ("power", "W"))
        nextAction = yield self.config("sensor", "next_action")
        self.assertEqual((nextAction["device_class"], nextAction["state_topic"]), ("timestamp", f"{base}/automation"))
        energy = yield self.watcher.waitJSON(f"{base}/energy", lambda d: "month_wh" in d)
        self.assertEqual(energy["currency"], "EUR")
        self.assertEqual(set(energy["last_reset"]), {"today", "week", "month", "year"})
        automation = yield self.watcher.waitJSON(f"{base}/automation", lambda d: True)
        self.assertEqual(automation, {"next": None, "running": None, "rules": 0})

    @inlineCallbacks
    def test_relaySetForSwitchesBack(self) -> Any:
        """{"state": "ON", "for": 2} switches the plug on, shows the timer as the next action, and off again after 2 s."""
        base = f"vesyncd/{self.plug.id}"
        yield self.watcher.waitValue(f"{base}/relay", b"ON" if self.plug.relay else b"OFF")
        if self.plug.relay:
            self.watcher.publish(f"{base}/relay/set", b"OFF")
            yield self.watcher.waitValue(f"{base}/relay", b"OFF")
        self.watcher.clear()  # what follows is seen from here on
        self.watcher.publish(f"{base}/relay/set", json.dumps({"state": "ON", "for": 2}))
        # The 2 s timer may switch the plug back before a poll of the latest values: look at what was seen.
        on = yield self.watcher.waitSeenJSON(f"{base}/state", lambda d: d["relay"] == "on")
        self.assertEqual(on["relay_cause"], "command")
        pending = yield self.watcher.waitSeenJSON(f"{base}/automation", lambda d: d["next"] is not None)
        self.assertEqual((pending["next"]["switch"], pending["next"]["cause"]), ("off", "timer"))
        yield waitFor(lambda: self.plug.relay is False, timeout=8, what="the plug to be switched back off")
        yield self.watcher.waitValue(f"{base}/relay", b"OFF")
        state = yield self.watcher.waitJSON(f"{base}/state", lambda d: d["relay"] == "off")
        self.assertEqual(state["relay_cause"], "timer")
        events = [json.loads(p) for t, p, _ in self.watcher.messages if t == f"{base}/event"]
        self.assertEqual([e["data"]["cause"] for e in events if e["event"] == "relay"][-2:], ["command", "timer"])
        yield self.watcher.waitJSON(f"{base}/automation", lambda d: d["next"] is None)
