"""
The one way the web front end reads a JSON request body: L{vesyncd.jsonguard} with the API's bounds,
so hostile input (10 kB of C{[[[...}) is a clean refusal with a reason, never a RecursionError.
"""

from __future__ import annotations

from typing import Any

from vesyncd.jsonguard import BadJSON, parseJSONObject

#: Bytes of a body read at most (the site refuses larger bodies before they are stored).
MAX_BODY = 16 * 1024
#: Deepest nesting accepted; the API's bodies are flat objects.
MAX_DEPTH = 8


class BadBody(BadJSON):
    """The body is not a JSON object the API accepts; the message says why, for people."""


def parseBody(raw: bytes, maxBytes: int = MAX_BODY, maxDepth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse a request body that must be one JSON object.

    @raise BadBody: too large, not UTF-8, not JSON, NaN/Infinity, nested deeper than C{maxDepth},
        or not an object.
    """
    try:
        return parseJSONObject(raw, maxBytes=maxBytes, maxDepth=maxDepth, what="the body")
    except BadJSON as e:
        raise BadBody(str(e)) from None
