"""
The values the core hands to front ends: plug state, events, and the errors commands fail with.

Front ends (control port, PB, MQTT, HTTP) import these to read and serialise what the hub
reports; they never change a L{PlugState} they were given (the hub hands out copies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class CommandError(Exception):
    """A command could not be carried out; C{code} names the reason for front ends."""

    code = "failed"


class UnknownPlug(CommandError):
    """No plug matches the given id, id prefix or alias."""

    code = "unknown"


class AmbiguousPlug(UnknownPlug):
    """The reference matches more than one plug."""

    code = "ambiguous"


class PlugOffline(CommandError):
    """The plug is known but not connected."""

    code = "offline"


class CommandTimeout(CommandError):
    """The plug did not confirm the command in time."""

    code = "timeout"


class QueueFull(CommandError):
    """Too many commands are already waiting for this plug."""

    code = "busy"


class InvalidArgument(CommandError):
    """An argument (e.g. an alias) is not acceptable; the message says why."""

    code = "invalid"


# Event kinds, emitted in this order of importance; front ends switch on them.
PLUG_NEW = "plug_new"
ONLINE = "online"
OFFLINE = "offline"
RELAY = "relay"
RUNTIME = "runtime"
ENERGY = "energy"
RSSI = "rssi"
ALIAS = "alias"
POWER_ON = "power_on"
FORGOTTEN = "forgotten"
#: A login for a known id disagrees with the account, address or firmware first seen for it.
PLUG_CONFLICT = "plug_conflict"
#: An unknown id logged in while new plugs are held; it waits for approval (see L{Settings.new_plugs}).
PLUG_PENDING = "plug_pending"
#: A power rule of the automation engine fired (data: rule, power_w, action, ok[, error]).
RULE = "rule"
#: A "done" power rule saw a cycle start or end (data: rule, running).
RULE_RUNNING = "rule_running"
EVENT_KINDS = (PLUG_NEW, ONLINE, OFFLINE, RELAY, RUNTIME, ENERGY, RSSI, ALIAS, POWER_ON, FORGOTTEN, PLUG_CONFLICT,
               PLUG_PENDING, RULE, RULE_RUNNING)

# Causes of a relay change.
CAUSE_COMMAND = "command"
CAUSE_BUTTON = "button"
CAUSE_TIMER = "timer"
CAUSE_LOGIN = "login"
CAUSE_PLUG = "plug"


@dataclass(frozen=True)
class EnergySummary:
    """Watt-hours used today (in the configured time zone) and over the plug's whole life."""

    today_wh: float = 0.0
    lifetime_wh: float = 0.0


@dataclass(frozen=True)
class Event:
    """Something that happened to a plug at POSIX time C{at}; C{data} depends on C{kind}."""

    kind: str
    plug: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)
    #: The node the event happened on, when another node of a cluster sent it; None for this node's own.
    #: Subscribers that act or write (store, MQTT state, automation, insight) leave such events alone.
    origin: str | None = None


def isoTime(at: float | None) -> str | None:
    """POSIX time as ISO 8601 UTC with a Z, or None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class PlugState:
    """Everything known about one plug.  Front ends read copies from L{Hub.plugs}."""

    id: str
    alias: str | None = None
    online: bool = False
    relay: bool | None = None
    relay_cause: str | None = None
    relay_changed: float | None = None
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    meastate: str | None = None
    runtime_at: float | None = None
    rssi_dbm: int | None = None
    firmware: str | None = None
    encrypted: bool = False
    device: dict[str, Any] = field(default_factory=dict)
    address: str | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    connected_since: float | None = None
    last_report: dict[str, Any] | None = None
    timer: dict[str, Any] | None = None
    trigger: dict[str, Any] | None = None
    ctl_flags: dict[str, Any] | None = None
    power_on: str | None = None
    #: POSIX time up to which energy reports have been counted (see L{vesyncd.core.trust.ReportBound}).
    report_until: float | None = None
    #: Watt-hours of reports refused as impossible for the wall time that passed.
    energy_refused_wh: float = 0.0
    #: The account, peer host and firmware of the first login seen for this id.
    first_identity: dict[str, Any] | None = None
    #: Set when a later login disagreed with L{first_identity}: {"at", "fields", "first", "now"}.
    conflict: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The alias when set, else the id."""
        return self.alias or self.id

    def toJSON(self, energy: EnergySummary | None = None) -> dict[str, Any]:
        """The documented, stable JSON form shared by the CLI, the control port, HTTP and MQTT."""
        relay = None if self.relay is None else ("on" if self.relay else "off")
        doc: dict[str, Any] = {
            "id": self.id,
            "alias": self.alias,
            "online": self.online,
            "relay": relay,
            "relay_cause": self.relay_cause,
            "power_w": self.power_w,
            "voltage_v": self.voltage_v,
            "rssi_dbm": self.rssi_dbm,
            "firmware": self.firmware,
            "encrypted": self.encrypted,
            "address": self.address,
            "first_seen": isoTime(self.first_seen),
            "last_seen": isoTime(self.last_seen),
            "model": self.device.get("deviceName") or None,
            "power_on": self.power_on,
            "energy_refused_wh": round(self.energy_refused_wh, 6),
            "conflict": self.conflict,
        }
        if energy is not None:
            doc["energy_today_kwh"] = round(energy.today_wh / 1000.0, 6)
            doc["energy_lifetime_kwh"] = round(energy.lifetime_wh / 1000.0, 6)
        return doc


_NUMBER = (int, float)
#: The PlugState fields sent between the nodes of a cluster (L{plugToWire}), with the types L{plugFromWire} takes.
WIRE_FIELDS: dict[str, tuple[type, ...]] = {
    "alias": (str,), "online": (bool,), "relay": (bool,), "relay_cause": (str,), "relay_changed": _NUMBER,
    "power_w": _NUMBER, "voltage_v": _NUMBER, "current_a": _NUMBER, "meastate": (str,), "runtime_at": _NUMBER,
    "rssi_dbm": (int,), "firmware": (str,), "encrypted": (bool,), "device": (dict,), "address": (str,),
    "first_seen": _NUMBER, "last_seen": _NUMBER, "connected_since": _NUMBER, "last_report": (dict,),
    "timer": (dict,), "trigger": (dict,), "ctl_flags": (dict,), "power_on": (str,),
    "report_until": _NUMBER, "energy_refused_wh": _NUMBER, "first_identity": (dict,), "conflict": (dict,),
}


def plugToWire(plug: PlugState) -> dict[str, Any]:
    """Every field of a plug's state as JSON-native data, for another node of a cluster (L{plugFromWire})."""
    doc: dict[str, Any] = {"id": plug.id}
    for name in WIRE_FIELDS:
        doc[name] = getattr(plug, name)
    return doc


def plugFromWire(doc: Any, maxText: int = 256) -> PlugState | None:
    """A plug's state from another node's L{plugToWire} document, or None when it is not one.

    Input from the broker is hostile: a field of the wrong type, a non-finite number or an
    over-long text is left at its default; an unusable id refuses the whole document.
    """
    if not isinstance(doc, dict):
        return None
    plugId = doc.get("id")
    if not isinstance(plugId, str) or not 0 < len(plugId) <= maxText:
        return None
    plug = PlugState(id=plugId)
    for name, kinds in WIRE_FIELDS.items():
        value = doc.get(name)
        if value is None or not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if isinstance(value, str) and len(value) > maxText:
            continue
        setattr(plug, name, value)
    return plug
