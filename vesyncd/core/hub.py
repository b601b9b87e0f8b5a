"""
The network-free core: the plug registry, command routing and events (each connection's
liveness and command queue are in L{vesyncd.core.session}).

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
from dataclasses import replace
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vesyncd.plugs import codec as m
from vesyncd.core.energy import EnergySummary, MemoryLedger
from vesyncd.core.interfaces import IEnergyLedger, IPlugConnection
from vesyncd.core.session import (  # noqa: F401 - re-exported
    COMMAND_TIMEOUT, KEEPALIVE_IDLE, MAX_QUEUED_COMMANDS, OFFLINE_AFTER, PROBE_INTERVAL, PlugSession,
    _Command, cancelCall)
from vesyncd.core.model import (  # noqa: F401 - re-exported: front ends import them from the hub
    ALIAS, CAUSE_BUTTON, CAUSE_COMMAND, CAUSE_LOGIN, CAUSE_PLUG, CAUSE_TIMER, ENERGY, EVENT_KINDS,
    FORGOTTEN, OFFLINE, ONLINE, PLUG_NEW, POWER_ON, RELAY, RSSI, RUNTIME, AmbiguousPlug, CommandError,
    CommandTimeout, Event, InvalidArgument, PlugOffline, PlugState, QueueFull, UnknownPlug, isoTime)

log = Logger()

MAX_ALIAS = 64


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
