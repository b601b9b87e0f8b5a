"""
The MQTT bridge's part of the daemon: its options, their checks, and its service (see
L{vesyncd.mqtt.bridge}).
"""

from __future__ import annotations

import os
from datetime import tzinfo
from typing import Any

from twisted.application import service
from twisted.python import usage

from vesyncd.core.hub import Hub
from vesyncd.mqtt.bridge import MQTTService, validPrefix
from vesyncd.mqtt.settings import MQTTConfigError, parseBrokerURL
from vesyncd.service import DaemonInfo


class MQTTOptions:
    """The MQTT bridge's options, part of the daemon's L{vesyncd.tap.Options}."""

    optFlags = [
        ["no-ha-discovery", None, "Do not publish Home Assistant MQTT discovery configs."],
    ]

    optParameters = [
        ["mqtt", None, None,
         "MQTT broker to bridge to: mqtt://[user:password@]host[:port] or mqtts://... (TLS, certificate "
         "verified). Off unless given."],
        ["mqtt-ca", None, None,
         "CA certificate file (PEM) to verify an mqtts:// broker with (default: system CAs)."],
        ["mqtt-prefix", None, "vesyncd", "Topic prefix of vesyncd's MQTT topics."],
        ["ha-discovery-prefix", None, "homeassistant", "Home Assistant's MQTT discovery prefix."],
    ]


def checkOptions(config: Any) -> None:
    """Check the MQTT options; the URL is parsed into C{config['mqtt-settings']}."""
    config["mqtt-settings"] = None
    for name in ("mqtt-prefix", "ha-discovery-prefix"):
        if not validPrefix(config[name]):
            raise usage.UsageError(f"--{name} {config[name]!r}: 1-64 characters, no +, # or empty level, "
                                   "no leading or trailing slash")
    if not config["mqtt"]:
        if config["mqtt-ca"]:
            raise usage.UsageError("--mqtt-ca needs --mqtt")
        return
    ca = config["mqtt-ca"]
    if ca and not os.path.isfile(ca):
        raise usage.UsageError(f"--mqtt-ca {ca}: no such file")
    try:
        config["mqtt-settings"] = parseBrokerURL(config["mqtt"], ca or None)
    except MQTTConfigError as e:
        raise usage.UsageError(str(e)) from None


def makeServices(parent: service.MultiService, hub: Hub, config: Any, reactor: Any, info: DaemonInfo | None = None,
                 automation: Any = None, insight: Any = None) -> MQTTService | None:
    """Add the MQTT bridge to C{parent} when C{--mqtt} is given, and return it.

    With C{automation} (an L{vesyncd.automation.engine.AutomationEngine}) C{relay/set} takes
    C{"for"} and each plug gets its next action and "running"; with C{insight} (the energy
    insight service) its periods, costs and baseline.  C{info.facts["mqtt_slug_collisions"]}
    lists the aliases that cannot be topic names and C{info.facts["broker"]} the broker's connection
    (for C{vesyncctl doctor}).
    """
    settings = config.get("mqtt-settings") if hasattr(config, "get") else None
    if settings is None and config["mqtt"]:
        settings = parseBrokerURL(config["mqtt"], config["mqtt-ca"] or None)
    if settings is None:
        return None
    zone = config.get("timezone") if hasattr(config, "get") else None
    mqtt = MQTTService(reactor, hub, settings, prefix=config["mqtt-prefix"],
                       discoveryPrefix=config["ha-discovery-prefix"], discovery=not config["no-ha-discovery"],
                       automation=automation, insight=insight, zone=zone if isinstance(zone, tzinfo) else None)
    mqtt.setServiceParent(parent)
    if info is not None:
        bridge = mqtt.bridge
        info.facts["mqtt_slug_collisions"] = lambda: [dict(found) for found in bridge.collisions]
        # For the doctor and `vesyncctl info`: where the broker is (no password) and whether it is connected.
        client = mqtt.client
        info.facts["broker"] = lambda: {"broker": settings.describe(), "connected": bool(client.connected)}
    return mqtt
