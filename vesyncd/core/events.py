"""
The one JSON shape of a hub event, shared by every front end (control port, PB, SSE, MQTT).

C{{"event": KIND, "plug": ID, "name": ALIAS_OR_ID, "alias": ALIAS|null, "at": ISO 8601 UTC,
"ts": POSIX seconds, "data": {...}}}: the event's own data is nested under C{data} so that no data
key can collide with an envelope key, and every value in it is JSON-native (a relay is
C{true}/C{false}/C{null}, numbers stay numbers).  C{docs/control.md} documents each kind's data.
"""

from __future__ import annotations

import math
from typing import Any

from vesyncd.core.model import FORGOTTEN, Event, PlugState, isoTime

#: How deep event data may nest before the rest is cut (event data is flat or one level deep).
_MAX_DEPTH = 4


def jsonValue(value: Any, depth: int = 0) -> Any:
    """C{value} as JSON-native data: bools, numbers, strings and null unchanged, containers copied,
    non-finite numbers as null and anything else as its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {str(k): jsonValue(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonValue(v, depth + 1) for v in value]
    return str(value)


def eventJSON(event: Event, plug: PlugState | None = None) -> dict[str, Any]:
    """The documented JSON form of a hub event; C{plug} (its current state, when known) gives the alias."""
    if plug is not None:
        alias = plug.alias
    elif event.kind == FORGOTTEN:
        # A forgotten plug is gone from the hub; the event itself carries the alias it had.
        alias = event.data.get("alias") if isinstance(event.data.get("alias"), str) else None
    else:
        alias = None
    return {
        "event": event.kind,
        "plug": event.plug,
        "name": alias or event.plug,
        "alias": alias,
        "at": isoTime(event.at),
        "ts": event.at,
        "data": jsonValue(dict(event.data)),
    }
