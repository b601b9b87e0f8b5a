"""
Each plug's topic level under the MQTT prefix, kept up to date one plug at a time.

A plug's level is its alias slug when that slug is its own: no other plug's alias gives the
same slug, it is not another plug's (safe) id, and it is not a word vesyncd uses itself
(C{status}); otherwise it is the plug's safe id (L{vesyncd.mqtt.discovery.safeId}), so no two
plugs ever share topics.  L{vesyncd.mqtt.discovery.assignNodes} gives that answer for a list
of plugs at once.  L{TopicNodes} keeps the same answer as plugs come, go and are renamed, and
finds a plug from its level, at a cost that depends on how many plugs want the slugs and id
involved, not on how many plugs there are: recomputing every plug's slug on each rename, forget
or full republish held the reactor for 80-200 ms at 10,000 plugs, and finding the plug of an
incoming command walked every plug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from vesyncd.mqtt.discovery import safeId, slugify

#: Levels no plug may take: vesyncd's own topics under the prefix.
RESERVED = ("status",)


@dataclass
class Change:
    """What one change of L{TopicNodes} did.

    C{moved}: plug id -> (level before, or None for a plug new to the map; level now), for every
    plug whose level changed, the changed plug included.  C{slugs}: the slugs whose claimants
    changed (where a collision may have appeared or gone).
    """

    moved: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    slugs: set[str] = field(default_factory=set)


class TopicNodes:
    """Plug id -> topic level, and level -> plug id, for the plugs told with L{set}."""

    def __init__(self, reserved: Iterable[str] = RESERVED) -> None:
        self.reserved = frozenset(reserved)
        #: plug id -> topic level (read by the bridge and its figures; changed only here).
        self.nodes: dict[str, str] = {}
        self._byNode: dict[str, str] = {}
        self._alias: dict[str, str | None] = {}
        self._slug: dict[str, str] = {}
        #: slug -> the plugs whose alias gives it, in the order they took it.
        self._wanting: dict[str, dict[str, None]] = {}
        #: safe id -> plug id.
        self._ids: dict[str, str] = {}

    def __contains__(self, plugId: object) -> bool:
        return plugId in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, plugId: str) -> str | None:
        """The plug's level, or None for a plug not in the map."""
        return self.nodes.get(plugId)

    def plugAt(self, node: str) -> str | None:
        """The plug published under C{node}, or whose safe id C{node} is (a plug's id always names it,
        even while it is published under its alias slug); None when neither."""
        plugId = self._byNode.get(node)
        return plugId if plugId is not None else self._ids.get(node)

    def set(self, plugId: str, alias: str | None) -> Change:
        """Add the plug, or give it a new alias; the levels that changed because of it."""
        change = Change()
        known = plugId in self._alias
        if known and self._alias[plugId] == alias:
            return change
        affected = {plugId}
        if known:
            self._release(plugId, change, affected)
        else:
            sid = safeId(plugId)
            self._ids[sid] = plugId
            affected.update(self._wanting.get(sid, ()))
            change.slugs.add(sid)
        self._alias[plugId] = alias
        slug = slugify(alias)
        self._slug[plugId] = slug
        if slug:
            wanting = self._wanting.setdefault(slug, {})
            affected.update(wanting)
            wanting[plugId] = None
            change.slugs.add(slug)
        self._settle(affected, change)
        return change

    def remove(self, plugId: str) -> Change:
        """Take the plug out; the levels of other plugs that changed because of it."""
        change = Change()
        if plugId not in self._alias:
            return change
        affected: set[str] = set()
        self._release(plugId, change, affected)
        del self._alias[plugId], self._slug[plugId]
        sid = safeId(plugId)
        if self._ids.get(sid) == plugId:
            del self._ids[sid]
        affected.update(self._wanting.get(sid, ()))
        change.slugs.add(sid)
        node = self.nodes.pop(plugId)
        if self._byNode.get(node) == plugId:
            del self._byNode[node]
        self._settle(affected, change)
        return change

    def reconcile(self, plugs: Iterable[tuple[str, str | None]]) -> Change:
        """Make the map hold exactly C{plugs} (id, alias): set the new and renamed ones, drop the rest.

        Costs one lookup per plug when nothing changed.  A dropped plug is not in C{moved}.
        """
        change = Change()
        seen = set()
        for plugId, alias in plugs:
            seen.add(plugId)
            if self._alias.get(plugId, self) != alias:
                self._merge(change, self.set(plugId, alias))
        for plugId in [p for p in self._alias if p not in seen]:
            self._merge(change, self.remove(plugId))
            change.moved.pop(plugId, None)
        return change

    def collisions(self, slugs: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The slugs that cannot be levels, as C{{"slug", "plugs": [ids]}}, by slug: wanted by several
        plugs, another plug's id, or reserved (among C{slugs} only, when given)."""
        found = []
        for slug in sorted(self._wanting if slugs is None else set(slugs) & self._wanting.keys()):
            owners = list(self._wanting[slug])
            other = self._ids.get(slug)
            if len(owners) > 1 or slug in self.reserved or (other is not None and other not in owners):
                found.append({"slug": slug,
                              "plugs": sorted(owners + ([other] if other is not None and other not in owners else []))})
        return found

    def _release(self, plugId: str, change: Change, affected: set[str]) -> None:
        """Withdraw the plug's claim on its current slug."""
        slug = self._slug[plugId]
        if slug:
            wanting = self._wanting[slug]
            del wanting[plugId]
            if not wanting:
                del self._wanting[slug]
            affected.update(wanting)
            change.slugs.add(slug)

    def _level(self, plugId: str) -> str:
        slug = self._slug[plugId]
        sid = safeId(plugId)
        if (slug and len(self._wanting[slug]) == 1 and slug not in self.reserved
                and (slug == sid or slug not in self._ids)):
            return slug
        return sid

    def _settle(self, affected: set[str], change: Change) -> None:
        """Give each affected plug its level now; note those that moved."""
        levels = {plugId: self._level(plugId) for plugId in affected if plugId in self._alias}
        # Vacate first, then take: two plugs may swap levels in one change.
        for plugId, level in levels.items():
            old = self.nodes.get(plugId)
            if old != level and old is not None and self._byNode.get(old) == plugId:
                del self._byNode[old]
        for plugId, level in levels.items():
            old = self.nodes.get(plugId)
            if old != level:
                self.nodes[plugId] = level
                self._byNode[level] = plugId
                change.moved[plugId] = (old, level)

    @staticmethod
    def _merge(into: Change, change: Change) -> None:
        for plugId, (old, new) in change.moved.items():
            first = into.moved.get(plugId, (old, new))[0]
            if first == new:
                into.moved.pop(plugId, None)
            else:
                into.moved[plugId] = (first, new)
        into.slugs |= change.slugs
