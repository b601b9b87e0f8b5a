"""
Where the MQTT bridge connects: the C{--mqtt} URL parsed into L{BrokerSettings}, and the
reconnect back-off.  Pure functions and values only; the connection lives in
L{vesyncd.mqtt.client}.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class MQTTConfigError(ValueError):
    """An C{--mqtt} URL or related option is not usable; the message says why (never the password)."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect; C{password} is never part of C{repr} or L{describe}."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    caFile: str | None = None

    def describe(self) -> str:
        """The broker as a URL for logs: user name kept, password left out."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parseBrokerURL(url: str, caFile: str | None = None) -> BrokerSettings:
    """Parse C{mqtt://[user:password@]host[:port]} or C{mqtts://...}.

    @raise MQTTConfigError: the URL is malformed; the message never repeats the password.
    """
    if not isinstance(url, str) or len(url) > 1024:
        raise MQTTConfigError("--mqtt takes a URL of at most 1024 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise MQTTConfigError("--mqtt: the URL is malformed (expected mqtt://[user:password@]host[:port])") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MQTTConfigError(f"--mqtt: scheme must be mqtt:// or mqtts://, not {parts.scheme!r}")
    if not parts.hostname:
        raise MQTTConfigError("--mqtt: the URL names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MQTTConfigError("--mqtt: the URL takes no path, query or fragment")
    tls = parts.scheme == "mqtts"
    if caFile is not None and not tls:
        raise MQTTConfigError("--mqtt-ca needs an mqtts:// URL")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise MQTTConfigError("--mqtt: a password needs a user name")
    return BrokerSettings(host=parts.hostname, port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
                          tls=tls, username=username, password=password, caFile=caFile)


def backoffDelay(attempt: int, minDelay: float = MIN_BACKOFF, maxDelay: float = MAX_BACKOFF,
                 rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before reconnect attempt C{attempt} (1, 2, ...): doubling, capped, jittered."""
    base = min(maxDelay, minDelay * 2 ** min(max(attempt - 1, 0), 30))
    return rand(0.5, 1.0) * base
