"""
The network-free core: the plug registry, plug state, liveness, command routing and events.

The hub knows nothing of WebSocket, JSON framing, AMP, HTTP or MQTT.  A plug connection calls
L{Hub.login} with the decoded login and then L{PlugSession.received} with each decoded message;
front ends call L{Hub.switch}, L{Hub.refresh}, L{Hub.rename}, L{Hub.forget} and read
L{Hub.plugs}, and they follow changes with L{Hub.subscribe}.  Time comes from an injected
C{IReactorTime}, so every rule here is tested with C{task.Clock}.

Liveness: a plug is online from its login until its connection closes or it stays silent for
C{offlineAfter} seconds.  After C{keepaliveIdle} seconds of silence the hub sends the plug a
C{/ka} (and again every C{probeInterval} seconds); a live plug answers with C{/kr}.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from . import messages as m
from .energy import EnergySummary, MemoryLedger
from .interfaces import IEnergyLedger, IPlugConnection
from .model import (  # noqa: F401 - re-exported: front ends import them from the hub
    ALIAS, CAUSE_BUTTON, CAUSE_COMMAND, CAUSE_LOGIN, CAUSE_PLUG, CAUSE_TIMER, ENERGY, EVENT_KINDS,
    FORGOTTEN, OFFLINE, ONLINE, PLUG_NEW, POWER_ON, RELAY, RSSI, RUNTIME, AmbiguousPlug, CommandError,
    CommandTimeout, Event, InvalidArgument, PlugOffline, PlugState, QueueFull, UnknownPlug, isoTime)

log = Logger()

#: Defaults, chosen so that a plug that vanishes without a FIN is offline within 2 minutes.
KEEPALIVE_IDLE = 60.0
PROBE_INTERVAL = 15.0
OFFLINE_AFTER = 110.0
COMMAND_TIMEOUT = 5.0
#: Commands waiting for one plug beyond this are refused at once.
MAX_QUEUED_COMMANDS = 32
#: Unknown URIs remembered per plug (each is logged once).
MAX_UNKNOWN_URIS = 32
MAX_ALIAS = 64


@dataclass
class _Command:
    """One command waiting for, or waiting on, a plug."""

    kind: str  # "on", "off", "toggle", "refresh"
    result: Deferred
    target: bool | None = None
    timeout: IDelayedCall | None = None


def _noop() -> None:
    pass


def cancelCall(call: IDelayedCall | None) -> None:
    """Cancel a pending call and let go of what it holds.

    A cancelled Twisted DelayedCall stays in the reactor's heap until its time comes or the heap
    is compacted, keeping its function and arguments (here: a whole closed session) alive; with
    thousands of plugs reconnecting that is megabytes held for a minute.
    """
    if call is not None and call.active():
        call.cancel()
        call.func, call.args, call.kw = _noop, (), {}  # type: ignore[attr-defined]


class PlugSession:
    """One logged-in connection of one plug: keeps it alive, routes its messages and commands."""

    def __init__(self, hub: "Hub", connection: IPlugConnection, plug: PlugState) -> None:
        self.hub = hub
        self.connection = connection
        self.plug = plug
        self.lastHeard = hub.clock.seconds()
        self.closed = False
        # A list and a lazily made set: an empty deque costs ~620 bytes and an empty set ~220, per
        # connected plug, and the queue holds at most MAX_QUEUED_COMMANDS.
        self._queue: list[_Command] = []
        self._current: _Command | None = None
        self._unknownSeen: set[str] | None = None
        self._liveness: IDelayedCall | None = None
        self._scheduleLiveness(hub.keepaliveIdle)

    # -- liveness -----------------------------------------------------------------------------

    def _scheduleLiveness(self, delay: float) -> None:
        self._liveness = self.hub.clock.callLater(max(delay, 0.001), self._checkLiveness)

    def _checkLiveness(self) -> None:
        """Probe a quiet plug with C{/ka}, and drop one silent past the offline deadline."""
        self._liveness = None
        if self.closed:
            return
        hub = self.hub
        silent = hub.clock.seconds() - self.lastHeard
        if silent >= hub.offlineAfter:
            log.info("plug {plug} silent for {silent:.0f} s: marking offline", plug=self.plug.id, silent=silent)
            hub.stats["liveness_timeouts"] += 1
            self.connection.disconnect("keepalive deadline passed")
            self.lost("silent for {:.0f} s".format(silent))
            return
        if silent >= hub.keepaliveIdle:
            self.connection.send(m.keepAliveProbe())
            nextCheck = min(hub.probeInterval, hub.offlineAfter - silent)
        else:
            nextCheck = min(hub.keepaliveIdle - silent, hub.offlineAfter - silent)
        self._scheduleLiveness(nextCheck)

    # -- messages from the plug ----------------------------------------------------------------

    def received(self, message: m.Message) -> None:
        """Handle one decoded message from the plug (never raises for a well-typed message)."""
        if self.closed:
            return
        now = self.hub.clock.seconds()
        self.lastHeard = now
        self.plug.last_seen = now
        handler = getattr(self, "handle_" + type(message).__name__, None)
        if handler is None:  # pragma: no cover - every decoded type has a handler
            return
        handler(message, now)
        if message.extra:
            self._noteOnce("extra:" + type(message).__name__, "plug {plug} sent unknown fields {fields} in {kind}",
                           fields=sorted(message.extra)[:10], kind=type(message).__name__)

    def _noteOnce(self, key: str, fmt: str, **kw: Any) -> None:
        """Log something odd once per plug and key, remembering a bounded number of keys."""
        if self._unknownSeen is None:
            self._unknownSeen = set()
        if key in self._unknownSeen or len(self._unknownSeen) >= MAX_UNKNOWN_URIS:
            return
        self._unknownSeen.add(key)
        log.info(fmt, plug=self.plug.id, peer=self.connection.peer, **kw)

    def handle_KeepAlive(self, message: m.KeepAlive, now: float) -> None:
        """Answer a plug's C{/ka} with C{/kr} and the time, at once."""
        self.connection.send(m.keepAliveReply(now))
        if message.rssi is not None and message.rssi != self.plug.rssi_dbm:
            self.plug.rssi_dbm = message.rssi
            self.hub._emit(RSSI, self.plug.id, now, rssi_dbm=message.rssi)

    def handle_KeepAliveReply(self, message: m.KeepAliveReply, now: float) -> None:
        """A bare C{/kr} answers our probe; hearing it is all that matters."""

    def handle_Report(self, message: m.Report, now: float) -> None:
        """Account an energy report (never answered)."""
        if message.seconds > 24 * 3600 or message.wattSeconds > 4000 * max(message.seconds, 1):
            # More than a day, or more than a 16 A plug could draw: refuse to poison the counter.
            self._noteOnce("bad-report", "plug {plug} at {peer} sent an implausible report: e={e} t={t}",
                           e=message.wattSeconds, t=message.seconds)
            self.hub.stats["reports_rejected"] += 1
            return
        self.hub._energy(self.plug, now, message.wattSeconds, message.seconds)

    def handle_RuntimeInfo(self, message: m.RuntimeInfo, now: float) -> None:
        """Take new readings, settle the command waiting for them, and note relay changes."""
        plug = self.plug
        plug.meastate = message.meastate
        plug.power_w = message.power[0] if message.power else None
        plug.voltage_v = message.voltage[0] if message.voltage else None
        plug.current_a = message.current[0] if message.current else None
        plug.runtime_at = now
        command = self._current
        cause = CAUSE_COMMAND if command is not None and command.kind != "refresh" else CAUSE_PLUG
        self.hub._setRelay(plug, message.relay, cause, now)
        self.hub._emit(RUNTIME, plug.id, now, power_w=plug.power_w, voltage_v=plug.voltage_v,
                       relay=message.relay)
        if command is not None:
            self._finish(command, message.relay)

    def handle_State(self, message: m.State, now: float) -> None:
        """A button press on the plug changed its relay."""
        self.hub._setRelay(self.plug, message.relay, CAUSE_BUTTON, now)

    def handle_EvTimer(self, message: m.EvTimer, now: float) -> None:
        """A timer stored on the plug fired."""
        self.plug.timer = {"fired": message.timerId, "aname": message.aname, "at": now}
        if message.relay is not None:
            self.hub._setRelay(self.plug, message.relay, CAUSE_TIMER, now)

    def handle_Timer(self, message: m.Timer, now: float) -> None:
        """Keep the plug's answer to a timer change."""
        self.plug.timer = {"error": message.error, **dict(message.extra), "at": now}

    def handle_Trigger(self, message: m.Trigger, now: float) -> None:
        """A power trigger fired on the plug."""
        self.plug.trigger = {**(self.plug.trigger or {}), "fired": message.triggerType, "at": now}

    def handle_TriggerCount(self, message: m.TriggerCount, now: float) -> None:
        """Keep the plug's trigger counters."""
        self.plug.trigger = {**(self.plug.trigger or {}), "above": message.above, "below": message.below}

    def handle_CtlFlags(self, message: m.CtlFlags, now: float) -> None:
        """Keep the plug's control flags."""
        self.plug.ctl_flags = {"flag": message.flag, "set": message.set}

    def handle_Unknown(self, message: m.Unknown, now: float) -> None:
        """Tolerate a URI we do not know; log it once per plug."""
        self.hub.stats["unknown_uris"] += 1
        self._noteOnce("uri:" + message.uri, "plug {plug} at {peer} sent unknown uri {uri!r}", uri=message.uri)

    # -- commands ------------------------------------------------------------------------------

    def enqueue(self, command: _Command) -> Deferred:
        """Queue a command; it runs when every earlier command to this plug has finished."""
        if len(self._queue) >= MAX_QUEUED_COMMANDS:
            return fail(QueueFull(f"{MAX_QUEUED_COMMANDS} commands already wait for plug {self.plug.name}"))
        self._queue.append(command)
        self._next()
        return command.result

    def _next(self) -> None:
        if self._current is not None or not self._queue or self.closed:
            return
        command = self._current = self._queue.pop(0)
        if command.kind == "refresh":
            payload = m.getRuntime()
        else:
            if command.kind == "toggle":
                command.target = not bool(self.plug.relay)
            payload = m.relayCommand(bool(command.target))
        command.timeout = self.hub.clock.callLater(self.hub.commandTimeout, self._timedOut, command)
        self.connection.send(payload)

    def _timedOut(self, command: _Command) -> None:
        command.timeout = None
        if self._current is command:
            self._current = None
            self.hub.stats["commands_timeout"] += 1
            command.result.errback(CommandTimeout(
                f"plug {self.plug.name} did not answer within {self.hub.commandTimeout:g} s"))
            self._next()

    def _finish(self, command: _Command, relay: bool | None) -> None:
        self._current = None
        if command.timeout is not None and command.timeout.active():
            command.timeout.cancel()
        if command.target is not None and relay is not command.target:
            self.hub.stats["commands_failed"] += 1
            command.result.errback(CommandError(
                f"plug {self.plug.name} reports relay {'on' if relay else 'off'} after the command"))
        else:
            self.hub.stats["commands_ok"] += 1
            command.result.callback(self.hub.snapshot(self.plug))
        self._next()

    # -- end -----------------------------------------------------------------------------------

    def lost(self, why: str, replaced: bool = False) -> None:
        """The connection is gone: fail pending commands, and mark the plug offline unless replaced."""
        if self.closed:
            return
        self.closed = True
        cancelCall(self._liveness)
        self._liveness = None
        pending = ([self._current] if self._current else []) + self._queue
        self._current = None
        self._queue = []
        for command in pending:
            if command.timeout is not None and command.timeout.active():
                command.timeout.cancel()
            self.hub.stats["commands_offline"] += 1
            command.result.errback(PlugOffline(f"plug {self.plug.name} went away ({why})"))
        self.hub._sessionEnded(self, why, replaced)


