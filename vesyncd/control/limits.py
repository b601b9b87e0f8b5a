"""
How many control connections (AMP or PB) may be open: in total, and from one source host.

A client that opens connections and never logs in holds each one for the login deadline; without
a cap, a flood of them takes every file handle and locks out the user's own C{vesyncctl}.  Clients
on the UNIX socket share one "host" (they cannot be told apart), so only the total applies to them.
"""

from __future__ import annotations

import collections
from typing import Any

from twisted.logger import Logger

log = Logger()

#: Control connections open at once, logged in or not (each watcher holds one; 64 may watch).
MAX_CONNECTIONS = 128
#: Control connections open at once from one IP address.
MAX_PER_HOST = 16
#: After the first refusal, one log line per this many more (a flood must not flood the log too).
LOG_EVERY = 100


def addressHost(addr: Any) -> str | None:
    """The IP host of a peer address, or None for a UNIX socket (or an unknown address)."""
    host = getattr(addr, "host", None)
    return host if isinstance(host, str) and host else None


def addressText(addr: Any) -> str:
    """A peer address for logs: C{127.0.0.1:50123}, C{[::1]:50123} or C{unix socket}."""
    host, port = addressHost(addr), getattr(addr, "port", None)
    if host is None:
        return "unix socket"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnectionLimit:
    """Counts open connections in total and per source host, and refuses those beyond either cap."""

    def __init__(self, what: str, maxTotal: int = MAX_CONNECTIONS, maxPerHost: int = MAX_PER_HOST) -> None:
        self.what = what
        self.maxTotal = maxTotal
        self.maxPerHost = maxPerHost
        self.total = 0
        self.perHost: collections.Counter[str] = collections.Counter()
        #: Connections refused so far.
        self.refused = 0

    def admit(self, addr: Any) -> bool:
        """Count a new connection from C{addr}; False (logged with the peer) when a cap is reached."""
        host = addressHost(addr)
        if self.total >= self.maxTotal:
            why = f"{self.maxTotal} control connections are open"
        elif host is not None and self.perHost[host] >= self.maxPerHost:
            why = f"{self.maxPerHost} control connections are open from {host}"
        else:
            self.total += 1
            if host is not None:
                self.perHost[host] += 1
            return True
        self.refused += 1
        if self.refused == 1 or self.refused % LOG_EVERY == 0:
            log.warn("{what}: refused a connection from {peer}: {why} ({n} refused so far)", what=self.what,
                     peer=addressText(addr), why=why, n=self.refused)
        return False

    def release(self, addr: Any) -> None:
        """A connection counted by L{admit} closed."""
        self.total = max(0, self.total - 1)
        host = addressHost(addr)
        if host is not None:
            self.perHost[host] -= 1
            if self.perHost[host] <= 0:
                del self.perHost[host]
