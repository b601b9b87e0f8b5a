"""
Rules that keep one hostile device on the LAN from corrupting what vesyncd records about others.

The plug protocol has no credentials: anything can log in with any id.  These rules cannot make
that secure; they bound what a device claiming someone else's id can do, and make it visible:

 - L{ReportBound}: the energy of a plug's C{/report}s is bounded by the wall time that passed,
   per plug id and across reconnects and restarts (the bound is kept in L{PlugState.report_until});
 - L{identityOf} and L{compareIdentity}: the account, peer host and firmware first seen for an id,
   and what a later login changed;
 - L{NewIdLimit}: how many ids never seen before are taken per minute.
"""

from __future__ import annotations

import collections
from typing import Any

from twisted.logger import Logger

from vesyncd.addresses import splitHostPort
from vesyncd.core.model import PlugState, isoTime

log = Logger()

#: Plugs whose refused reports were logged; beyond this the memory is cleared (so it stays bounded).
MAX_NOTED = 4096

#: Watts a 16 A plug can draw at most (with margin); energy above this is never plausible.
MAX_WATTS = 4000
#: Seconds one report may cover at most.
MAX_REPORT_SECONDS = 24 * 3600
#: Seconds a plug's first report may reach back before the hub first heard of it: a plug reports
#: every ~183 s, and its first report after a login covers the time since its previous one.
REPORT_ALLOWANCE = 200.0
#: Seconds a report may claim beyond the wall time, once per stretch (network jitter, clock skew).
REPORT_SLACK = 10.0
#: Characters kept of each identity field.
MAX_IDENTITY = 128
#: The identity fields compared between logins, in the order conflicts list them.
IDENTITY_FIELDS = ("account", "host", "firmware")


class ReportBound:
    """Accepts a report only if its energy fits the wall time since what was already counted.

    Each plug has a mark, C{report_until}: the time up to which its energy is accounted.  A report
    of C{t} seconds and C{e} watt-seconds claims C{max(t, e / MAX_WATTS)} seconds; it is accepted
    when the mark plus that claim is not past now (plus L{REPORT_SLACK}), and the mark moves to
    the later of (mark + claim) and now.  So over any stretch the energy accepted for one id is at
    most C{MAX_WATTS} times (the wall time + L{REPORT_ALLOWANCE} + L{REPORT_SLACK}), however often
    a device reconnects or reports.  A plug first heard of at time C{T} starts with the mark at
    C{T - REPORT_ALLOWANCE}, so its first report, which covers the ~180 s before it, passes.
    """

    @staticmethod
    def start(plug: PlugState, now: float) -> None:
        """Give a plug without a mark (new, or stored by an older vesyncd) one, reaching back the allowance.

        A mark ahead of the clock (the wall clock was set back) is moved back too, or every report
        would be refused until the clock caught up.
        """
        if plug.report_until is None or plug.report_until > now + REPORT_SLACK:
            plug.report_until = now - REPORT_ALLOWANCE

    @staticmethod
    def check(plug: PlugState, now: float, wattSeconds: int, seconds: int) -> str | None:
        """Why a report is refused ("implausible" or "too_long"), or None after moving the plug's mark."""
        if seconds < 0 or wattSeconds < 0 or seconds > MAX_REPORT_SECONDS or wattSeconds > MAX_WATTS * max(seconds, 1):
            return "implausible"
        ReportBound.start(plug, now)
        mark = plug.report_until
        assert mark is not None
        claim = max(float(seconds), wattSeconds / MAX_WATTS)
        if mark + claim > now + REPORT_SLACK:
            return "too_long"
        plug.report_until = max(mark + claim, now)
        return None


def hostOf(peer: str | None) -> str | None:
    """The host part of a peer address as the plug server writes it ("1.2.3.4:5", "[::1]:5", "::1")."""
    if not peer:
        return None
    try:
        return splitHostPort(peer, 1)[0]
    except ValueError:
        return peer


