"""
The control protocol: every AMP command of the control port, in one module shared by the
daemon (L{vesyncd.control.amp}) and its clients (L{vesyncd.control.client}, C{vesyncctl}).

Structured results travel as JSON text in one AMP value (L{JSON}), so their schema is the one
documented in C{docs/control.md} and shared with C{--json} output, HTTP and MQTT.  An AMP value
holds at most 64 KiB, which is why L{ListPlugs} pages and L{Energy} answers one period at a time.

The error classes here are used by the AMP port and the Perspective Broker root alike; each has
a C{code} (the JSON spelling) and an AMP error code (the wire spelling).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.protocols import amp
from twisted.spread import pb

#: The largest JSON text one AMP value can carry.
MAX_VALUE = amp.MAX_VALUE_LENGTH
#: Plugs per L{ListPlugs} page at most (one plug's JSON is well under 1 KiB).
MAX_PAGE = 50
#: Days of hourly CSV one L{Export} answers (24 rows of at most ~90 bytes a day: far below 64 KiB).
MAX_EXPORT_DAYS = 14
#: Relay changes one L{SwitchHistory} answers at most.
MAX_HISTORY = 200
#: Longest plug reference, alias, token or period value accepted from a client.
MAX_ARGUMENT = 256


class ControlError(pb.Error):
    """A control request failed; C{code} names the reason for clients and C{--json} output."""

    code = "failed"
    amp_code = b"FAILED"


class UnknownPlug(ControlError):
    """No plug matches the reference."""

    code = "unknown"
    amp_code = b"UNKNOWN_PLUG"


class AmbiguousPlug(UnknownPlug):
    """The reference names more than one plug (an alias and another plug's id, or an id prefix);
    the message lists them.  A subclass of L{UnknownPlug}: either way no plug was picked."""

    code = "ambiguous"
    amp_code = b"AMBIGUOUS_PLUG"


class PlugOffline(ControlError):
    """The plug is known but not connected."""

    code = "offline"
    amp_code = b"PLUG_OFFLINE"


class CommandTimeout(ControlError):
    """The plug did not confirm the command in time."""

    code = "timeout"
    amp_code = b"COMMAND_TIMEOUT"


class Busy(ControlError):
    """Too many requests, watchers or commands are already waiting; try again later."""

    code = "busy"
    amp_code = b"BUSY"


class InvalidArgument(ControlError):
    """An argument is not acceptable; the message says why."""

    code = "invalid"
    amp_code = b"INVALID_ARGUMENT"


class NotLoggedIn(ControlError):
    """A command other than Login came before a successful Login."""

    code = "not_logged_in"
    amp_code = b"NOT_LOGGED_IN"


class BadToken(ControlError):
    """The token presented at Login is wrong."""

    code = "bad_token"
    amp_code = b"BAD_TOKEN"


class CommandFailed(ControlError):
    """The plug answered, but not as asked (e.g. its relay did not change)."""

    code = "failed"
    amp_code = b"COMMAND_FAILED"


class UsageError(InvalidArgument):
    """The user's input is malformed (a bad time, duration, date or watts); the message starts with the
    option to fix (C{"--at: ..."}).  C{vesyncctl} exits with code 2."""

    code = "usage"
    amp_code = b"USAGE"


class Refused(ControlError):
    """Well-formed input the daemon will not take now: a bound is reached or an id is unknown; the
    message starts with what was refused (C{"schedule: ..."})."""

    code = "refused"
    amp_code = b"REFUSED"


class NotInCluster(ControlError):
    """A cluster request (C{nodes}) to a daemon running alone (no C{--node}, shared database and broker)."""

    code = "not_clustered"
    amp_code = b"NOT_CLUSTERED"


# Subclasses before their base classes: AMP answers with the first listed class that matches.
ERRORS: tuple[type[ControlError], ...] = (
    AmbiguousPlug, UnknownPlug, PlugOffline, CommandTimeout, Busy, UsageError, InvalidArgument, Refused, NotLoggedIn,
    BadToken, CommandFailed, NotInCluster,
)
#: Every error any command may answer, as AMP's C{errors} mapping.
AMP_ERRORS: dict[type[Exception], bytes] = {cls: cls.amp_code for cls in ERRORS}


class Encoded(str):
    """JSON text already serialised as L{JSON} does (a responder that had to measure it), sent as it is."""


def encodeJSON(value: Any) -> Encoded:
    """C{value} as the compact JSON text L{JSON} sends."""
    return Encoded(json.dumps(value, separators=(",", ":"), sort_keys=True))


class JSON(amp.Unicode):
    """An AMP argument holding any JSON value as compact UTF-8 text (at most 64 KiB)."""

    def toString(self, inObject: Any) -> bytes:
        """Serialise to compact JSON text (an L{Encoded} text is sent unchanged)."""
        return amp.Unicode.toString(self, inObject if isinstance(inObject, Encoded) else encodeJSON(inObject))

    def fromString(self, inString: bytes) -> Any:
        """Parse JSON text (a peer sending malformed JSON gets a protocol error, not a crash)."""
        return json.loads(amp.Unicode.fromString(self, inString))


class ControlCommand(amp.Command):
    """Base of the control commands: each may fail with any of L{ERRORS}."""

    errors = AMP_ERRORS


class Login(ControlCommand):
    """Present the control token; every other command fails with NotLoggedIn before this."""

    arguments = [(b"token", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []


class ListPlugs(ControlCommand):
    """One page of plugs ordered by name: C{plugs} (PlugState JSON), C{total}, C{offset}."""

    arguments = [(b"offset", amp.Integer()), (b"limit", amp.Integer())]
    response = [(b"plugs", JSON()), (b"total", amp.Integer()), (b"offset", amp.Integer())]


class GetPlug(ControlCommand):
    """One plug by id, unique id prefix or alias."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"plug", JSON())]


class Switch(ControlCommand):
    """Switch a plug C{on}, C{off} or C{toggle}; answers its state once the plug confirmed it."""

    arguments = [(b"plug", amp.Unicode()), (b"state", amp.Unicode())]
    response = [(b"plug", JSON())]


class Refresh(ControlCommand):
    """Ask a plug for fresh readings; answers its new state."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"plug", JSON())]


class Rename(ControlCommand):
    """Set a plug's alias (an empty alias clears it)."""

    arguments = [(b"plug", amp.Unicode()), (b"alias", amp.Unicode())]
    response = [(b"plug", JSON())]


class SetPowerOn(ControlCommand):
    """Set a plug's power-on policy: C{on}, C{off}, C{last} or C{none}."""

    arguments = [(b"plug", amp.Unicode()), (b"policy", amp.Unicode())]
    response = [(b"plug", JSON())]


class Forget(ControlCommand):
    """Forget a plug (its state, alias and energy history); answers its last state."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"plug", JSON())]


class Info(ControlCommand):
    """The daemon's version, uptime, listeners and counters."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response = [(b"info", JSON())]


class Nodes(ControlCommand):
    """The cluster as this node sees it (docs/scaling.md): its nodes with their plugs, lease ages and
    liveness, and the database's and broker's status; fails with L{NotInCluster} on a single node."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response = [(b"cluster", JSON())]


class Energy(ControlCommand):
    """Energy buckets of one C{day} (YYYY-MM-DD), C{month} (YYYY-MM) or C{year} (YYYY); with C{cost}, each
    bucket's cost and the C{currency}, C{total_cost} and C{daily_charge_total} (an optional argument, so
    older clients still work)."""

    arguments = [(b"plug", amp.Unicode()), (b"period", amp.Unicode()), (b"value", amp.Unicode()),
                 (b"cost", amp.Boolean(optional=True))]
    response = [(b"history", JSON())]


class EnergySummary(ControlCommand):
    """A plug's energy and cost of today, yesterday, this week, month and year (C{periods}), and its
    always-on power (C{baseline}); both JSON objects of docs/energy.md."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"periods", JSON()), (b"baseline", JSON())]


