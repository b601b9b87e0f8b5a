"""
How many HTTP connections the web front end holds, as plain counting on an injected clock.

Every HTTP connection holds a file handle, and so does every plug and control client: a flood of
slow HTTP clients must never take the handles the plugs and the control socket need.  So HTTP
connections are capped in total (by default a sixteenth of the process's open-file limit, after
the daemon raised it) and per source host, and a refused connection is closed at once.
L{vesyncd.web.site} applies this to twisted.web; the tests drive it with C{task.Clock}.
"""

from __future__ import annotations

import collections

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

#: Connections one source host may hold at once (a browser uses about six plus an event stream).
MAX_PER_HOST = 32
#: The total cap is the open-file limit divided by this, within these bounds.
FILE_SHARE = 16
MIN_TOTAL = 32
MAX_TOTAL = 4096
#: Seconds between log lines about refused connections.
REFUSAL_LOG_INTERVAL = 10.0
#: Seconds a client has to send its whole request (line, headers and body), however it trickles.
HEAD_TIMEOUT = 10.0

TOTAL = "total"
PER_HOST = "per_host"


def defaultTotal(fileLimit: int | None = None) -> int:
    """The default cap on HTTP connections: a sixteenth of the open-file limit (read now when not
    given), at least 32 and at most 4096, so the plugs and the control socket keep the rest."""
    if fileLimit is None:
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            fileLimit = MAX_TOTAL * FILE_SHARE if soft == resource.RLIM_INFINITY else soft
        except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
            fileLimit = 1024
    return max(MIN_TOTAL, min(MAX_TOTAL, fileLimit // FILE_SHARE))


class ConnectionLimits:
    """Admits connections up to C{maxTotal} in all and C{maxPerHost} per source host, counts the
    refused ones by reason, and logs refusals (and, apart, requests cut by the deadline) at most
    once per C{logInterval} seconds."""

    def __init__(self, clock: IReactorTime, maxTotal: int | None = None, maxPerHost: int = MAX_PER_HOST,
                 logInterval: float = REFUSAL_LOG_INTERVAL) -> None:
        self.clock = clock
        self.maxTotal = maxTotal if maxTotal is not None else defaultTotal()
        self.maxPerHost = maxPerHost
        self.logInterval = logInterval
        self.open = 0
        self.perHost: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        #: Requests cut because their head did not arrive within the deadline.
        self.headTimeouts = 0
        self._unlogged = 0
        self._loggedAt: float | None = None
        self._timeoutLoggedAt: float | None = None

    def admit(self, host: str) -> bool:
        """Count a new connection from C{host}; False (counted and logged) when it must be refused."""
        if self.open >= self.maxTotal:
            self._refuse(host, TOTAL)
            return False
        if self.perHost[host] >= self.maxPerHost:
            self._refuse(host, PER_HOST)
            return False
        self.open += 1
        self.perHost[host] += 1
        return True

    def release(self, host: str) -> None:
        """A connection admitted from C{host} closed."""
        self.open = max(0, self.open - 1)
        left = self.perHost[host] - 1
        if left > 0:
            self.perHost[host] = left
        else:
            del self.perHost[host]

    def _refuse(self, host: str, reason: str) -> None:
        self.refused[reason] += 1
        self._unlogged += 1
        now = self.clock.seconds()
        if self._loggedAt is not None and now - self._loggedAt < self.logInterval:
            return
        self._loggedAt = now
        limit = (f"{self.maxTotal} connections in all" if reason == TOTAL
                 else f"{self.maxPerHost} connections from one host")
        log.warn("http: refused {n} connection(s) at the limit of {limit} (latest from {peer}); "
                 "see --http-max-connections and --http-max-per-host", n=self._unlogged, limit=limit, peer=host)
        self._unlogged = 0

    def headTimedOut(self, host: str, seconds: float) -> None:
        """Count (and log, rate-limited with refusals) a request whose head came too slowly."""
        self.headTimeouts += 1
        now = self.clock.seconds()
        if self._timeoutLoggedAt is None or now - self._timeoutLoggedAt >= self.logInterval:
            self._timeoutLoggedAt = now
            log.warn("http: closed a connection from {peer}: no complete request within {seconds:g} s "
                     "({n} so far)", peer=host, seconds=seconds, n=self.headTimeouts)
