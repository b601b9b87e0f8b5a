"""
The web front end's routing pieces shared by its route modules: the error answer, a route, and
readers for a request's JSON body and query string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from twisted.web import server

from vesyncd.web.jsonbody import MAX_BODY, BadBody, parseBody

#: Longest query value read (longer ones are refused, never cut silently).
MAX_QUERY_VALUE = 200


class ApiError(Exception):
    """An error answer: HTTP C{status}, JSON C{code}, a message for people and the C{field} to fix."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass
class Route:
    """One API route: method, compiled path pattern, handler, and whether it needs credentials."""

    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    auth: bool = True


def route(method: str, pattern: str, handler: Callable[..., Any], auth: bool = True) -> Route:
    """A L{Route} for a path pattern given as text."""
    return Route(method, re.compile(pattern), handler, auth)


#: Path pattern of one plug (its id, id prefix or alias), for route modules.
PLUG = r"/api/plugs/(?P<ref>[^/]+)"


def readBody(request: server.Request) -> dict[str, Any]:
    """The request's JSON object (one guarded parser), or an L{ApiError} 400."""
    raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    try:
        return parseBody(raw)
    except BadBody as e:
        raise ApiError(400, "invalid", f"{e}: send a JSON object") from None


def queryArgs(request: server.Request, allowed: set[str]) -> dict[str, str]:
    """The query's values by name (the first of each), refusing unknown names and odd values."""
    args: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        name = key.decode("ascii", "replace")
        if name not in allowed:
            raise ApiError(400, "invalid", f"unknown query parameter {name[:40]!r}; known: {', '.join(sorted(allowed))}",
                           field=name[:40])
        try:
            value = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid", "query values are UTF-8", field=name) from None
        if len(value) > MAX_QUERY_VALUE or not value.isprintable():
            raise ApiError(400, "invalid", f"{name}: at most {MAX_QUERY_VALUE} printable characters", field=name)
        args[name] = value
    return args


def whole(args: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole number query value between C{low} and C{high}."""
    text = args.get(name)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise ApiError(400, "invalid", f"{name}: a whole number from {low} to {high}", field=name)
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, "invalid", f"{name}: a whole number from {low} to {high}", field=name)
    return value
