"""
C{GET /api/plugs}: one page of the known plugs, filtered by a name substring and a state and sorted
by name or power.

Filtering and sorting look at a few fields of each plug; only the page's plugs are turned into
JSON and read from the ledger, so a page of 100 out of 10,000 plugs costs 100 ledger reads.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from vesyncd.core.model import PlugState
from vesyncd.web.routing import ApiError, whole

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATES = ("online", "offline", "on", "off")
SORTS = ("name", "power")
QUERY = {"limit", "offset", "q", "state", "sort", "order"}


def _keep(state: str | None, needle: str) -> Callable[[PlugState], bool]:
    """The filter for a state and a lower-case name substring."""
    def keep(plug: PlugState) -> bool:
        if state == "online" and not plug.online:
            return False
        if state == "offline" and plug.online:
            return False
        if state == "on" and plug.relay is not True:
            return False
        if state == "off" and plug.relay is not False:
            return False
        if needle and needle not in plug.id.lower() and needle not in (plug.alias or "").lower():
            return False
        return True
    return keep


def _nameKey(plug: PlugState) -> tuple[str, str]:
    return (plug.name.lower(), plug.id)


def _powerKey(plug: PlugState) -> tuple[int, float, str, str]:
    # Plugs with no reading sort after every reading, whatever the order.
    return (1 if plug.power_w is None else 0, -(plug.power_w or 0.0), plug.name.lower(), plug.id)


def page(plugs: Iterable[PlugState], args: dict[str, str], toJSON: Callable[[PlugState], dict[str, Any]]) -> dict[str, Any]:
    """One page of C{plugs} (ordered by name) as the query C{args} asks.

    Query: C{limit} (1-1000, default 100), C{offset}, C{q} (substring of alias or id, any case),
    C{state} (online, offline, on, off), C{sort} (name, power), C{order} (asc, desc; power sorts
    highest first by default).
    """
    limit = whole(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = whole(args, "offset", 0, 0, 10 ** 9)
    state = args.get("state") or None
    if state is not None and state not in STATES:
        raise ApiError(400, "invalid", f"state: one of {', '.join(STATES)}", field="state")
    sort = args.get("sort") or "name"
    if sort not in SORTS:
        raise ApiError(400, "invalid", f"sort: one of {', '.join(SORTS)}", field="sort")
    order = args.get("order") or ("desc" if sort == "power" else "asc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid", "order: asc or desc", field="order")
    needle = (args.get("q") or "").strip().lower()
    chosen = [p for p in plugs if _keep(state, needle)(p)] if (state or needle) else list(plugs)
    if sort == "power":
        chosen.sort(key=_powerKey)
        if order == "asc":
            # Highest-first reversed, readings still before plugs without one.
            readings = [p for p in chosen if p.power_w is not None]
            chosen = readings[::-1] + [p for p in chosen if p.power_w is None]
    elif order == "desc":
        chosen.reverse()
    total = len(chosen)
    window = chosen[offset:offset + limit]
    following = offset + limit if offset + limit < total else None
    return {"plugs": [toJSON(p) for p in window], "total": total, "offset": offset, "limit": limit,
            "next_offset": following}
