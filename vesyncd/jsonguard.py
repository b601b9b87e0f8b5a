"""
The one guarded way a front end reads JSON from the network: bounded in size and nesting, UTF-8
only, no NaN or Infinity, so hostile input (10 kB of C{[[[...}) is a clean refusal with a reason,
never a RecursionError.

It sits at the top level so that every front end (web, MQTT) can use it without importing another.
The plug codec keeps its own single-pass check: it is the hot path and may import nothing of vesyncd.
"""

from __future__ import annotations

import json
from typing import Any


class BadJSON(ValueError):
    """The bytes are not JSON the caller accepts; the message says why, for people, never quoting them."""


def _refuseConstant(name: str) -> Any:
    raise BadJSON(f"JSON constant {name} is not allowed")


#: One decoder for every call (C{json.loads} with C{parse_constant} builds a new one each time).
_DECODER = json.JSONDecoder(parse_constant=_refuseConstant)


def _deeper(value: Any, levels: int) -> bool:
    """True when C{value} nests more than C{levels} containers deep (recursion bounded by C{levels})."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return False
    return levels <= 0 or any(_deeper(item, levels - 1) for item in value)


def parseJSONObject(raw: bytes, *, maxBytes: int, maxDepth: int, what: str = "the body") -> dict[str, Any]:
    """Parse C{raw} as one JSON object of at most C{maxBytes} bytes nested at most C{maxDepth} deep.

    @param what: how messages name the input (C{"the body"}, C{"the payload"}).
    @raise BadJSON: too large, not UTF-8, not JSON, NaN/Infinity, nested deeper than C{maxDepth},
        or not an object.
    """
    if len(raw) > maxBytes:
        raise BadJSON(f"{what} is larger than {maxBytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJSON(f"{what} is not UTF-8") from None
    try:
        doc = _DECODER.decode(text)
    except BadJSON:
        raise
    except RecursionError:
        # The parser refuses nesting beyond the interpreter's recursion limit cleanly.
        raise BadJSON(f"the JSON nests deeper than {maxDepth} levels") from None
    except ValueError:
        raise BadJSON(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise BadJSON(f"{what} must be a JSON object")
    if _deeper(doc, maxDepth):
        raise BadJSON(f"the JSON nests deeper than {maxDepth} levels")
    return doc