def identityOf(account: str | None, peer: str | None, firmware: str | None) -> dict[str, Any]:
    """The identity of one login: its account, peer host and firmware (bounded, empty as None)."""

    def bounded(value: Any) -> str | None:
        return str(value)[:MAX_IDENTITY] if value not in (None, "") else None

    return {"account": bounded(account), "host": bounded(hostOf(peer)), "firmware": bounded(firmware)}


def compareIdentity(plug: PlugState, now: dict[str, Any], at: float) -> dict[str, Any] | None:
    """Record the first identity of a plug, or the conflict a later login's C{now} brings.

    Returns the new conflict ({"at", "fields", "first", "now"}, also set on the plug), or None
    when nothing differs or the same conflict is already recorded (so a device that keeps logging
    in is reported once).
    """
    first = plug.first_identity
    if first is None:
        plug.first_identity = dict(now)
        return None
    fields = [f for f in IDENTITY_FIELDS if first.get(f) != now.get(f)]
    if not fields:
        return None
    current = plug.conflict
    if current is not None and current.get("fields") == fields and current.get("now") == now:
        return None
    plug.conflict = {"at": isoTime(at), "fields": fields, "first": dict(first), "now": dict(now)}
    return plug.conflict


class NewIdLimit:
    """At most C{perMinute} ids never seen before are taken in any 60 seconds."""

    WINDOW = 60.0

    def __init__(self, perMinute: int) -> None:
        self.perMinute = perMinute
        self.times: collections.deque[float] = collections.deque(maxlen=perMinute)

    def allow(self, now: float) -> bool:
        """Take one new id at C{now} if the last minute has room for it."""
        if len(self.times) >= self.perMinute and now - self.times[0] < self.WINDOW:
            return False
        self.times.append(now)
        return True


#: A refused login is logged the first time and then every this many times for the same reason.
LOG_EVERY = 100


def refuseLogin(stats: "collections.Counter[str]", connection: Any, plugId: str, reason: str, settings: Any) -> None:
    """Count, log (the first time and every L{LOG_EVERY} times per reason) and close a refused login;
    C{settings} (the hub's) give the bounds the log line names."""
    key = "logins_refused_" + reason
    stats["logins_refused"] += 1
    stats[key] += 1
    if stats[key] % LOG_EVERY == 1 or LOG_EVERY == 1:
        why = refusalText(reason, settings.max_pending, settings.max_new_plugs_per_minute)
        log.warn("refusing login of unknown plug {plug} from {peer}: {why} ({n} refused for this reason)",
                 plug=plugId, peer=connection.peer, why=why, n=stats[key])
    connection.disconnect(f"login refused: {reason}")


def refusalText(reason: str, maxPending: int, maxNewPerMinute: int) -> str:
    """Why a login was refused, in words for the log, from the hub's reason code."""
    return {"alias": "its id is another plug's name", "id_case": "its id is another plug's id in other case",
            "prefix": "its id is the start of another plug's id",
            "pending_full": f"{maxPending} plugs already wait for approval",
            "new_rate": f"more than {maxNewPerMinute} new plug ids in a minute"}[reason]


class RefusedReports:
    """Counts refused reports and their energy, logging the first refusal of each plug (a bounded memory)."""

    def __init__(self) -> None:
        self._noted: set[str] = set()

    def refuse(self, stats: "collections.Counter[str]", plug: PlugState, peer: str, wattSeconds: int, seconds: int,
               reason: str) -> None:
        """Count a refused report in C{stats} and in the plug's C{energy_refused_wh}; log it once per plug."""
        stats["reports_refused"] += 1
        stats["reports_refused_" + reason] += 1
        if reason == "implausible":
            stats["reports_rejected"] += 1
        plug.energy_refused_wh += max(0, min(wattSeconds, MAX_WATTS * MAX_REPORT_SECONDS)) / 3600.0
        if plug.id not in self._noted:
            if len(self._noted) >= MAX_NOTED:
                self._noted.clear()
            self._noted.add(plug.id)
            log.warn("plug {plug} at {peer}: refusing a report of {e} Ws over {t} s ({reason}); further "
                     "refusals are counted in energy_refused_wh", plug=plug.id, peer=peer, e=wattSeconds,
                     t=seconds, reason=reason)
