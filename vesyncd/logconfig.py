"""
What the daemon's log says: C{--log-level} filtering, Twisted's per-connection chatter kept at
debug, and one info line for each thing a user follows (a plug online or offline, switched, renamed).

twistd and twist begin logging after the plugin's options are parsed and its service is made, by
handing their observers (the terminal, C{--logfile}, syslog, twist's own level filter) to
C{globalLogBeginner.beginLoggingTo}.  L{filterGlobalLog} arranges that those observers are
wrapped in one L{FilteringLogObserver} with the chosen level, so every destination twistd
supports keeps working and nothing of twistd's own set-up is redone here.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from twisted.logger import (FilteringLogObserver, ILogFilterPredicate, ILogObserver, LogBeginner, Logger, LogLevel,
                            LogLevelFilterPredicate, PredicateResult, globalLogBeginner)
from twisted.python import usage
from zope.interface import implementer

from vesyncd.escape import printable
from vesyncd.core.model import ALIAS, CAUSE_LOGIN, FORGOTTEN, OFFLINE, ONLINE, RELAY, Event

# The plug lines read as the plug server's in the log, where a user looks for them.
plugLog = Logger(namespace="vesyncd.plugs")

#: The accepted C{--log-level} names, quietest last.
LOG_LEVELS = ("debug", "info", "warn", "error")
DEFAULT_LOG_LEVEL = "info"

# Twisted's own per-connection and per-listener lines, by their format (new logger) or their text
# (legacy log.msg): each connection of a plug, the simulator or the control port repeats them.
_CHATTER_FORMATS = frozenset({
    "Starting factory {factory!r}",
    "Stopping factory {factory!r}",
    "{cls} connection established (HOST:{host} PEER:{peer})",
    "{cls} connection lost (HOST:{host} PEER:{peer})",
    # Autobahn's line for each plug connection vesyncd drops: the plug's offline line (or vesyncd's
    # own warning for a refused connection) already says why.
    "dropping connection to peer {peer} with abort={abort}: {reason}",
})
_CHATTER_TEXT = re.compile(r"^(?:Starting protocol |Stopping protocol |\S+ starting on |\(\S.* Port \S+ Closed\))")


def parseLogLevel(name: str) -> LogLevel:
    """The L{LogLevel} named C{name} (C{debug}, C{info}, C{warn} or C{error}, any case).

    @raise ValueError: another name, with the accepted ones.
    """
    key = str(name).strip().lower()
    if key == "warning":
        key = "warn"
    if key not in LOG_LEVELS:
        raise ValueError(f"--log-level {name!r} is not one of {', '.join(LOG_LEVELS)}")
    return LogLevel.levelWithName(key)


def isChatter(event: dict[str, Any]) -> bool:
    """Whether C{event} is one of Twisted's per-connection lines (C{Starting factory <...>},
    AMP's C{connection established}, a port's C{starting on}) that only debugging needs."""
    if event.get("log_format") in _CHATTER_FORMATS:
        return True
    message = event.get("message")
    if isinstance(message, tuple) and len(message) == 1 and isinstance(message[0], str):
        return bool(_CHATTER_TEXT.match(message[0]))
    return False


@implementer(ILogFilterPredicate)
class ChatterPredicate:
    """Drops Twisted's per-connection chatter unless the log level is debug; no opinion on the rest."""

    def __init__(self, level: LogLevel) -> None:
        self.level = level

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        """C{no} for chatter above debug, else C{maybe} (the level filter decides)."""
        if self.level > LogLevel.debug and isChatter(event):
            return PredicateResult.no
        return PredicateResult.maybe


def predicates(level: LogLevel) -> list[Any]:
    """The filter predicates for the daemon's log at C{level}: chatter first, then the level."""
    return [ChatterPredicate(level), LogLevelFilterPredicate(defaultLogLevel=level)]


def filteredObserver(observer: ILogObserver, level: LogLevel) -> FilteringLogObserver:
    """C{observer} seeing only the events the daemon's log shows at C{level}."""
    return FilteringLogObserver(observer, predicates(level))


