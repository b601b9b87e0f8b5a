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

_NEXT_ATTRIBUTES = "{{ {'switch': value_json.next.switch, 'cause': value_json.next.cause} | tojson if value_json.next else '{}' }}"
#: With an automation engine: object -> (component, config, state topic key, condition): a
#: condition names what the plug needs for the entity to exist (C{rules}: any power rule,
#: C{done_rule}: a "done" rule), None for always.
_AUTOMATION_ENTITIES: dict[str, tuple[str, dict[str, Any], str, str | None]] = {
    "next_action": ("sensor", {"name": "Next switch time", "device_class": "timestamp",
                               "value_template": "{{ value_json.next.at if value_json.next else None }}",
                               "json_attributes_template": _NEXT_ATTRIBUTES}, "automation", None),
    "next_switch": ("sensor", {"name": "Next switch", "device_class": "enum", "options": ["on", "off", "none"],
                               "value_template": "{{ value_json.next.switch if value_json.next else 'none' }}",
                               "json_attributes_template": _NEXT_ATTRIBUTES}, "automation", None),
    "running": ("binary_sensor", {"name": "Running", "device_class": "running",
                                  "value_template": "{{ 'ON' if value_json.running else 'OFF' }}"},
                "automation", "done_rule"),
    # Every event of the plug arrives on its event topic; the template turns a rule firing into HA's
    # event and renders nothing (which HA skips quietly) for the other kinds.
    "rule": ("event", {"name": "Power rule", "event_types": ["on", "off", "notify"],
                       "value_template": "{% if value_json.event == 'rule' %}{{ {'event_type': value_json.data.action, "
                                         "'rule': value_json.data.rule, 'power_w': value_json.data.power_w, "
                                         "'ok': value_json.data.ok} | tojson }}{% endif %}"}, "event", "rules"),
}


def _kwh(key: str) -> str:
    return (f"{{{{ (value_json.{key} / 1000) | round(6) if value_json.{key} is not none else None }}}}")


def _cost(period: str, stateClass: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"name": f"Cost {period}", "device_class": "monetary",
                              "value_template": f"{{{{ value_json.{period}_cost }}}}",
                              "suggested_display_precision": 2}
    if stateClass:
        # A period's cost falls back to 0 as the period turns: total with the period's start as last_reset.
        config["state_class"] = "total"
        config["last_reset_value_template"] = f"{{{{ value_json.last_reset.{period} }}}}"
    return config


#: With energy insight: object -> (component, config, state topic key, condition); C{currency}: only
#: with a tariff (the currency is the unit).  See docs/energy.md for the state classes.
_INSIGHT_ENTITIES: dict[str, tuple[str, dict[str, Any], str, str | None]] = {
    **{f"energy_{period}": ("sensor", {"name": f"Energy {period}", "device_class": "energy",
                                       **({"state_class": "total_increasing"} if period != "yesterday" else {}),
                                       "unit_of_measurement": "kWh", "value_template": _kwh(f"{period}_wh"),
                                       "suggested_display_precision": 3}, "energy", None)
       for period in ("yesterday", "week", "month", "year")},
    "baseline_power": ("sensor", {"name": "Always-on power", "device_class": "power", "state_class": "measurement",
                                  "unit_of_measurement": "W", "value_template": "{{ value_json.baseline_w }}",
                                  "suggested_display_precision": 1}, "energy", None),
    **{f"cost_{period}": ("sensor", _cost(period, period != "yesterday"), "energy", "currency")
       for period in ("today", "yesterday", "week", "month", "year")},
    "baseline_cost": ("sensor", {"name": "Always-on cost per year", "device_class": "monetary",
                                 "value_template": "{{ value_json.baseline_yearly_cost }}",
                                 "suggested_display_precision": 2}, "energy", "currency"),
}
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


def plugTopics(prefix: str, node: str) -> dict[str, str]:
    """The state and command topics of one plug under C{prefix}."""
    base = f"{prefix}/{node}"
    return {"availability": f"{base}/availability", "relay": f"{base}/relay", "relay_set": f"{base}/relay/set",
            "state": f"{base}/state", "event": f"{base}/event", "automation": f"{base}/automation",
            "energy": f"{base}/energy"}


