"""
The network-free core: the plug registry, command routing and events (each connection's
liveness and command queue are in L{vesyncd.core.session}, the rules against hostile plugs in
L{vesyncd.core.trust}).

The hub knows nothing of WebSocket, JSON framing, AMP, HTTP or MQTT.  A plug connection calls
L{Hub.login} with the decoded login and then L{PlugSession.received} with each decoded message;
front ends call L{Hub.switch}, L{Hub.refresh}, L{Hub.rename}, L{Hub.forget}, L{Hub.approve} and
read L{Hub.plugs} (or a page of them, L{Hub.plugPage}) and L{Hub.pending}, and they follow
changes with L{Hub.subscribe}.  Time comes from an injected C{IReactorTime}, so every rule here
is tested with C{task.Clock}; timeouts and the new-plug rules come from one L{Settings}.

Liveness: a plug is online from its login until its connection closes or it stays silent for
C{offline_after} seconds (see L{vesyncd.core.session}).

In a cluster (C{--node}, L{attachCluster}) the hub also keeps a view of the plugs connected to other
nodes (L{vesyncd.core.remoteview.RemoteView}, which the hub mixes in): their events arrive through
L{remoteEvent} (delivered with C{Event.origin} set, only to subscribers that want them), commands
for them go to their node through the L{IClusterSeam}, and L{elsewhere} tells which node holds a
plug.  Without a cluster none of this runs.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vesyncd.plugs import codec as m
from vesyncd.core.energy import MemoryLedger
from vesyncd.core.interfaces import IClusterSeam, IEnergyLedger, IPlugConnection, ISessionOwner
from vesyncd.core.model import (ALIAS, CAUSE_COMMAND, CAUSE_LOGIN, ENERGY, FORGOTTEN, OFFLINE, ONLINE, PLUG_CONFLICT,
                                PLUG_NEW, PLUG_PENDING, POWER_ON, RELAY, EnergySummary, Event, InvalidArgument,
                                PlugOffline, PlugState, UnknownPlug)
from vesyncd.core.names import PlugNames, matchPrefix
from vesyncd.core.remoteview import RemoteView
from vesyncd.core.session import firstProbePoint, Command, PlugSession
from vesyncd.core.subscribers import Subscribers
from vesyncd.core.settings import NEW_PLUGS_HOLD, Settings
from vesyncd.core.trust import NewIdLimit, RefusedReports, ReportBound, compareIdentity, identityOf, refuseLogin

log = Logger()

#: Characters of a relay change's cause kept (causes are ours, e.g. C{schedule:s1a2b3c}).
MAX_CAUSE = 64

DEFAULT_SETTINGS = Settings()

#: Reports of a plug taken over from another node held while its stored row is read again.
MAX_HELD_REPORTS = 16


@implementer(ISessionOwner)
class Hub(RemoteView):
    """The plug registry and the core API every front end uses."""

    def __init__(self, clock: IReactorTime, settings: Settings = DEFAULT_SETTINGS, *,
                 ledger: IEnergyLedger | None = None, known: Iterable[PlugState] = ()) -> None:
        self.clock = clock
        self.settings = settings
        self.ledger: IEnergyLedger = ledger if ledger is not None else MemoryLedger()
        self.started = clock.seconds()
        self.stats: collections.Counter[str] = collections.Counter()
        self._plugs: dict[str, PlugState] = {}
        self._sessions: dict[str, PlugSession] = {}
        self._pending: dict[str, PlugState] = {}
        self._names = PlugNames()
        self._subscribers = Subscribers()
        self._newIds = NewIdLimit(settings.max_new_plugs_per_minute)
        self._refusedReports = RefusedReports()
        #: The cluster this hub is a node of (None: a single node).
        self.cluster: IClusterSeam | None = None
        #: Plugs connected to another node: id -> that node's name.
        self._remote: dict[str, str] = {}
        #: Today's and lifetime energy of plugs last connected to another node, as that node last told
        #: (kept when the plug goes offline there: newer than what this node's ledger loaded at start).
        self._remoteEnergy: dict[str, EnergySummary] = {}
        #: Plugs taken over from another node whose stored row is being read: their held reports.
        self._held: dict[str, list[tuple[str, float, int, int]]] = {}
        for plug in known:
            plug.online = False
            self._add(plug)

    def _add(self, plug: PlugState) -> None:
        self._plugs[plug.id] = plug
        self._names.add(plug)

    def _named(self) -> list[PlugState]:
        """The known plugs ordered by name (case-insensitive), then id; the hub's own objects, not copies."""
        return self._names.ordered(self._plugs)

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None], remote: bool = True) -> Callable[[], None]:
        """Call C{callback(event)} for every event from now on; returns a function that stops it.

        In a cluster, events of plugs on other nodes (C{event.origin} set) reach C{callback} too
        unless C{remote} is False: subscribers that write or act (the store, MQTT state, automation,
        insight) take only this node's own events, watchers take all (L{Subscribers}).
        """
        return self._subscribers.add(callback, remote)

    def subscribers(self) -> int:
        """How many callbacks follow the events."""
        return len(self._subscribers)

    def _emit(self, kind: str, plugId: str, at: float, **data: Any) -> None:
        self._subscribers.deliver(Event(kind, plugId, at, data))

    def _emitRemote(self, event: Event) -> None:
        """Deliver an event from another node to the subscribers that take such events."""
        self._subscribers.deliverRemote(event)

    def _emitChange(self, kind: str, plugId: str, change: str, value: Any, **data: Any) -> None:
        """Announce a change a front end made; for a plug held by another node, the change also goes to
        that node (which stores and announces it) and the event here carries that node as its origin."""
        node = self._remote.get(plugId)
        if node is None or self.cluster is None:
            self._emit(kind, plugId, self.clock.seconds(), **data)
            return
        self.cluster.forward(node, plugId, change, value)
        self._emitRemote(Event(kind, plugId, self.clock.seconds(), data, origin=node))

    # -- what sessions ask (ISessionOwner) -----------------------------------------------------

    def count(self, counter: str) -> None:
        """Add one to a daemon-wide counter."""
        self.stats[counter] += 1

    def plugEvent(self, kind: str, plug: PlugState, at: float, **data: Any) -> None:
        """Emit an event about C{plug}, unless it waits for approval (then nobody may see it yet)."""
        if plug.id not in self._pending:
            self._emit(kind, plug.id, at, **data)

    def relayChanged(self, plug: PlugState, relay: bool | None, cause: str, at: float) -> None:
        """Note a relay state the plug reported, with an event when it changed."""
        if relay is None or relay is plug.relay:
            return
        previous = plug.relay
        plug.relay, plug.relay_cause, plug.relay_changed = relay, cause, at
        self.plugEvent(RELAY, plug, at, relay=relay, cause=cause, previous=previous)

    def reported(self, plug: PlugState, peer: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Account a C{/report}, or refuse it when it claims more than the wall time allows (see L{ReportBound}).

        A plug just taken over from another node has its reports held (at most L{MAX_HELD_REPORTS})
        until its stored row is read again (L{adopted}).
        """
        if plug.id in self._pending:
            return  # a plug nobody approved has no energy on record
        held = self._held.get(plug.id)
        if held is not None:
            if len(held) < MAX_HELD_REPORTS:
                held.append((peer, at, wattSeconds, seconds))
            else:
                self.stats["reports_held_dropped"] += 1
            return
        reason = ReportBound.check(plug, at, wattSeconds, seconds)
        if reason is not None:
            self._refusedReports.refuse(self.stats, plug, peer, wattSeconds, seconds, reason)
            return
        plug.last_report = {"watt_seconds": wattSeconds, "seconds": seconds, "at": at}
        self.stats["reports"] += 1
        self.ledger.record(plug.id, at, wattSeconds, seconds)
        summary = self.ledger.summary(plug.id, at)
        self._emit(ENERGY, plug.id, at, watt_seconds=wattSeconds, seconds=seconds,
                   average_w=(wattSeconds / seconds) if seconds else None,
                   today_wh=summary.today_wh, lifetime_wh=summary.lifetime_wh)

    def sessionEnded(self, session: Any, why: str, replaced: bool) -> None:
        """Forget a closed session; its plug is offline unless a new connection replaced it."""
        if self._sessions.get(session.plug.id) is session:
            del self._sessions[session.plug.id]
        if replaced:
            return
        plug = session.plug
        if plug.id not in self._sessions:
            self._held.pop(plug.id, None)
            if self.cluster is not None and plug.id not in self._remote:
                self.cluster.released(plug.id)
        if plug.online and plug.id not in self._sessions and plug.id not in self._remote:
            plug.online = False
            self.plugEvent(OFFLINE, plug, self.clock.seconds(), reason=why)

    # -- plug side -----------------------------------------------------------------------------

    def login(self, connection: IPlugConnection, login: m.Login, encrypted: bool = False) -> PlugSession | None:
        """Register a plug's login on C{connection}; a live older connection with that id is replaced.

        Returns None when the login is refused (the connection is then closed): an unknown id that
        is another plug's alias, its id in other case or the start of its id, or more unknown ids
        than the settings allow (see L{Settings}).
        """
        now = self.clock.seconds()
        plugId = login.id
        plug = self._plugs.get(plugId) or self._pending.get(plugId)
        isNew = plug is None
        if plug is None:
            refusal = self._admit(plugId)
            if refusal is not None:
                refuseLogin(self.stats, connection, plugId, refusal, self.settings)
                return None
            plug = PlugState(id=plugId, first_seen=now)
            if self.settings.new_plugs == NEW_PLUGS_HOLD:
                self._pending[plugId] = plug
            else:
                self._add(plug)
        old = self._sessions.pop(plugId, None)
        if old is not None:
            log.info("plug {plug} logged in again from {peer}: replacing its connection from {old}",
                     plug=plugId, peer=connection.peer, old=old.connection.peer)
            self.stats["replaced"] += 1
            old.lost("replaced by a new connection", replaced=True)
            old.connection.disconnect("replaced by a new login")
        elif not isNew:
            self.stats["reconnects"] += 1
        self.stats["logins"] += 1
        conflict = compareIdentity(plug, identityOf(login.account, connection.peer, login.firmVersion), now)
        wasOnline = plug.online
        plug.online = True
        plug.address = connection.peer
        plug.firmware = login.firmVersion or None
        plug.encrypted = encrypted
        plug.device = {
            k: getattr(login, k)
            for k in ("deviceName", "deviceVersion", "deviceVersionCode", "type", "apptype",
                      "firmName", "firmVersion", "firmVersionCode")
        }
        plug.last_seen = plug.connected_since = now
        ReportBound.start(plug, now)
        session = self._sessions[plugId] = PlugSession(self, connection, plug, self.settings,
                                                       spreadAt=firstProbePoint(self.stats["logins"]))
        if self.cluster is not None:
            wasRemote = self._remote.pop(plugId, None)
            if wasRemote is not None:
                wasOnline = False  # online here now: this node says so
            self._held.setdefault(plugId, [])
            self.cluster.claimed(plugId)
        connection.send(m.loginReply(now))
        if plugId in self._pending:
            if isNew:
                log.info("plug {plug} at {peer} is new: holding it until it is approved", plug=plugId,
                         peer=connection.peer)
                self._emit(PLUG_PENDING, plugId, now, address=plug.address, firmware=plug.firmware)
            self.relayChanged(plug, login.relay, CAUSE_LOGIN, now)
            return session
        if isNew:
            self._emit(PLUG_NEW, plugId, now, address=plug.address, firmware=plug.firmware)
        if conflict is not None:
            self.stats["conflicts"] += 1
            log.warn("plug {plug} logged in from {peer} with {fields} other than first seen ({first}): "
                     "another device may be using its id", plug=plugId, peer=connection.peer,
                     fields=", ".join(conflict["fields"]), first=conflict["first"])
            self._emit(PLUG_CONFLICT, plugId, now, fields=conflict["fields"], first=conflict["first"],
                       now=conflict["now"])
        if not wasOnline:
            self._emit(ONLINE, plugId, now, address=plug.address, firmware=plug.firmware)
        self.relayChanged(plug, login.relay, CAUSE_LOGIN, now)
        return session

    def _admit(self, plugId: str) -> str | None:
        """Why an id never seen before may not log in now, or None."""
        squat = self._names.squats(plugId)
        if squat is not None:
            return squat
        if not self._newIds.allow(self.clock.seconds()):
            return "new_rate"
        if self._names.isPrefix(plugId):
            return "prefix"
        if self.settings.new_plugs == NEW_PLUGS_HOLD and len(self._pending) >= self.settings.max_pending:
            offline = [p for p in self._pending.values() if not p.online]
            if not offline:
                return "pending_full"
            # The oldest that is not even connected makes room: a real plug reconnects and waits again.
            del self._pending[min(offline, key=lambda p: p.first_seen or 0.0).id]
        return None

    # -- front-end API -------------------------------------------------------------------------

    def snapshot(self, plug: PlugState) -> PlugState:
        """A copy of a plug's state that later changes will not touch."""
        # A bare instance given a copy of the attributes: a fifth of copy.copy's time (which goes through
        # __reduce_ex__), that matters when a front end reads 10,000 plugs in one turn.
        copied = object.__new__(PlugState)
        attributes = copied.__dict__
        attributes.update(plug.__dict__)
        attributes["device"] = dict(plug.device)
        return copied

    def plugs(self) -> list[PlugState]:
        """Copies of every known plug, ordered by name (plugs waiting for approval are not among them)."""
        return [self.snapshot(p) for p in self._named()]

    def plugsInPlace(self) -> tuple[PlugState, ...]:
        """The known plugs ordered as L{plugs}, but the hub's own objects, not copies: for a front end
        that reads a few fields of every plug within one call (filtering and sorting a page) and
        copies only what it answers with.  Never change them, nor keep them past the call."""
        return tuple(self._named())

    def readings(self) -> list[tuple[str, str | None, bool, bool | None, float | None, float | None, float,
                                     int | None, float | None]]:
        """Per known plug, ordered as L{plugs}: (id, alias, online, relay, power_w, voltage_v, lifetime
        watt-hours, rssi_dbm, last_seen), read without copying the plugs (/metrics of 10,000 plugs)."""
        return self.readingsOf(self._named())

    def readingsOf(self, plugs: Iterable[PlugState]) -> list[tuple[str, str | None, bool, bool | None, float | None,
                                                                   float | None, float, int | None, float | None]]:
        """L{readings}' rows for C{plugs} (taken from L{plugsInPlace}, perhaps some turns ago), in
        their order; a plug forgotten since is left out."""
        known = self._plugs
        return [(p.id, p.alias, p.online, p.relay, p.power_w, p.voltage_v, self.lifetime(p.id), p.rssi_dbm,
                 p.last_seen) for p in plugs if known.get(p.id) is p]

    def plugPage(self, offset: int, limit: int) -> tuple[list[PlugState], int]:
        """Copies of at most C{limit} known plugs from position C{offset} of the order of L{plugs}, and
        how many plugs are known; only the page's plugs are copied."""
        named = self._named()
        return [self.snapshot(p) for p in named[max(0, offset):max(0, offset) + max(0, limit)]], len(named)

    def pending(self) -> list[PlugState]:
        """Copies of the plugs that wait for approval, oldest first."""
        return [self.snapshot(p) for p in sorted(self._pending.values(), key=lambda p: (p.first_seen or 0.0, p.id))]

    def approve(self, ref: str) -> PlugState:
        """Take a plug that waits for approval (by id or unique id prefix) into the known plugs.

        It then is announced as a first login would be (C{plug_new}, C{online}, C{relay}).
        @raise UnknownPlug: no waiting plug matches; L{AmbiguousPlug}: a prefix matches several;
            L{InvalidArgument}: its id has become another plug's alias since it logged in.
        """
        plug = self._pending.get(ref) if isinstance(ref, str) else None
        if plug is None:
            plug = matchPrefix(ref, self._pending.values(), "waiting for approval")
        if self._names.squats(plug.id) is not None:
            # Renamed meanwhile: a known plug's alias or id now is this id (in some case).
            raise InvalidArgument(f"plug {plug.id}'s id is now another plug's name; rename that plug first")
        del self._pending[plug.id]
        self._add(plug)
        now = self.clock.seconds()
        log.info("plug {plug} approved", plug=plug.id)
        self._emit(PLUG_NEW, plug.id, now, address=plug.address, firmware=plug.firmware)
        if plug.online:
            self._emit(ONLINE, plug.id, now, address=plug.address, firmware=plug.firmware)
        if plug.relay is not None:
            self._emit(RELAY, plug.id, now, relay=plug.relay, cause=plug.relay_cause or CAUSE_LOGIN, previous=None)
        return self.snapshot(plug)

    def clearConflict(self, ref: str) -> PlugState:
        """Accept the latest login's account, host and firmware as the plug's own and clear its conflict."""
        plug = self.resolve(ref)
        if plug.conflict is not None:
            plug.first_identity = dict(plug.conflict["now"])
            plug.conflict = None
            self._emitChange(PLUG_CONFLICT, plug.id, "clear_conflict", None, fields=[], first=plug.first_identity,
                             now=plug.first_identity)
        return self.snapshot(plug)

    def energy(self, plugId: str) -> EnergySummary:
        """Today's and lifetime watt-hours of a plug, from the ledger (for a plug last connected to another
        node, until this node has read its totals again: as that node last told)."""
        remote = self._remoteSummary(plugId)
        return remote if remote is not None else self.ledger.summary(plugId, self.clock.seconds())

    def lifetime(self, plugId: str) -> float:
        """A plug's lifetime watt-hours, as L{energy} gives them."""
        remote = self._remoteSummary(plugId)
        return remote.lifetime_wh if remote is not None else self.ledger.lifetime(plugId)

    def _remoteSummary(self, plugId: str) -> EnergySummary | None:
        """What another node last told of the plug's energy, while that is what counts: the plug is
        not connected here, or this node has not read its totals again since it came."""
        remote = self._remoteEnergy.get(plugId)
        if remote is not None and (plugId not in self._sessions or plugId in self._held):
            return remote
        return None

    def resolve(self, ref: str) -> PlugState:
        """Find a plug by id, alias (both case-insensitive) or unique id prefix.

        @raise UnknownPlug: nothing matches.
        @raise AmbiguousPlug: the name is one plug's alias and another's id, or an id prefix
            matches several plugs; the message lists them.
        """
        return self._names.resolve(ref, self._plugs)

    def get(self, ref: str) -> PlugState:
        """A copy of the plug C{ref} names (see L{resolve})."""
        return self.snapshot(self.resolve(ref))

    def _command(self, ref: str, kind: str, target: bool | None = None, cause: str = CAUSE_COMMAND) -> Deferred:
        try:
            plug = self.resolve(ref)
        except UnknownPlug as e:
            self.stats["commands_unknown"] += 1
            return fail(e)
        session = self._sessions.get(plug.id)
        if session is None:
            node = self._remote.get(plug.id)
            if node is not None and self.cluster is not None:
                self.stats["commands_routed"] += 1
                return self.cluster.route(node, plug.id, kind, cause)
            self.stats["commands_offline"] += 1
            return fail(PlugOffline(f"plug {plug.name} is offline"))
        return session.enqueue(Command(kind=kind, result=Deferred(), target=target, cause=cause))

    def runRouted(self, plugId: str, kind: str, cause: str = CAUSE_COMMAND) -> Deferred:
        """Carry out a command another node routed here (see L{IClusterSeam.route}) on this node's own
        connection to the plug with this exact id; never routed further, L{PlugOffline} when it is not here."""
        if kind not in ("on", "off", "toggle", "refresh"):
            return fail(InvalidArgument(f"unknown command {str(kind)[:20]!r}"))
        plug = self._plugs.get(plugId) or self._pending.get(plugId)
        session = self._sessions.get(plugId)
        if plug is None:
            return fail(UnknownPlug(f"no plug {plugId}"))
        if session is None:
            return fail(PlugOffline(f"plug {plug.name} is not connected to this node"))
        target = {"on": True, "off": False}.get(kind)
        return session.enqueue(Command(kind=kind, result=Deferred(), target=target, cause=str(cause)[:MAX_CAUSE]))

    def switch(self, ref: str, on: bool | None, cause: str = CAUSE_COMMAND) -> Deferred:
        """Switch a plug on (True), off (False) or over (None); fires with the confirmed state.

        The result arrives when the plug's C{/runtimeInfo} confirms the relay; the C{relay} event
        and the plug's C{relay_cause} then carry C{cause} (C{command}, or the automation's
        C{timer}, C{schedule:<id>}, C{away}, C{rule:<id>}).  Errors (L{UnknownPlug},
        L{PlugOffline}, L{QueueFull}) come at once, L{CommandTimeout} after the settings'
        C{command_timeout} seconds.
        """
        kind = "toggle" if on is None else ("on" if on else "off")
        return self._command(ref, kind, on, str(cause)[:MAX_CAUSE])

    def announce(self, kind: str, plugId: str, **data: Any) -> None:
        """Emit an event of C{kind} about C{plugId} to every subscriber, stamped with the hub's clock
        (the automation engine's C{rule} and C{rule_running} events); nothing for a plug waiting
        for approval."""
        if plugId not in self._pending:
            self._emit(kind, plugId, self.clock.seconds(), **data)

    def refresh(self, ref: str) -> Deferred:
        """Ask a plug for fresh power, voltage and relay readings; fires with its new state."""
        return self._command(ref, "refresh")

    def onlineIds(self) -> list[str]:
        """The ids of the known plugs with a live connection, in the order they logged in."""
        return [plugId for plugId in self._sessions if plugId in self._plugs]

    def rename(self, ref: str, alias: str | None) -> PlugState:
        """Set (or, with None or an empty string, clear) a plug's alias; aliases are unique.

        @raise InvalidArgument: the alias is too long, unprintable, taken by another plug, or
            another plug's id (in any case).
        """
        plug = self.resolve(ref)
        alias = (alias or "").strip() or None
        if alias is not None:
            self._names.checkAlias(plug, alias, self._plugs)
        if plug.alias != alias:
            previous = plug.alias
            plug.alias = alias
            self._names.renamed(plug, previous)
            self._emitChange(ALIAS, plug.id, "alias", alias, alias=alias, previous=previous)
        return self.snapshot(plug)

    def setPowerOn(self, ref: str, policy: str | None) -> PlugState:
        """Set what a plug does when it logs in after an outage: 'on', 'off', 'last' or None."""
        if policy not in (None, "on", "off", "last"):
            raise InvalidArgument("power-on policy is one of on, off, last")
        plug = self.resolve(ref)
        if plug.power_on != policy:
            plug.power_on = policy
            self._emitChange(POWER_ON, plug.id, "power_on", policy, power_on=policy)
        return self.snapshot(plug)

    def forget(self, ref: str) -> PlugState:
        """Forget a plug: drop its state and alias, and close its connection if it has one."""
        plug = self.resolve(ref)
        session = self._sessions.get(plug.id)
        if session is not None:
            session.lost("forgotten", replaced=True)
            session.connection.disconnect("plug forgotten")
        del self._plugs[plug.id]
        self._names.remove(plug)
        self.ledger.forget(plug.id)
        self._emitChange(FORGOTTEN, plug.id, "forget", None, alias=plug.alias)
        self._remote.pop(plug.id, None)
        self._remoteEnergy.pop(plug.id, None)
        return plug

    def status(self) -> dict[str, Any]:
        """Daemon-wide counters and gauges for C{info}, metrics and the doctor."""
        now = self.clock.seconds()
        pendingOnline = sum(1 for p in self._pending.values() if p.online)
        return {
            "uptime_s": now - self.started,
            "plugs_known": len(self._plugs),
            "plugs_online": len(self._sessions) - pendingOnline,
            "plugs_pending": len(self._pending),
            "counters": dict(self.stats),
        }

    def closeAll(self, reason: str) -> int:
        """Close every plug connection now (daemon shutdown): pending commands fail, plugs go
        offline with C{reason}, and those events reach subscribers before this returns."""
        sessions = list(self._sessions.values())
        for session in sessions:
            session.lost(reason)
            session.connection.disconnect(reason)
        return len(sessions)

    def isOnline(self, plugId: str) -> bool:
        """True while a known plug has a live connection."""
        return plugId in self._sessions and plugId in self._plugs

    def session(self, plugId: str) -> PlugSession | None:
        """The live session of the plug with this exact id (known or waiting), or None."""
        return self._sessions.get(plugId)

    def sessions(self) -> list[PlugSession]:
        """Every live session (known and waiting plugs)."""
        return list(self._sessions.values())
