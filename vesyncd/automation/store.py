"""
L{MemoryAutomationStore}: automation items kept in a dict, for tests and for a daemon run without a
state directory.  Two engines built one after the other on the same instance see the same items, as
they would with the SQLite store.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from vesyncd.automation.interfaces import IAutomationStore


@implementer(IAutomationStore)
class MemoryAutomationStore:
    """Items as deep-copied JSON documents in a dict keyed by (kind, id, plug)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], dict[str, Any]] = {}

    def load(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Every item as C{(kind, id, plug, document)}, in the order they were first saved."""
        return [(kind, id, plug, copy.deepcopy(doc)) for (kind, id, plug), doc in self.items.items()]

    def save(self, kind: str, id: str, plug: str, document: dict[str, Any]) -> None:
        """Create or replace one item."""
        self.items[(kind, id, plug)] = copy.deepcopy(document)

    def delete(self, kind: str, id: str, plug: str) -> None:
        """Remove one item if it is there."""
        self.items.pop((kind, id, plug), None)

    def deletePlug(self, plug: str) -> None:
        """Remove every item of C{plug}."""
        for key in [k for k in self.items if k[2] == plug]:
            del self.items[key]

    def flush(self) -> Deferred:
        """Everything is written already."""
        return succeed(None)
