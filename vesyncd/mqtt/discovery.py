"""
Home Assistant MQTT discovery payloads and vesyncd's MQTT topic names: pure functions only.

One HA device per plug (identifiers C{vesyncd_<id>}), linked to a bridge device with
C{via_device}; per plug a switch, power/voltage/energy sensors and diagnostic RSSI and
last-seen sensors, all reading the plug's retained C{state} JSON document (the documented
L{vesyncd.core.hub.PlugState.toJSON} form).  Config topics and unique ids use the plug id, so an
alias change never creates new entities; only the state/command topics (which use the alias
slug) move.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any, Iterable

from vesyncd import __version__

#: Entities per plug: object id -> (component, config without topics, device or availability).
_PLUG_ENTITIES: dict[str, tuple[str, dict[str, Any]]] = {
    "relay": ("switch", {"name": None, "device_class": "outlet"}),
    "power": ("sensor", {"name": "Power", "device_class": "power", "state_class": "measurement",
                         "unit_of_measurement": "W", "value_template": "{{ value_json.power_w }}",
                         "suggested_display_precision": 1}),
    "voltage": ("sensor", {"name": "Voltage", "device_class": "voltage", "state_class": "measurement",
                           "unit_of_measurement": "V", "value_template": "{{ value_json.voltage_v }}",
                           "suggested_display_precision": 1}),
    "energy": ("sensor", {"name": "Energy", "device_class": "energy", "state_class": "total_increasing",
                          "unit_of_measurement": "kWh",
                          "value_template": "{{ value_json.energy_lifetime_kwh }}",
                          "suggested_display_precision": 3}),
    # A daily counter: total_increasing treats the drop at midnight as a new meter cycle.
    "energy_today": ("sensor", {"name": "Energy today", "device_class": "energy",
                                "state_class": "total_increasing", "unit_of_measurement": "kWh",
                                "value_template": "{{ value_json.energy_today_kwh }}",
                                "suggested_display_precision": 3}),
    "rssi": ("sensor", {"name": "Signal strength", "device_class": "signal_strength",
                        "state_class": "measurement", "unit_of_measurement": "dBm",
                        "entity_category": "diagnostic", "value_template": "{{ value_json.rssi_dbm }}"}),
    "last_seen": ("sensor", {"name": "Last seen", "device_class": "timestamp", "entity_category": "diagnostic",
                             "value_template": "{{ value_json.last_seen }}"}),
}
OBJECTS = tuple(_PLUG_ENTITIES)
MANUFACTURER = "Etekcity"
DEFAULT_MODEL = "ESW01"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLUG_STRIP = re.compile(r"[^a-z0-9_-]+")
MAX_SLUG = 48


def safeId(plugId: str) -> str:
    """The plug id if it is safe in topics and HA ids ([A-Za-z0-9_-], at most 64), else a stable hash."""
    if _SAFE_ID.fullmatch(plugId):
        return plugId
    return "plug_" + hashlib.sha256(plugId.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def cleanText(text: Any, limit: int) -> str:
    """Plug-supplied text fit for Home Assistant: control, format and separator characters (other
    than the space) removed, at most C{limit} characters, surrounding spaces stripped."""
    text = "" if text is None else str(text)
    if not (text.isascii() and text.isprintable()):
        text = "".join(ch for ch in text if ch == " " or unicodedata.category(ch)[0] not in "CZ")
    return text[:limit].strip()


def slugify(alias: str | None) -> str:
    """An alias as a topic level: lower case, runs of other characters as one C{_}, [a-z0-9_-] only."""
    if not alias:
        return ""
    text = alias.casefold().replace(" ", "_")
    text = _SLUG_STRIP.sub("_", text)
    text = re.sub(r"_+", "_", text).strip("_-")
    return text[:MAX_SLUG].strip("_-")


def assignNodes(plugs: Iterable[tuple[str, str | None]], reserved: Iterable[str] = ("status",)) -> dict[str, str]:
    """Map each plug id to its topic level: the alias slug when unique, else the (safe) id.

    Plugs whose slugs collide with each other, with a plug's id or with a reserved word all
    fall back to their ids, so no two plugs ever share topics.
    """
    items = list(plugs)
    ids = {safeId(plugId) for plugId, _ in items}
    slugs: dict[str, list[str]] = {}
    for plugId, alias in items:
        slug = slugify(alias)
        if slug:
            slugs.setdefault(slug, []).append(plugId)
    blocked = set(reserved)
    nodes: dict[str, str] = {}
    for plugId, alias in items:
        slug = slugify(alias)
        if slug and len(slugs[slug]) == 1 and slug not in blocked and (slug not in ids or slug == safeId(plugId)):
            nodes[plugId] = slug
        else:
            nodes[plugId] = safeId(plugId)
    return nodes


def plugTopics(prefix: str, node: str) -> dict[str, str]:
    """The state and command topics of one plug under C{prefix}."""
    base = f"{prefix}/{node}"
    return {"availability": f"{base}/availability", "relay": f"{base}/relay", "relay_set": f"{base}/relay/set",
            "state": f"{base}/state"}


def bridgeIdentifier(prefix: str) -> str:
    """The HA device identifier of the bridge (one per MQTT prefix, so two daemons do not merge)."""
    return "vesyncd_bridge_" + (slugify(prefix) or "vesyncd")


def origin() -> dict[str, Any]:
    """Who published the discovery payloads (shown by HA in the entity's MQTT info)."""
    return {"name": "vesyncd", "sw_version": __version__}


def configTopic(discoveryPrefix: str, component: str, plugId: str, objectId: str) -> str:
    """C{<discovery>/<component>/vesyncd/<id>_<object>/config}: stable across alias changes."""
    return f"{discoveryPrefix}/{component}/vesyncd/{safeId(plugId)}_{objectId}/config"


def plugConfigTopics(discoveryPrefix: str, plugId: str) -> list[str]:
    """Every discovery config topic of one plug (to publish or to clear)."""
    return [configTopic(discoveryPrefix, component, plugId, obj) for obj, (component, _) in _PLUG_ENTITIES.items()]


def deviceInfo(plug: Any, prefix: str) -> dict[str, Any]:
    """The HA device block of one plug (C{plug} is a L{vesyncd.core.hub.PlugState})."""
    device: dict[str, Any] = {
        "identifiers": [f"vesyncd_{safeId(plug.id)}"],
        "name": cleanText(plug.alias, 64) or cleanText(plug.id, 64) or safeId(plug.id),
        "manufacturer": MANUFACTURER,
        "model": DEFAULT_MODEL,
        "via_device": bridgeIdentifier(prefix),
    }
    deviceName = (plug.device or {}).get("deviceName")
    if isinstance(deviceName, str) and cleanText(deviceName, 64):
        device["model_id"] = cleanText(deviceName, 64)
    if plug.firmware and cleanText(plug.firmware, 32):
        device["sw_version"] = cleanText(plug.firmware, 32)
    version = (plug.device or {}).get("deviceVersion")
    if isinstance(version, str) and cleanText(version, 32):
        device["hw_version"] = cleanText(version, 32)
    return device


def plugConfigs(plug: Any, node: str, *, prefix: str, discoveryPrefix: str) -> dict[str, dict[str, Any]]:
    """Config topic -> discovery payload for every entity of one plug."""
    topics = plugTopics(prefix, node)
    device = deviceInfo(plug, prefix)
    availability = [{"topic": f"{prefix}/status"}, {"topic": topics["availability"]}]
    configs: dict[str, dict[str, Any]] = {}
    for obj, (component, template) in _PLUG_ENTITIES.items():
        config: dict[str, Any] = dict(template)
        config["unique_id"] = f"vesyncd_{safeId(plug.id)}_{obj}"
        config["availability"] = availability
        config["availability_mode"] = "all"
        config["payload_available"] = "online"
        config["payload_not_available"] = "offline"
        config["device"] = device
        config["origin"] = origin()
        if component == "switch":
            config["state_topic"] = topics["relay"]
            config["command_topic"] = topics["relay_set"]
            config["payload_on"] = "ON"
            config["payload_off"] = "OFF"
        else:
            config["state_topic"] = topics["state"]
        configs[configTopic(discoveryPrefix, component, plug.id, obj)] = config
    return configs


def bridgeConfig(prefix: str, discoveryPrefix: str) -> tuple[str, dict[str, Any]]:
    """The bridge's own device, with a connectivity sensor on C{<prefix>/status}."""
    ident = bridgeIdentifier(prefix)
    topic = f"{discoveryPrefix}/binary_sensor/vesyncd/{ident}_status/config"
    return topic, {
        "name": "Connection",
        "unique_id": f"{ident}_status",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": f"{prefix}/status",
        "payload_on": "online",
        "payload_off": "offline",
        "device": {"identifiers": [ident], "name": "vesyncd", "manufacturer": "vesyncd",
                   "model": "Local VeSync server", "sw_version": __version__},
        "origin": origin(),
    }
