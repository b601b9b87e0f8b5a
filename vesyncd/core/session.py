"""
One logged-in plug connection: its liveness, the handling of each message it sends, and the
queue of commands sent to it.  Owned by an L{ISessionOwner} (the hub), which creates a session on
every login and is told when it ends; the session talks to it only through that interface.

Liveness: after C{keepalive_idle} seconds of silence the session sends the plug a C{/ka} (and
again every C{probe_interval} seconds); past C{offline_after} seconds of silence it closes the
connection and the plug is offline.  A session's first look comes up to
L{Settings.firstProbeSpread} seconds later than C{keepalive_idle}, at the point its owner gives
it, so that plugs which logged in together (a daemon restart, a power cut) are not all probed in
the same second.  Commands are queued and never interleaved: the next goes
out when the plug's C{/runtimeInfo} confirms the previous one, or it times out.  The times come
from the L{Settings} the owner hands over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from vesyncd.plugs import codec as m
from vesyncd.core.interfaces import IPlugConnection, ISessionOwner
from vesyncd.core.model import (CAUSE_BUTTON, CAUSE_COMMAND, CAUSE_PLUG, CAUSE_TIMER, RSSI, RUNTIME, CommandError,
                                CommandTimeout, PlugOffline, PlugState, QueueFull)
from vesyncd.core.settings import Settings

log = Logger()

#: Commands waiting for one plug beyond this are refused at once.
MAX_QUEUED_COMMANDS = 32
#: Unknown URIs remembered per plug (each is logged once).
MAX_UNKNOWN_URIS = 32


@dataclass
class Command:
    """One command waiting for, or waiting on, a plug."""

    kind: str  # "on", "off", "toggle", "refresh"
    result: Deferred
    target: bool | None = None
    timeout: IDelayedCall | None = None
    #: What the relay change this command makes is put down to (C{command}, C{timer}, C{schedule:<id>}...).
    cause: str = CAUSE_COMMAND


#: The golden ratio's fractional part: successive multiples of it, modulo 1, fall evenly over [0, 1).
_GOLDEN = 0.6180339887498949


def firstProbePoint(login: int) -> float:
    """Where the C{login}th login (counted from 1) falls in the first probes' spread, in [0, 1).

    The first is at 0 (probed at C{keepalive_idle} exactly); any run of consecutive logins lands
    evenly over the spread, so a wave of thousands is probed a few hundred per second, not all at once.
    """
    return ((login - 1) * _GOLDEN) % 1.0


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

    def __init__(self, owner: ISessionOwner, connection: IPlugConnection, plug: PlugState,
                 settings: Settings, spreadAt: float = 0.0) -> None:
        """
        @param spreadAt: where in L{Settings.firstProbeSpread} this session first looks at its
            plug's silence, from 0 (at C{keepalive_idle}) to 1 (the whole spread later).
        """
        self.owner = owner
        self.clock = owner.clock
        self.settings = settings
        self.connection = connection
        self.plug = plug
        self.lastHeard = self.clock.seconds()
        self.closed = False
        # A list and a lazily made set: an empty deque costs ~620 bytes and an empty set ~220, per
        # connected plug, and the queue holds at most MAX_QUEUED_COMMANDS.
        self._queue: list[Command] = []
        self._current: Command | None = None
        self._unknownSeen: set[str] | None = None
        self._liveness: IDelayedCall | None = None
        self._scheduleLiveness(settings.keepalive_idle + settings.firstProbeSpread * min(max(spreadAt, 0.0), 1.0))

    # -- liveness -----------------------------------------------------------------------------

    def _scheduleLiveness(self, delay: float) -> None:
        self._liveness = self.clock.callLater(max(delay, 0.001), self._checkLiveness)

    def _checkLiveness(self) -> None:
        """Probe a quiet plug with C{/ka}, and drop one silent past the offline deadline."""
        self._liveness = None
        if self.closed:
            return
        settings = self.settings
        silent = self.clock.seconds() - self.lastHeard
        if silent >= settings.offline_after:
            log.info("plug {plug} silent for {silent:.0f} s: marking offline", plug=self.plug.id, silent=silent)
            self.owner.count("liveness_timeouts")
            self.connection.disconnect("keepalive deadline passed")
            self.lost("silent for {:.0f} s".format(silent))
            return
        if silent >= settings.keepalive_idle:
            self.connection.send(m.keepAliveProbe())
            nextCheck = min(settings.probeEvery, settings.offline_after - silent)
        else:
            nextCheck = min(settings.keepalive_idle - silent, settings.offline_after - silent)
        self._scheduleLiveness(nextCheck)

    # -- messages from the plug ----------------------------------------------------------------

    def received(self, message: m.Message) -> None:
        """Handle one decoded message from the plug (never raises for a well-typed message)."""
        if self.closed:
            return
        now = self.clock.seconds()
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
            self.owner.plugEvent(RSSI, self.plug, now, rssi_dbm=message.rssi)

    def handle_KeepAliveReply(self, message: m.KeepAliveReply, now: float) -> None:
        """A bare C{/kr} answers our probe; hearing it is all that matters."""

    def handle_Report(self, message: m.Report, now: float) -> None:
        """Hand an energy report to the owner, which bounds and accounts it (never answered)."""
        self.owner.reported(self.plug, self.connection.peer, now, message.wattSeconds, message.seconds)

    def handle_RuntimeInfo(self, message: m.RuntimeInfo, now: float) -> None:
        """Take new readings, settle the command waiting for them, and note relay changes."""
        plug = self.plug
        plug.meastate = message.meastate
        plug.power_w = message.power[0] if message.power else None
        plug.voltage_v = message.voltage[0] if message.voltage else None
        plug.current_a = message.current[0] if message.current else None
        plug.runtime_at = now
        command = self._current
        cause = command.cause if command is not None and command.kind != "refresh" else CAUSE_PLUG
        self.owner.relayChanged(plug, message.relay, cause, now)
        self.owner.plugEvent(RUNTIME, plug, now, power_w=plug.power_w, voltage_v=plug.voltage_v,
                             relay=message.relay)
        if command is not None:
            self._finish(command, message.relay)

    def handle_State(self, message: m.State, now: float) -> None:
        """A button press on the plug changed its relay."""
        self.owner.relayChanged(self.plug, message.relay, CAUSE_BUTTON, now)

    def handle_EvTimer(self, message: m.EvTimer, now: float) -> None:
        """A timer stored on the plug fired."""
        self.plug.timer = {"fired": message.timerId, "aname": message.aname, "at": now}
        if message.relay is not None:
            self.owner.relayChanged(self.plug, message.relay, CAUSE_TIMER, now)

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
        self.owner.count("unknown_uris")
        self._noteOnce("uri:" + message.uri, "plug {plug} at {peer} sent unknown uri {uri!r}", uri=message.uri)

    # -- commands ------------------------------------------------------------------------------

    def enqueue(self, command: Command) -> Deferred:
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
        command.timeout = self.clock.callLater(self.settings.command_timeout, self._timedOut, command)
        self.connection.send(payload)

    def _timedOut(self, command: Command) -> None:
        command.timeout = None
        if self._current is command:
            self._current = None
            self.owner.count("commands_timeout")
            command.result.errback(CommandTimeout(
                f"plug {self.plug.name} did not answer within {self.settings.command_timeout:g} s"))
            self._next()

    def _finish(self, command: Command, relay: bool | None) -> None:
        self._current = None
        if command.timeout is not None and command.timeout.active():
            command.timeout.cancel()
        if command.target is not None and relay is not command.target:
            self.owner.count("commands_failed")
            command.result.errback(CommandError(
                f"plug {self.plug.name} reports relay {'on' if relay else 'off'} after the command"))
        else:
            self.owner.count("commands_ok")
            command.result.callback(self.owner.snapshot(self.plug))
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
            self.owner.count("commands_offline")
            command.result.errback(PlugOffline(f"plug {self.plug.name} went away ({why})"))
        self.owner.sessionEnded(self, why, replaced)
