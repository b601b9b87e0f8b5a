"""Checks of what control clients send, shared by the control plane's request modules."""

from __future__ import annotations

from typing import Any

from vesyncd.control import commands as c


def text(value: Any, name: str, limit: int = c.MAX_ARGUMENT) -> str:
    """C{value} if it is a string of at most C{limit} characters; else L{c.InvalidArgument} naming it."""
    if not isinstance(value, str):
        raise c.InvalidArgument(f"{name} must be text")
    if len(value) > limit:
        raise c.InvalidArgument(f"{name} is longer than {limit} characters")
    return value


def optionalText(value: Any, name: str, limit: int = c.MAX_ARGUMENT) -> str | None:
    """Like L{text}, with None (and an empty string) read as "not given"."""
    return None if value is None or value == "" else text(value, name, limit)
