"""
The hub's view of the plugs connected to other nodes of a cluster (C{--node}).

L{RemoteView} is the part of L{vesyncd.core.hub.Hub} that the cluster package drives: which node
holds which plug (the leases), other nodes' events and whole-state messages read into this node's
record of their plugs, changes forwarded from other nodes, a plug taken over from another node.
L{applyEventData} reads what one event says of a plug.  The values arrive through the broker, so
every one is checked for its type and cut to a bound here; anything else is ignored, never raised.
Without a cluster none of this runs.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vesyncd.core.interfaces import IClusterSeam
from vesyncd.core.model import (ALIAS, ENERGY, EVENT_KINDS, FORGOTTEN, OFFLINE, ONLINE, PLUG_CONFLICT, PLUG_NEW,
                                PLUG_PENDING, POWER_ON, RELAY, RSSI, RUNTIME, EnergySummary, Event, InvalidArgument,
                                PlugState, UnknownPlug, plugFromWire)
from vesyncd.core.names import PlugNames

log = Logger()

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


class RemoteView:
    """The cluster side of L{vesyncd.core.hub.Hub} (a mixin: the hub is the only class that uses it).

    It works on the hub's registry and events (C{_plugs}, C{_pending}, C{_sessions}, C{_names},
    C{_add}, C{_emit}, C{_emitRemote}, C{reported}, C{snapshot} and the front-end calls a
    forwarded change makes) and on the cluster state the hub sets up: C{cluster}, the
    seam to the other nodes (None without a cluster); C{_remote}, plug id -> the node holding
    it; C{_remoteEnergy}, the energy figures other nodes last told; C{_held}, the reports of
    plugs being taken over, held while their stored row is read again.
    """

    clock: IReactorTime
    stats: collections.Counter[str]
    cluster: IClusterSeam | None
    _plugs: dict[str, PlugState]
    _pending: dict[str, PlugState]
    _sessions: dict[str, Any]
    _names: PlugNames
    _remote: dict[str, str]
    _remoteEnergy: dict[str, EnergySummary]
    _held: dict[str, list[tuple[str, float, int, int]]]
    _add: Callable[[PlugState], None]
    _emit: Callable[..., None]
    _emitRemote: Callable[[Event], None]
    reported: Callable[[PlugState, str, float, int, int], None]
    snapshot: Callable[[PlugState], PlugState]
    rename: Callable[[str, str | None], PlugState]
    setPowerOn: Callable[[str, str | None], PlugState]
    clearConflict: Callable[[str], PlugState]
    forget: Callable[[str], PlugState]

    def attachCluster(self, cluster: IClusterSeam) -> None:
        """Make this hub a node of C{cluster}: logins claim leases, commands for plugs held elsewhere
        are routed (see L{IClusterSeam})."""
        self.cluster = cluster

    def elsewhere(self, plugId: str) -> str | None:
        """The name of the other node that holds the plug's connection, or None (here, or nowhere)."""
        return self._remote.get(plugId)

    def remotePlugs(self) -> dict[str, str]:
        """Every plug held by another node: id -> node name."""
        return dict(self._remote)

    def adopted(self, plugId: str, stored: PlugState | None) -> None:
        """The cluster took the plug's lease and read its stored row again (None: none, or unreadable):
        take what another node may have moved on (the report mark, refused energy, alias, power-on
        policy), then account the reports held meanwhile."""
        held = self._held.pop(plugId, None)
        plug = self._plugs.get(plugId) or self._pending.get(plugId)
        if plug is None or plugId not in self._sessions:
            return
        self._remoteEnergy.pop(plugId, None)  # the ledger has read the totals again
        if stored is not None:
            if stored.report_until is not None and (plug.report_until is None
                                                    or stored.report_until > plug.report_until):
                plug.report_until = stored.report_until
            plug.energy_refused_wh = max(plug.energy_refused_wh, stored.energy_refused_wh)
            plug.power_on = stored.power_on
            if plug.first_identity is None and stored.first_identity is not None:
                plug.first_identity = stored.first_identity
            if stored.alias != plug.alias and plugId in self._plugs:
                self._takeAlias(plug, stored.alias)
        for peer, at, wattSeconds, seconds in held or ():
            self.reported(plug, peer, at, wattSeconds, seconds)

    def _takeAlias(self, plug: PlugState, alias: str | None) -> bool:
        """Give a plug the alias another node (or the store) says it has, unless it clashes here."""
        if alias is not None:
            try:
                self._names.checkAlias(plug, alias, self._plugs)
            except InvalidArgument:
                log.warn("plug {plug}: alias {alias!r} from another node clashes here; keeping {kept!r}",
                         plug=plug.id, alias=alias[:64], kept=plug.alias)
                return False
        previous = plug.alias
        plug.alias = alias
        self._names.renamed(plug, previous)
        return True

    def dropLocal(self, plugId: str, node: str) -> bool:
        """Another node took the plug's lease (it connected there): close the stale connection here
        without an C{offline} event, and note where the plug is now.  Returns whether one was closed."""
        session = self._sessions.pop(plugId, None)
        self._held.pop(plugId, None)
        if plugId in self._plugs or plugId in self._pending:
            self._remote[plugId] = node
        if session is None:
            return False
        log.info("plug {plug} connected to node {node}: closing its stale connection from {peer}", plug=plugId,
                 node=node, peer=session.connection.peer)
        self.stats["taken_over"] += 1
        session.lost(f"taken over by node {node}", replaced=True)
        session.connection.disconnect(f"plug connected to node {node}")
        return True

    def lapsed(self, plugId: str, node: str) -> None:
        """The plug's lease held by C{node} lapsed and this node removed it: the plug is offline
        (announced here, once in the cluster, as a local event)."""
        plug = self._plugs.get(plugId)
        if plug is None or plugId in self._sessions:
            return
        if self._remote.get(plugId) == node:
            del self._remote[plugId]
        if plug.online:
            plug.online = False
            self._emit(OFFLINE, plugId, self.clock.seconds(), reason=f"node {node} stopped renewing its lease")

    def remoteOwners(self, owners: dict[str, str], node: str) -> None:
        """Align the view with the leases (plug id -> node holding it; this node is C{node}): plugs held
        by another node are online there; a plug whose lease went is no longer held there.  Changes
        are announced as events from that node."""
        now = self.clock.seconds()
        for plugId, holder in owners.items():
            if holder == node or plugId in self._sessions:
                continue
            plug = self._plugs.get(plugId)
            if plug is None:
                continue
            self._remote[plugId] = holder
            if not plug.online:
                plug.online = True
                self._emitRemote(Event(ONLINE, plugId, now, {"address": plug.address, "firmware": plug.firmware},
                                       origin=holder))
        for plugId, holder in list(self._remote.items()):
            if owners.get(plugId) == holder:
                continue
            del self._remote[plugId]
            plug = self._plugs.get(plugId)
            if plug is not None and plug.online and plugId not in self._sessions:
                plug.online = False
                self._emitRemote(Event(OFFLINE, plugId, now, {"reason": f"no longer held by node {holder}"},
                                       origin=holder))

    def remoteEvent(self, node: str, kind: str, plugId: str, at: float, data: dict[str, Any]) -> None:
        """Apply an event another node announced to this node's view of the plug, and deliver it (with
        C{origin} C{node}) to the subscribers that take other nodes' events.

        The values come from the broker: anything of the wrong type is ignored, never raised.
        """
        if kind not in EVENT_KINDS or kind == PLUG_PENDING or not isinstance(plugId, str):
            return
        if plugId in self._sessions or plugId in self._pending:
            return  # connected here: the leases decide who keeps it (L{dropLocal}), this view stays
        plug = self._plugs.get(plugId)
        if kind == FORGOTTEN:
            if plug is not None:
                del self._plugs[plugId]
                self._names.remove(plug)
                self._remote.pop(plugId, None)
                self._remoteEnergy.pop(plugId, None)
                self._emitRemote(Event(kind, plugId, at, data, origin=node))
            return
        if plug is None:
            if self._names.squats(plugId) is not None or self._names.isPrefix(plugId):
                return
            plug = PlugState(id=plugId, first_seen=at)
            self._add(plug)
        self._applyRemote(plug, node, kind, at, data)
        self._emitRemote(Event(kind, plugId, at, data, origin=node))

    def _applyRemote(self, plug: PlugState, node: str, kind: str, at: float, data: dict[str, Any]) -> None:
        """Update the view of a plug held by C{node} from one of its events (see L{remoteEvent})."""
        if kind == OFFLINE:
            if self._remote.get(plug.id) == node:
                del self._remote[plug.id]
                plug.online = False
            return
        if kind in (ONLINE, RELAY, RUNTIME, ENERGY, RSSI):
            self._remote[plug.id] = node
            plug.online = True
            plug.last_seen = at
        if kind == ALIAS:
            alias = data.get("alias")
            if (alias is None or isinstance(alias, str)) and alias != plug.alias:
                self._takeAlias(plug, alias)
            return
        energy = applyEventData(plug, kind, at, data)
        if energy is not None:
            self._remoteEnergy[plug.id] = energy

    def pendingIds(self) -> set[str]:
        """The ids of the plugs waiting for approval."""
        return set(self._pending)

    def remoteState(self, node: str, doc: Any) -> None:
        """Take a plug's whole state as C{node}, which it is connected to, sent it (L{plugToWire}; after
        a link came back, events may have been missed) into the view, without events."""
        fresh = plugFromWire(doc)
        if fresh is None or fresh.id in self._sessions or fresh.id in self._pending or not fresh.online:
            return
        plug = self._plugs.get(fresh.id)
        if plug is None:
            if self._names.squats(fresh.id) is not None or self._names.isPrefix(fresh.id):
                return
            plug = PlugState(id=fresh.id, first_seen=fresh.first_seen)
            self._add(plug)
        if fresh.alias != plug.alias:
            self._takeAlias(plug, fresh.alias)
        for name in STATE:
            setattr(plug, name, getattr(fresh, name))
        plug.device = boundedDevice(fresh.device)
        plug.online = True
        self._remote[plug.id] = node

    def remoteChange(self, plugId: str, change: str, value: Any) -> None:
        """Apply a change another node's front end made to a plug connected here (see
        L{IClusterSeam.forward}), as if made here; a refused change is logged, never raised."""
        try:
            if change == "alias" and (value is None or isinstance(value, str)):
                self.rename(plugId, value)
            elif change == "power_on":
                self.setPowerOn(plugId, value)
            elif change == "clear_conflict":
                self.clearConflict(plugId)
            elif change == "forget":
                self.forget(plugId)
        except (InvalidArgument, UnknownPlug) as e:
            log.warn("plug {plug}: change {change} from another node refused: {error}", plug=plugId,
                     change=change[:20], error=str(e))

    def adoptWire(self, doc: Any, node: str) -> PlugState | None:
        """A routed command's result from C{node} (L{vesyncd.core.model.plugToWire}): take its readings
        into the view and return a snapshot of the plug, or None when the document is unusable."""
        fresh = plugFromWire(doc)
        if fresh is None:
            return None
        plug = self._plugs.get(fresh.id)
        if plug is None or plug.id in self._sessions:
            return fresh
        for name in READINGS:
            value = getattr(fresh, name)
            if value is not None:
                setattr(plug, name, value)
        return self.snapshot(plug)
