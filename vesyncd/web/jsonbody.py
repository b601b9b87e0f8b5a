"""
The one way the web front end reads a JSON request body: bounded in size and nesting, so hostile
input (10 kB of C{[[[...}) is a clean refusal with a reason, never a RecursionError.
"""

from __future__ import annotations

import json
from typing import Any

#: Bytes of a body read at most (the site refuses larger bodies before they are stored).
MAX_BODY = 16 * 1024
#: Deepest nesting accepted; the API's bodies are flat objects.
MAX_DEPTH = 8


class BadBody(ValueError):
    """The body is not a JSON object the API accepts; the message says why, for people."""


def _refuseConstant(name: str) -> Any:
    raise BadBody(f"JSON constant {name} is not allowed")


_DECODER = json.JSONDecoder(parse_constant=_refuseConstant)


def _deeper(value: Any, levels: int) -> bool:
    """True when C{value} nests more than C{levels} containers deep (recursion bounded by C{levels})."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return False
    return levels <= 0 or any(_deeper(item, levels - 1) for item in value)


def parseBody(raw: bytes, maxBytes: int = MAX_BODY, maxDepth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse a request body that must be one JSON object.

    @raise BadBody: too large, not UTF-8, not JSON, NaN/Infinity, nested deeper than C{maxDepth},
        or not an object.
    """
    if len(raw) > maxBytes:
        raise BadBody(f"the body is larger than {maxBytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8") from None
    try:
        doc = _DECODER.decode(text)
    except BadBody:
        raise
    except RecursionError:
        # The parser refuses nesting beyond the interpreter's recursion limit cleanly.
        raise BadBody(f"the JSON nests deeper than {maxDepth} levels") from None
    except ValueError:
        raise BadBody("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadBody("the body must be a JSON object")
    if _deeper(doc, maxDepth):
        raise BadBody(f"the JSON nests deeper than {maxDepth} levels")
    return doc
