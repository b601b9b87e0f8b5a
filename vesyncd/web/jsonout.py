"""
JSON response bodies, a long list encoded a slice at a time between reactor turns.

The standard library's encoder holds the interpreter lock for the whole call: the month's cost
table of 10,000 plugs (1.2 MB) took 30-40 ms to encode, and every plug's answer waited meanwhile.
L{BodyEncoder.encode} gives the bytes at once for most documents; for a dict whose values include
a list of more than L{SLICE_ITEMS} items it gives a Deferred that fires with the very same bytes,
the list's items encoded by cooperative work of ~4 ms per reactor turn (L{vesyncd.core.turns.cooperator}).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator

from vesyncd.core.turns import cooperator

#: The API's JSON: no spaces.
SEPARATORS = (",", ":")
#: Lists longer than this are encoded in slices; each slice is this many items.
SLICE_ITEMS = 200


def encodeNow(doc: Any) -> bytes:
    """The whole body in one call: compact JSON and a newline."""
    return json.dumps(doc, separators=SEPARATORS).encode("utf-8") + b"\n"


def _longestList(doc: Any, over: int) -> str | None:
    """The key of the longest list among a dict's values when it has more than C{over} items and
    every key is text (the encoder would turn other keys into text its own way), else None."""
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        return None
    best, size = None, over
    for key, value in doc.items():
        if isinstance(value, list) and len(value) > size:
            best, size = key, len(value)
    return best


class BodyEncoder:
    """Encodes response documents, long lists in slices (see the module docstring)."""

    def __init__(self, clock: IReactorTime, perSlice: int = SLICE_ITEMS,
                 terminationPredicateFactory: Callable[[], Callable[[], bool]] | None = None) -> None:
        self.perSlice = perSlice
        if terminationPredicateFactory is None:
            self._cooperator = cooperator(clock)
        else:
            self._cooperator = Cooperator(terminationPredicateFactory=terminationPredicateFactory,
                                          scheduler=lambda work: clock.callLater(0, work))

    def encode(self, doc: Any) -> bytes | Deferred:
        """C{encodeNow(doc)}'s bytes: at once, or (for a dict holding a list longer than
        C{perSlice}) a Deferred firing with them, or failing as C{encodeNow} would raise."""
        key = _longestList(doc, self.perSlice)
        if key is None:
            return encodeNow(doc)
        items: list[Any] = doc[key]
        parts: list[str] = []

        def work() -> Iterator[None]:
            for start in range(0, len(items), self.perSlice):
                parts.append(",".join(json.dumps(item, separators=SEPARATORS)
                                      for item in items[start:start + self.perSlice]))
                yield None

        def whole(_: Any) -> bytes:
            members = []
            for name, value in doc.items():
                encoded = "[" + ",".join(parts) + "]" if name == key else json.dumps(value, separators=SEPARATORS)
                members.append(json.dumps(name) + ":" + encoded)
            return ("{" + ",".join(members) + "}\n").encode("utf-8")

        return self._cooperator.coiterate(work()).addCallback(whole)