def bridgeIdentifier(prefix: str) -> str:
    """The HA device identifier of the bridge (one per MQTT prefix, so two daemons do not merge)."""
    return "vesyncd_bridge_" + (slugify(prefix) or "vesyncd")


def origin() -> dict[str, Any]:
    """Who published the discovery payloads (shown by HA in the entity's MQTT info)."""
    return {"name": "vesyncd", "sw_version": __version__}


def configTopic(discoveryPrefix: str, component: str, plugId: str, objectId: str) -> str:
    """C{<discovery>/<component>/vesyncd/<id>_<object>/config}: stable across alias changes."""
    return f"{discoveryPrefix}/{component}/vesyncd/{safeId(plugId)}_{objectId}/config"


def plugConfigTopics(discoveryPrefix: str, plugId: str, figures: bool = False) -> list[str]:
    """Every discovery config topic of one plug's base entities (to publish or to clear), and with
    C{figures} those of its automation and energy entities too."""
    entities = [(obj, component) for obj, (component, _) in _PLUG_ENTITIES.items()]
    if figures:
        entities += [(obj, entity[0]) for obj, entity in (*_AUTOMATION_ENTITIES.items(), *_INSIGHT_ENTITIES.items())]
    return [configTopic(discoveryPrefix, component, plugId, obj) for obj, component in entities]


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
        config = _entity(plug.id, obj, template, device, availability)
        if component == "switch":
            config["state_topic"] = topics["relay"]
            config["command_topic"] = topics["relay_set"]
            config["payload_on"] = "ON"
            config["payload_off"] = "OFF"
            # What made the last switch (command, button, timer, schedule:<id>, rule:<id>, ...).
            config["json_attributes_topic"] = topics["state"]
            config["json_attributes_template"] = "{{ {'cause': value_json.relay_cause} | tojson }}"
        else:
            config["state_topic"] = topics["state"]
        configs[configTopic(discoveryPrefix, component, plug.id, obj)] = config
    return configs


def _entity(plugId: str, obj: str, template: dict[str, Any], device: dict[str, Any],
            availability: list[dict[str, str]]) -> dict[str, Any]:
    config: dict[str, Any] = dict(template)
    config["unique_id"] = f"vesyncd_{safeId(plugId)}_{obj}"
    config["availability"] = availability
    config["availability_mode"] = "all"
    config["payload_available"] = "online"
    config["payload_not_available"] = "offline"
    config["device"] = device
    config["origin"] = origin()
    return config


def figureConfigs(plug: Any, node: str, *, prefix: str, discoveryPrefix: str, automation: bool = False,
                  insight: bool = False, has: Iterable[str] = (), currency: str | None = None
                  ) -> dict[str, dict[str, Any] | None]:
    """Config topic -> discovery payload of the automation (C{automation}) and energy insight
    (C{insight}) entities of one plug, or None for an entity whose condition is not met, to be
    cleared: C{rules} and C{done_rule} must be in C{has}, cost entities need a C{currency}.  They
    stay available while the plug is offline (its figures and schedules still hold), not while
    vesyncd is."""
    topics = plugTopics(prefix, node)
    device = deviceInfo(plug, prefix)
    availability = [{"topic": f"{prefix}/status"}]
    held = set(has) | ({"currency"} if currency else set())
    tables = [*(_AUTOMATION_ENTITIES.items() if automation else ()), *(_INSIGHT_ENTITIES.items() if insight else ())]
    configs: dict[str, dict[str, Any] | None] = {}
    for obj, (component, template, topicKey, condition) in tables:
        topic = configTopic(discoveryPrefix, component, plug.id, obj)
        if condition is not None and condition not in held:
            configs[topic] = None
            continue
        config = _entity(plug.id, obj, template, device, availability)
        config["state_topic"] = topics[topicKey]
        if "json_attributes_template" in template:
            config["json_attributes_topic"] = topics[topicKey]
        if condition == "currency":
            config["unit_of_measurement"] = currency
        configs[topic] = config
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
