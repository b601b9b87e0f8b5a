"""Test doubles shared by the core tests: a plug connection that records what the core sends."""

from __future__ import annotations

import json
from typing import Any

from zope.interface import implementer

from vesyncd.interfaces import IPlugConnection


@implementer(IPlugConnection)
class FakeConnection:
    """Records every message the core sends and whether it was told to disconnect."""

    def __init__(self, peer: str = "192.0.2.10:40000") -> None:
        self.peer = peer
        self.sent: list[dict[str, Any]] = []
        self.disconnected: str | None = None

    def send(self, payload: bytes) -> None:
        """Keep the decoded JSON of each message."""
        self.sent.append(json.loads(payload))

    def disconnect(self, reason: str) -> None:
        """Remember the first reason given."""
        if self.disconnected is None:
            self.disconnected = reason

    def uris(self) -> list[str]:
        """The URIs sent so far, in order."""
        return [m.get("uri") for m in self.sent]
