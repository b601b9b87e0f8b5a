"""Parsing C{HOST[:PORT]} arguments, shared by every option and command that takes one."""

from __future__ import annotations


def splitHostPort(text: str, defaultPort: int) -> tuple[str, int]:
    """Split C{HOST}, C{HOST:PORT}, C{V6}, C{[V6]} or C{[V6]:PORT} into (host, port).

    A bare IPv6 address (more than one colon, no brackets) takes the default port.

    @raise ValueError: a bracket is not closed, something other than C{:PORT} follows it, the
        host is empty, or the port is not 1-65535.  The message quotes C{text}.
    """
    text = text.strip()
    host, port = text, str(defaultPort)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r} has '[' without ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return host, int(port)
