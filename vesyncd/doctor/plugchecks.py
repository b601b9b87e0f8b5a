"""
The doctor's plug checks: each plug's last contact, logins that disagree with what the plug first
showed (someone else using its id, or a replaced plug), and plugs waiting for approval.  Every
text that came from a plug is escaped before it is put into a message.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from vesyncd.escape import printable
from vesyncd.doctor.report import Check, Level

def parseTime(text: Any) -> datetime | None:
    """Parse an ISO 8601 time (a trailing Z allowed); naive times are taken as UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def ago(then: datetime, now: datetime) -> str:
    """A rough "how long ago" for humans."""
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "in the future (clock skew?)"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def plugChecks(plugs: list[dict[str, Any]], now: datetime) -> list[Check]:
    """One check per plug, each followed by a WARN if its logins disagree (L{conflictCheck}), or
    one WARN when no plug was ever seen."""
    if not plugs:
        return [
            Check(
                "plugs",
                Level.WARN,
                "no plug has connected yet",
                "set a plug up with `vesyncctl provision`, or point server2.vesync.com at this "
                "host; see `vesyncctl doctor` DNS checks above",
            )
        ]
    checks = []
    for plug in plugs:
        name = plugName(plug)
        seen = parseTime(plug.get("last_seen"))
        where = printable(plug.get("address") or "an unknown address")
        firmware = printable(plug.get("firmware") or "unknown")
        when = f"last seen {ago(seen, now)} ({seen.isoformat()})" if seen else "never seen"
        detail = f"{when} from {where}, firmware {firmware}"
        if plug.get("online"):
            checks.append(Check(name, Level.OK, f"online; {detail}"))
        else:
            checks.append(
                Check(
                    name,
                    Level.WARN,
                    f"offline; {detail}",
                    "check the plug has power and Wi-Fi, and can reach this host on 17273/tcp; "
                    "power-cycle it, or `vesyncctl forget "
                    f"{printable(plug.get('id') or '?')}` if it is gone for good",
                )
            )
        conflict = conflictCheck(plug)
        if conflict is not None:
            checks.append(conflict)
    return checks

#: What each identity field is called in a message.
_FIELD_WORDS = {"account": "account", "host": "address", "firmware": "firmware"}
#: Held plugs named in the pending check; the rest are counted.
_PENDING_SHOWN = 5


def plugName(plug: dict[str, Any]) -> str:
    """C{plug <alias> (<id>)} or C{plug <id>}, escaped for a terminal."""
    ident = printable(plug.get("id") or "?")
    alias = plug.get("alias")
    return f"plug {printable(alias)} ({ident})" if alias else f"plug {ident}"


def _identityText(identity: Any, fields: list[str]) -> str:
    """The C{fields} of one login identity as C{account x, address y}, escaped."""
    if not isinstance(identity, dict):
        return "unknown"
    return ", ".join(f"{_FIELD_WORDS.get(f, printable(f))} {printable(identity.get(f) or 'none')}"
                     for f in fields)


def conflictCheck(plug: dict[str, Any]) -> Check | None:
    """A WARN when the plug's logins disagree with its first one (key C{conflict} of the plug
    JSON: C{{"at", "fields", "first", "now"}} or null), naming the commands that settle it."""
    conflict = plug.get("conflict")
    if not isinstance(conflict, dict):
        return None
    fields = [f for f in conflict.get("fields") or [] if isinstance(f, str)]
    words = "/".join(_FIELD_WORDS.get(f, printable(f)) for f in fields) or "identity"
    ident = printable(plug.get("id") or "?")
    since = printable(conflict.get("at") or "an unknown time")
    name = plugName(plug)
    return Check(
        f"{name} logins",
        Level.WARN,
        f"{name}: logins disagree on {words} since {since}: first "
        f"{_identityText(conflict.get('first'), fields)}, now "
        f"{_identityText(conflict.get('now'), fields)}; the last login with an id wins, so "
        "another device may be using this plug's id",
        f"if you replaced the plug, run `vesyncctl forget {ident}`; if the plug itself changed "
        f"(a firmware update, a new address), run `vesyncctl clear-conflict {ident}`; otherwise "
        "find the device at the new address and take it off the network",
    )


def pendingCheck(pending: Any) -> Check | None:
    """A WARN when plugs wait for approval (C{--new-plugs hold}), naming them; None when none wait.

    C{pending} is the control port's answer, C{{"pending": [plug JSON...], "total": N}}, or the
    list alone.
    """
    if isinstance(pending, dict):
        held = pending.get("pending") or []
        total = pending.get("total")
    else:
        held, total = pending or [], None
    held = [p for p in held if isinstance(p, dict)]
    count = total if isinstance(total, int) and total >= len(held) else len(held)
    if count == 0:
        return None
    shown = []
    for plug in held[:_PENDING_SHOWN]:
        where = plug.get("address")
        ident = printable(plug.get("id") or "?")
        shown.append(f"{ident} from {printable(where)}" if where else ident)
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    one = count == 1
    return Check(
        "pending plugs",
        Level.WARN,
        f"{count} plug{'' if one else 's'} wait{'s' if one else ''} for approval and "
        f"{'is' if one else 'are'} neither stored nor published: {', '.join(shown)}{more}",
        "run `vesyncctl approve PLUG` for each plug you own (`vesyncctl pending` lists them); "
        "unknown ones are held because of --new-plugs hold",
    )


def slugCollisionCheck(status: dict[str, Any] | None) -> Check | None:
    """A WARN when plugs' aliases cannot be their MQTT topic names, naming the plugs; None otherwise.

    The daemon's C{info} carries C{mqtt_slug_collisions}, a list of C{{"slug", "plugs": [ids]}}, when
    the MQTT bridge runs: those plugs publish under their ids instead of their aliases.
    """
    collisions = (status or {}).get("mqtt_slug_collisions")
    if not isinstance(collisions, list) or not collisions:
        return None
    parts = []
    for entry in collisions[:_PENDING_SHOWN]:
        if isinstance(entry, dict):
            plugs = ", ".join(printable(p) for p in (entry.get("plugs") or [])[:4])
            parts.append(f"{printable(entry.get('slug'))!s}: {plugs}")
    more = f" and {len(collisions) - _PENDING_SHOWN} more" if len(collisions) > _PENDING_SHOWN else ""
    return Check(
        "mqtt topic names", Level.WARN,
        f"{len(collisions)} alias(es) cannot be an MQTT topic name, so those plugs publish under their ids: "
        + "; ".join(parts) + more,
        "give one of each pair a distinct alias with `vesyncctl rename PLUG NEW-NAME`",
    )
