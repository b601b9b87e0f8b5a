"""
Autobahn's per-connection options, made cheap and safe for thousands of plug connections.

Autobahn copies every option a protocol lacks from its factory into each connection's own
C{__dict__} (about 40 attributes, some 2 KiB per plug), and formats all of them for a debug line
on every connection whether or not debug lines are logged.  L{optionsClass} makes the options
class attributes of a subclass shared by every connection, and L{lazyDebugFormatting} defers that
formatting until a line is really rendered.  L{refuseCompression} is the plug server's answer to
a permessage-deflate offer.
"""

from __future__ import annotations

from contextlib import contextmanager
from pprint import pformat
from types import FunctionType
from typing import Any, Iterator

import autobahn.websocket.protocol as _autobahnProtocol


def refuseCompression(offers: list[Any]) -> None:
    """Decline every permessage-deflate offer: plugs never compress, and a compressed stream
    would undo the frame and message size limits."""
    return None


def optionsClass(base: type, source: object) -> type:
    """A subclass of C{base} whose class attributes are the Autobahn options C{source} holds.

    Functions among the options (such as C{perMessageCompressionAccept}) are stored as static
    methods: a plain function on a class becomes a method of each instance, and Autobahn calls
    them with their arguments alone.  (Stored as they were, the first client that offered
    permessage-deflate made Autobahn's call raise a TypeError inside its handshake.)
    """
    options = {}
    for name in base.CONFIG_ATTRS:  # type: ignore[attr-defined]
        if hasattr(source, name):
            value = getattr(source, name)
            options[name] = staticmethod(value) if isinstance(value, FunctionType) else value
    return type(base.__name__, (base,), options)


class LazyFormat:
    """C{pformat} deferred until the text is rendered."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __str__(self) -> str:
        """The pretty-printed value."""
        return pformat(self._value)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        """The pretty-printed value, formatted with C{spec}."""
        return format(str(self), spec)


@contextmanager
def lazyDebugFormatting() -> Iterator[None]:
    """While active, Autobahn's protocol module pretty-prints lazily (a quarter of the CPU of a
    plug's login went into a debug line nobody logs)."""
    _autobahnProtocol.pformat = LazyFormat  # type: ignore[attr-defined]
    try:
        yield
    finally:
        _autobahnProtocol.pformat = pformat  # type: ignore[attr-defined]