def filterGlobalLog(level: LogLevel, beginner: LogBeginner = globalLogBeginner) -> None:
    """Have the observers the runner gives C{beginner} next (twistd's log file, syslog or terminal)
    see only events at C{level} and above, without Twisted's per-connection chatter.

    Called while the plugin's options are parsed, before twistd or twist begins logging; the
    events buffered until then pass through the same filter.  Calling it again replaces the level.
    """
    vars(beginner).pop("beginLoggingTo", None)
    begin: Callable[..., None] = beginner.beginLoggingTo

    def beginLoggingTo(observers: Iterable[ILogObserver], *args: Any, **kwargs: Any) -> None:
        # Once: later calls (twistd warns about them) go to the beginner unchanged.
        vars(beginner).pop("beginLoggingTo", None)
        begin([filteredObserver(observer, level) for observer in observers], *args, **kwargs)

    # An instance attribute shadows the method for the one call twistd makes.
    beginner.beginLoggingTo = beginLoggingTo  # type: ignore[method-assign]


#: The event kinds L{PlugStateLog} may log.
_LOGGED_KINDS = frozenset({ONLINE, OFFLINE, RELAY, ALIAS, FORGOTTEN})


class PlugStateLog:
    """Logs at info what happens to plugs that a user follows: online and offline, a relay switched
    (and by what: a command, the button, a timer), renamed, forgotten (logins and reconnects are debug)."""

    def __init__(self, name: Callable[[str], str | None] = lambda plugId: None) -> None:
        """@param name: the alias of a plug id, or None (the log then shows the id alone)."""
        self.name = name

    def _plug(self, plugId: str) -> str:
        try:
            alias = self.name(plugId)
        except Exception:  # a plug forgotten meanwhile has no alias to show
            alias = None
        return printable(f"{alias} ({plugId})" if alias else plugId)

    def __call__(self, event: Event) -> None:
        """Log C{event} when it is one of the kinds above."""
        if event.kind not in _LOGGED_KINDS:
            return  # the keep-alive's rssi and the readings, most of the hub's events, in one look-up
        data = event.data
        if event.kind == ONLINE:
            plugLog.info("plug {plug} online from {peer} (firmware {firmware})", plug=self._plug(event.plug),
                     peer=printable(data.get("address") or "?"), firmware=printable(data.get("firmware") or "?"))
        elif event.kind == OFFLINE:
            plugLog.info("plug {plug} offline ({reason})", plug=self._plug(event.plug),
                     reason=printable(data.get("reason") or "?"))
        elif event.kind == RELAY and data.get("cause") != CAUSE_LOGIN and isinstance(data.get("relay"), bool):
            # At login the relay is only learnt, not switched.
            plugLog.info("plug {plug} switched {state} ({cause})", plug=self._plug(event.plug),
                     state="on" if data["relay"] else "off", cause=printable(data.get("cause") or "?"))
        elif event.kind == ALIAS:
            plugLog.info("plug {plug} renamed (was {previous})", plug=self._plug(event.plug),
                     previous=printable(data.get("previous") or "no alias"))
        elif event.kind == FORGOTTEN:
            alias = data.get("alias")
            plug = printable(f"{alias} ({event.plug})" if isinstance(alias, str) and alias else event.plug)
            plugLog.info("plug {plug} forgotten", plug=plug)


class LogOptions:
    """The C{--log-level} option (config key C{log-level}) of C{twistd vesyncd}."""

    optParameters = [
        ["log-level", None, DEFAULT_LOG_LEVEL,
         "Least severe events the log shows: debug, info, warn or error (debug adds each connection's "
         "lines)."],
    ]


def checkOptions(config: Any) -> None:
    """Check C{--log-level}; under twistd or twist (options parsed as their subcommand) filter the log.

    @raise usage.UsageError: an unknown level name.
    """
    try:
        level = parseLogLevel(config["log-level"])
    except ValueError as e:
        raise usage.UsageError(str(e)) from None
    config["log-level"] = level.name
    if getattr(config, "parent", None) is not None:
        filterGlobalLog(level)
