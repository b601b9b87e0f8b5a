"""
What another node of a cluster says about a plug it holds, read into this node's record of the plug.

The values arrive through the broker, so every one is checked for its type and cut to a bound here;
anything else is ignored, never raised.  L{vesyncd.core.hub.Hub} keeps the rest of its view of other
nodes' plugs (which node holds which plug, online or not, aliases against its own names).
"""

from __future__ import annotations

from typing import Any

from vesyncd.core.model import (ONLINE, PLUG_CONFLICT, PLUG_NEW, POWER_ON, RELAY, RSSI, RUNTIME, ENERGY,
                                EnergySummary, PlugState)

#: The readings a routed command's result carries back (L{vesyncd.core.model.plugToWire}).
READINGS = ("relay", "relay_cause", "relay_changed", "power_w", "voltage_v", "current_a", "meastate", "runtime_at",
            "rssi_dbm", "last_seen")
#: What a node's whole-state message sets besides the alias, the device facts and being online.
STATE = READINGS + ("firmware", "encrypted", "address", "connected_since", "power_on")
#: Longest text kept from another node's event.
MAX_TEXT = 256


def boundedDevice(device: dict[Any, Any]) -> dict[str, Any]:
    """A plug's device facts from another node: at most 16 short keys with short scalar values."""
    return {str(k)[:32]: v for k, v in list(device.items())[:16]
            if isinstance(v, (str, int, float)) and not isinstance(v, bool) and len(str(v)) <= 128}


def applyEventData(plug: PlugState, kind: str, at: float, data: dict[str, Any]) -> EnergySummary | None:
    """Set what an event of C{kind} from another node says of C{plug}'s connection, relay, readings,
    power-on policy or identity conflict; for an C{energy} event, return its day and lifetime figures
    (None otherwise, or when they are not numbers).  Aliases, liveness and ownership are the hub's."""
    def number(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def text(key: str) -> str | None:
        value = data.get(key)
        return value[:MAX_TEXT] if isinstance(value, str) else None

    if kind in (ONLINE, PLUG_NEW):
        plug.address = text("address") or plug.address
        plug.firmware = text("firmware") or plug.firmware
        if kind == ONLINE:
            plug.connected_since = at
    elif kind == RELAY and isinstance(data.get("relay"), bool):
        plug.relay, plug.relay_cause, plug.relay_changed = data["relay"], text("cause"), at
    elif kind == RUNTIME:
        plug.power_w, plug.voltage_v, plug.runtime_at = number("power_w"), number("voltage_v"), at
        if isinstance(data.get("relay"), bool):
            plug.relay = data["relay"]
    elif kind == ENERGY:
        today, lifetime = number("today_wh"), number("lifetime_wh")
        if today is not None and lifetime is not None:
            return EnergySummary(today_wh=today, lifetime_wh=lifetime)
    elif kind == RSSI and isinstance(data.get("rssi_dbm"), int) and not isinstance(data.get("rssi_dbm"), bool):
        plug.rssi_dbm = data["rssi_dbm"]
    elif kind == POWER_ON and data.get("power_on") in (None, "on", "off", "last"):
        plug.power_on = data.get("power_on")
    elif kind == PLUG_CONFLICT and isinstance(data.get("fields"), list):
        first, now = data.get("first"), data.get("now")
        if not data["fields"]:
            plug.conflict = None
            plug.first_identity = first if isinstance(first, dict) else plug.first_identity
        elif isinstance(first, dict) and isinstance(now, dict):
            plug.conflict = {"at": at, "fields": [str(f)[:32] for f in data["fields"][:8]], "first": first,
                             "now": now}
    return None
