"""
The control token and the rules every authenticated front end shares.

The token is 256 random bits, created at first start in the state directory with mode 0600.
Control port, PB and HTTP all check it here, and all slow down wrong guesses the same way.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from twisted.logger import Logger

log = Logger()

TOKEN_BYTES = 32


def loadOrCreateToken(path: Path) -> str:
    """Read the token at C{path}, creating it (mode 0600, parent 0700) when missing.

    @raise OSError: the file cannot be read or created (the message names the path).
    """
    path = Path(path)
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    log.info("created a new control token in {path}", path=str(path))
    return token


def readToken(path: Path) -> str:
    """Read an existing token (for clients); raise OSError when it is missing or empty."""
    token = Path(path).read_text().strip()
    if not token:
        raise OSError(f"token file {path} is empty")
    return token


def tokenMatches(expected: str, given: str | bytes | None) -> bool:
    """Constant-time comparison of a presented token with the real one."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "replace")
    return hmac.compare_digest(expected.encode("ascii"), given)


class FailureThrottle:
    """Slows down wrong tokens per peer host: each failure doubles the wait, up to C{maximum} s.

    Memory is bounded: at most C{maxPeers} hosts are remembered (the oldest are dropped).
    """

    def __init__(self, base: float = 0.5, maximum: float = 10.0, maxPeers: int = 4096) -> None:
        self.base = base
        self.maximum = maximum
        self.maxPeers = maxPeers
        self._failures: dict[str, int] = {}

    def delay(self, host: str) -> float:
        """Seconds to wait before answering this host's next attempt."""
        n = self._failures.get(host, 0)
        return 0.0 if n == 0 else min(self.maximum, self.base * 2 ** (n - 1))

    def failed(self, host: str) -> float:
        """Count a failure; returns the delay to apply before answering it."""
        if host not in self._failures and len(self._failures) >= self.maxPeers:
            self._failures.pop(next(iter(self._failures)))
        self._failures[host] = self._failures.get(host, 0) + 1
        return self.delay(host)

    def succeeded(self, host: str) -> None:
        """Forget a host's failures."""
        self._failures.pop(host, None)