class CostTable(ControlCommand):
    """Every plug's energy and cost in one month (C{YYYY-MM}, default this month), largest first."""

    arguments = [(b"month", amp.Unicode(optional=True))]
    response = [(b"table", JSON())]


class Export(ControlCommand):
    """Hourly rows of one plug as CSV for local dates C{start} to C{end} (both included, at most
    L{MAX_EXPORT_DAYS} days per request: one AMP value), the time zone in the header."""

    arguments = [(b"plug", amp.Unicode()), (b"start", amp.Unicode()), (b"end", amp.Unicode())]
    response = [(b"csv", amp.Unicode())]


class SwitchHistory(ControlCommand):
    """A plug's latest relay changes, newest first, each with its cause (at most C{limit}, up to 200)."""

    arguments = [(b"plug", amp.Unicode()), (b"limit", amp.Integer(optional=True))]
    response = [(b"switches", JSON())]


class Pending(ControlCommand):
    """Plugs held until approved (C{--new-plugs hold}): C{pending}, a JSON array of plugs (oldest first,
    as many as fit one AMP value), and C{total}, how many are held."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response = [(b"pending", JSON()), (b"total", amp.Integer())]


class Approve(ControlCommand):
    """Accept a held plug: it is stored and published from now on; answers its plug JSON."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"plug", JSON())]


class ClearConflict(ControlCommand):
    """Accept the latest login's identity (account, host, firmware) as the plug's own and clear its conflict."""

    arguments = [(b"plug", amp.Unicode())]
    response = [(b"plug", JSON())]


class Watch(ControlCommand):
    """Start receiving L{PushEvent}s on this connection."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response: list[tuple[bytes, amp.Argument]] = []


class Unwatch(ControlCommand):
    """Stop receiving L{PushEvent}s."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response: list[tuple[bytes, amp.Argument]] = []


class PushEvent(amp.Command):
    """Sent by the daemon to a watching client: one event (see docs/control.md); no answer."""

    arguments = [(b"event", JSON())]
    requiresAnswer = False