class Hub:
    """The plug registry and the core API every front end uses."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        keepaliveIdle: float = KEEPALIVE_IDLE,
        probeInterval: float = PROBE_INTERVAL,
        offlineAfter: float = OFFLINE_AFTER,
        commandTimeout: float = COMMAND_TIMEOUT,
        ledger: IEnergyLedger | None = None,
        known: Iterable[PlugState] = (),
    ) -> None:
        if not 0 < keepaliveIdle < offlineAfter:
            raise ValueError("keepalive idle time must be positive and shorter than the offline deadline")
        self.clock = clock
        self.keepaliveIdle = keepaliveIdle
        self.probeInterval = max(probeInterval, 0.5)
        self.offlineAfter = offlineAfter
        self.commandTimeout = commandTimeout
        self.ledger: IEnergyLedger = ledger if ledger is not None else MemoryLedger()
        self.started = clock.seconds()
        self.stats: collections.Counter[str] = collections.Counter()
        self._plugs: dict[str, PlugState] = {}
        self._sessions: dict[str, PlugSession] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        for plug in known:
            plug.online = False
            self._plugs[plug.id] = plug

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call C{callback(event)} for every event from now on; returns a function that stops it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, kind: str, plugId: str, at: float, **data: Any) -> None:
        event = Event(kind, plugId, at, data)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.failure("event subscriber {callback!r} failed on {kind}", callback=callback, kind=kind)

    # -- plug side -----------------------------------------------------------------------------

    def login(self, connection: IPlugConnection, login: m.Login, encrypted: bool = False) -> PlugSession:
        """Register a plug's login on C{connection}; a live older connection with that id is replaced."""
        now = self.clock.seconds()
        plug = self._plugs.get(login.id)
        isNew = plug is None
        if plug is None:
            plug = self._plugs[login.id] = PlugState(id=login.id, first_seen=now)
        old = self._sessions.pop(login.id, None)
        if old is not None:
            log.info("plug {plug} logged in again from {peer}: replacing its connection from {old}",
                     plug=login.id, peer=connection.peer, old=old.connection.peer)
            self.stats["replaced"] += 1
            old.lost("replaced by a new connection", replaced=True)
            old.connection.disconnect("replaced by a new login")
        elif not isNew:
            self.stats["reconnects"] += 1
        self.stats["logins"] += 1
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
        session = self._sessions[login.id] = PlugSession(self, connection, plug)
        connection.send(m.loginReply(now))
        if isNew:
            self._emit(PLUG_NEW, plug.id, now, address=plug.address, firmware=plug.firmware)
        if not wasOnline:
            self._emit(ONLINE, plug.id, now, address=plug.address, firmware=plug.firmware)
        self._setRelay(plug, login.relay, CAUSE_LOGIN, now)
        return session

    def _sessionEnded(self, session: PlugSession, why: str, replaced: bool) -> None:
        if self._sessions.get(session.plug.id) is session:
            del self._sessions[session.plug.id]
        if replaced:
            return
        plug = session.plug
        if plug.online and plug.id not in self._sessions:
            plug.online = False
            now = self.clock.seconds()
            self._emit(OFFLINE, plug.id, now, reason=why)

    def _setRelay(self, plug: PlugState, relay: bool | None, cause: str, now: float) -> None:
        if relay is None or relay is plug.relay:
            return
        previous = plug.relay
        plug.relay, plug.relay_cause, plug.relay_changed = relay, cause, now
        self._emit(RELAY, plug.id, now, relay=relay, cause=cause, previous=previous)

    def _energy(self, plug: PlugState, now: float, wattSeconds: int, seconds: int) -> None:
        plug.last_report = {"watt_seconds": wattSeconds, "seconds": seconds, "at": now}
        self.stats["reports"] += 1
        self.ledger.record(plug.id, now, wattSeconds, seconds)
        summary = self.ledger.summary(plug.id, now)
        self._emit(ENERGY, plug.id, now, watt_seconds=wattSeconds, seconds=seconds,
                   average_w=(wattSeconds / seconds) if seconds else None,
                   today_wh=summary.today_wh, lifetime_wh=summary.lifetime_wh)

    # -- front-end API -------------------------------------------------------------------------

    def snapshot(self, plug: PlugState) -> PlugState:
        """A copy of a plug's state that later changes will not touch."""
        return replace(plug, device=dict(plug.device))

    def plugs(self) -> list[PlugState]:
        """Copies of every known plug, ordered by name."""
        return [self.snapshot(p) for p in sorted(self._plugs.values(), key=lambda p: (p.name.lower(), p.id))]

    def energy(self, plugId: str) -> EnergySummary:
        """Today's and lifetime watt-hours of a plug, from the ledger."""
        return self.ledger.summary(plugId, self.clock.seconds())

    def resolve(self, ref: str) -> PlugState:
        """Find a plug by id, alias (case-insensitive) or unique id prefix.

        @raise UnknownPlug: nothing matches.
        @raise AmbiguousPlug: an id prefix matches several plugs.
        """
        if not isinstance(ref, str) or not ref:
            raise UnknownPlug("no plug given")
        plug = self._plugs.get(ref)
        if plug is not None:
            return plug
        folded = ref.casefold()
        for plug in self._plugs.values():
            if plug.alias is not None and plug.alias.casefold() == folded:
                return plug
        matches = [p for p in self._plugs.values() if p.id.casefold().startswith(folded)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousPlug(f"{ref!r} matches {len(matches)} plugs: give more of the id")
        raise UnknownPlug(f"no plug is called {ref!r}")

    def get(self, ref: str) -> PlugState:
        """A copy of the plug C{ref} names (see L{resolve})."""
        return self.snapshot(self.resolve(ref))

    def _command(self, ref: str, kind: str, target: bool | None = None) -> Deferred:
        try:
            plug = self.resolve(ref)
        except UnknownPlug as e:
            self.stats["commands_unknown"] += 1
            return fail(e)
        session = self._sessions.get(plug.id)
        if session is None:
            self.stats["commands_offline"] += 1
            return fail(PlugOffline(f"plug {plug.name} is offline"))
        return session.enqueue(_Command(kind=kind, result=Deferred(), target=target))

    def switch(self, ref: str, on: bool | None) -> Deferred:
        """Switch a plug on (True), off (False) or over (None); fires with the confirmed state.

        The result arrives when the plug's C{/runtimeInfo} confirms the relay.  Errors
        (L{UnknownPlug}, L{PlugOffline}, L{QueueFull}) come at once, L{CommandTimeout} after
        C{commandTimeout} seconds.
        """
        kind = "toggle" if on is None else ("on" if on else "off")
        return self._command(ref, kind, on)

    def refresh(self, ref: str) -> Deferred:
        """Ask a plug for fresh power, voltage and relay readings; fires with its new state."""
        return self._command(ref, "refresh")

    def refreshAll(self) -> int:
        """Ask every online plug for fresh readings (errors are only counted); returns how many."""
        for plugId in list(self._sessions):
            self.refresh(plugId).addErrback(lambda f: None)
        return len(self._sessions)

    def rename(self, ref: str, alias: str | None) -> PlugState:
        """Set (or, with None or an empty string, clear) a plug's alias; aliases are unique.

        @raise InvalidArgument: the alias is too long, unprintable, or taken by another plug.
        """
        plug = self.resolve(ref)
        alias = (alias or "").strip() or None
        if alias is not None:
            if len(alias) > MAX_ALIAS or not alias.isprintable():
                raise InvalidArgument(f"an alias is 1-{MAX_ALIAS} printable characters")
            if re.fullmatch(r"[0-9a-fA-F-]{1,8}", alias) and any(
                p.id.casefold().startswith(alias.casefold()) and p is not plug for p in self._plugs.values()
            ):
                raise InvalidArgument(f"alias {alias!r} would hide another plug's id")
            for other in self._plugs.values():
                if other is not plug and other.alias and other.alias.casefold() == alias.casefold():
                    raise InvalidArgument(f"alias {alias!r} is already used by plug {other.id}")
        if plug.alias != alias:
            previous = plug.alias
            plug.alias = alias
            self._emit(ALIAS, plug.id, self.clock.seconds(), alias=alias, previous=previous)
        return self.snapshot(plug)

    def setPowerOn(self, ref: str, policy: str | None) -> PlugState:
        """Set what a plug does when it logs in after an outage: 'on', 'off', 'last' or None."""
        if policy not in (None, "on", "off", "last"):
            raise InvalidArgument("power-on policy is one of on, off, last")
        plug = self.resolve(ref)
        if plug.power_on != policy:
            plug.power_on = policy
            self._emit(POWER_ON, plug.id, self.clock.seconds(), power_on=policy)
        return self.snapshot(plug)

    def forget(self, ref: str) -> PlugState:
        """Forget a plug: drop its state and alias, and close its connection if it has one."""
        plug = self.resolve(ref)
        session = self._sessions.get(plug.id)
        if session is not None:
            session.lost("forgotten", replaced=True)
            session.connection.disconnect("plug forgotten")
        del self._plugs[plug.id]
        self.ledger.forget(plug.id)
        self._emit(FORGOTTEN, plug.id, self.clock.seconds(), alias=plug.alias)
        return plug

    def status(self) -> dict[str, Any]:
        """Daemon-wide counters and gauges for C{info}, metrics and the doctor."""
        now = self.clock.seconds()
        return {
            "uptime_s": now - self.started,
            "plugs_known": len(self._plugs),
            "plugs_online": len(self._sessions),
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
        """True while the plug has a live connection."""
        return plugId in self._sessions
