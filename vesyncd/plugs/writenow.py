"""
Writing a plug's small frames to its socket at once, when nothing is waiting to be written before them.

A Twisted TCP transport buffers every C{write} and asks the reactor to watch the socket for
writability (one C{epoll_ctl}); on the next reactor turn the socket is written and unwatched (a
second C{epoll_ctl}).  For the server's frames, each a few dozen bytes answering a plug (C{/kr}) or
probing it (C{/ka}), that is two system calls and a reactor dispatch per frame, and the answer waits
for every other connection read in the same turn and for the timers due after it.  asyncio's
transports write at once when their buffer is empty and buffer only what the kernel does not take;
L{writeNow} does the same on Twisted's plain TCP transports.

Only a plain (not TLS) L{twisted.internet.tcp.Connection} with nothing buffered, connected and not
closing takes the direct way; any other transport (TLS, in-memory test transports, anything whose
buffer is not empty), and whatever the kernel does not take at once, goes through the transport's
own C{write}, so the order of bytes on the wire never changes.  A socket error is left to that
C{write}: the reactor finds it on its next attempt and closes the connection as usual.

Twisted has no public "write now" call; this reads the L{twisted.internet.abstract.FileDescriptor}
buffer fields (C{dataBuffer}, C{offset}, C{_tempDataLen}, C{_writeDisconnected}) that Twisted's
own C{doWrite} uses, and falls back to C{write} for good if a transport class lacks them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

#: Per transport class: whether it is a plain TCP connection with the buffer fields read here.
_direct: dict[type, bool] = {}

#: The class fields of L{twisted.internet.abstract.FileDescriptor} and L{twisted.internet.tcp.Connection}
#: read here (C{_tempDataLen} is set per instance).
_FIELDS = ("dataBuffer", "offset", "_writeDisconnected", "connected", "disconnecting", "TLS", "writeSomeData")


def _plainTCP(kind: type) -> bool:
    ok = _direct.get(kind)
    if ok is None:
        ok = _direct[kind] = issubclass(kind, tcp.Connection) and all(hasattr(kind, f) for f in _FIELDS)
    return ok


def writeNow(transport: Any, data: bytes) -> None:
    """Write C{data} to C{transport}: straight to its socket when it is a plain TCP connection with
    nothing buffered, the rest (if the kernel took only part) and every other case through
    C{transport.write}."""
    if _plainTCP(type(transport)):
        try:
            idle = (transport.connected and not transport.disconnecting and not transport._writeDisconnected
                    and not transport.TLS and not transport._tempDataLen
                    and transport.offset == len(transport.dataBuffer))
        except AttributeError:  # pragma: no cover - a Twisted whose transports lack these fields
            _direct[type(transport)] = idle = False
        if idle:
            sent = transport.writeSomeData(data)
            if type(sent) is int and sent >= 0:
                if sent == len(data):
                    return
                data = data[sent:]
    transport.write(data)
