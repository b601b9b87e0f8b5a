"""Another node's events read into this node's record of a plug: typed, bounded, never raising."""

from __future__ import annotations

from vesyncd.core.model import ENERGY, ONLINE, PLUG_CONFLICT, RELAY, RSSI, RUNTIME, PlugState
from vesyncd.core.remoteview import applyEventData, boundedDevice


def test_readings_of_each_kind_are_taken() -> None:
    plug = PlugState(id="p1")
    assert applyEventData(plug, ONLINE, 10.0, {"address": "10.0.0.5:4000", "firmware": "1.89"}) is None
    applyEventData(plug, RELAY, 11.0, {"relay": True, "cause": "schedule:s1"})
    applyEventData(plug, RUNTIME, 12.0, {"power_w": 42, "voltage_v": 120.5, "relay": False})
    applyEventData(plug, RSSI, 13.0, {"rssi_dbm": -61})
    assert (plug.address, plug.firmware, plug.connected_since) == ("10.0.0.5:4000", "1.89", 10.0)
    assert (plug.relay, plug.relay_cause, plug.relay_changed) == (False, "schedule:s1", 11.0)
    assert (plug.power_w, plug.voltage_v, plug.runtime_at, plug.rssi_dbm) == (42.0, 120.5, 12.0, -61)
    energy = applyEventData(plug, ENERGY, 14.0, {"today_wh": 1.5, "lifetime_wh": 900})
    assert energy is not None and (energy.today_wh, energy.lifetime_wh) == (1.5, 900.0)


def test_hostile_values_are_ignored_or_cut() -> None:
    plug = PlugState(id="p1", relay=True, rssi_dbm=-50, firmware="1.89")
    applyEventData(plug, RELAY, 1.0, {"relay": "yes"})
    applyEventData(plug, RSSI, 1.0, {"rssi_dbm": True})
    applyEventData(plug, ONLINE, 1.0, {"address": "x" * 10_000, "firmware": 7})
    applyEventData(plug, PLUG_CONFLICT, 1.0, {"fields": ["f"] * 100, "first": {}, "now": {}})
    assert (plug.relay, plug.rssi_dbm, plug.firmware) == (True, -50, "1.89")
    assert len(plug.address or "") == 256 and len(plug.conflict["fields"]) == 8
    assert applyEventData(plug, ENERGY, 1.0, {"today_wh": "1", "lifetime_wh": 2}) is None
    device = boundedDevice({f"k{i}": ("v" * 200 if i == 1 else True if i == 2 else i) for i in range(40)})
    assert len(device) <= 16 and "k1" not in device and "k2" not in device and device["k0"] == 0
