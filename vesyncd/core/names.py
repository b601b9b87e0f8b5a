"""
How front ends name plugs: by id, alias (both case-insensitive) or unique id prefix, never by a
silent pick when a name fits more than one plug.

L{PlugNames} keeps the case-folded indexes of the hub's known plugs; the hub tells it when a plug
is added, removed or renamed.
"""

from __future__ import annotations

import bisect
import re
from typing import Iterable, Mapping

from vesyncd.core.model import AmbiguousPlug, InvalidArgument, PlugState, UnknownPlug

MAX_ALIAS = 64


def matchPrefix(ref: object, plugs: Iterable[PlugState], what: str = "") -> PlugState:
    """The one plug of C{plugs} whose id starts with C{ref} (case-insensitive).

    @raise UnknownPlug: none does; L{AmbiguousPlug}: several do.
    """
    if not isinstance(ref, str) or not ref:
        raise UnknownPlug("no plug given")
    folded = ref.casefold()
    matches = [p for p in plugs if p.id.casefold().startswith(folded)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousPlug(f"{ref!r} matches {len(matches)} plugs: give more of the id")
    raise UnknownPlug(f"no plug {what + ' ' if what else ''}is called {ref!r}")


class PlugNames:
    """Case-folded indexes of the known plugs' ids and aliases."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # case-folded alias -> plug id
        self.ids: dict[str, list[str]] = {}  # case-folded id -> ids of known plugs
        self.sortedIds: list[str] = []  # the keys of ids, sorted, for prefix tests in O(log n)
        self._ordered: list[PlugState] | None = None  # the plugs by name, sorted again after any change

    def add(self, plug: PlugState) -> None:
        """Index a plug that became known."""
        self._ordered = None
        folded = plug.id.casefold()
        if folded not in self.ids:
            bisect.insort(self.sortedIds, folded)
        self.ids.setdefault(folded, []).append(plug.id)
        if plug.alias:
            self.aliases.setdefault(plug.alias.casefold(), plug.id)

    def remove(self, plug: PlugState) -> None:
        """Drop a forgotten plug from the indexes."""
        self._ordered = None
        ids = self.ids.get(plug.id.casefold(), [])
        if plug.id in ids:
            ids.remove(plug.id)
        if not ids and self.ids.pop(plug.id.casefold(), None) is not None:
            i = bisect.bisect_left(self.sortedIds, plug.id.casefold())
            if i < len(self.sortedIds) and self.sortedIds[i] == plug.id.casefold():
                del self.sortedIds[i]
        if plug.alias and self.aliases.get(plug.alias.casefold()) == plug.id:
            del self.aliases[plug.alias.casefold()]

    def ordered(self, plugs: Mapping[str, PlugState]) -> list[PlugState]:
        """C{plugs} (the known plugs, whose every change is told to L{add}, L{remove} and L{renamed})
        ordered by name (case-insensitive), then id: the same list until one of those is called."""
        if self._ordered is None:
            self._ordered = sorted(plugs.values(), key=lambda p: (p.name.lower(), p.id))
        return self._ordered

    def squats(self, plugId: str) -> str | None:
        """Why an id never seen before would take a name that already leads to a known plug, or None.

        It may not be (in any case) a known plug's alias ("alias") or id ("id_case"), nor the
        start of a known id ("prefix"): a user who types a name or the start of an id must never
        reach a newcomer instead.  Real plug ids are UUIDs, so none of this refuses a real plug.
        """
        folded = plugId.casefold()
        if folded in self.aliases:
            return "alias"
        if folded in self.ids:
            return "id_case"
        return None

    def isPrefix(self, plugId: str) -> bool:
        """True if C{plugId} is (in any case) the start of a known plug's id."""
        folded = plugId.casefold()
        i = bisect.bisect_left(self.sortedIds, folded)
        return i < len(self.sortedIds) and self.sortedIds[i].startswith(folded)

    def resolve(self, ref: str, plugs: Mapping[str, PlugState]) -> PlugState:
        """The plug C{ref} names among C{plugs} (the indexed ones).

        @raise UnknownPlug: nothing matches.
        @raise AmbiguousPlug: the name is one plug's alias and another's id, or an id prefix
            matches several plugs; the message lists them.
        """
        if not isinstance(ref, str) or not ref:
            raise UnknownPlug("no plug given")
        folded = ref.casefold()
        found: dict[str, str] = {}
        if ref in plugs:
            found[ref] = "id"
        for plugId in self.ids.get(folded, ()):
            found.setdefault(plugId, "id")
        aliased = self.aliases.get(folded)
        if aliased is not None:
            found.setdefault(aliased, "alias")
        if len(found) == 1:
            return plugs[next(iter(found))]
        if found:
            names = "; ".join(f"plug {i} by its {how}" + (f" (alias {plugs[i].alias!r})"
                                                            if plugs[i].alias and how == "id" else "")
                              for i, how in sorted(found.items()))
            raise AmbiguousPlug(f"{ref!r} matches {len(found)} plugs: {names}; use the full id")
        return matchPrefix(ref, plugs.values())

    def checkAlias(self, plug: PlugState, alias: str, plugs: Mapping[str, PlugState]) -> None:
        """Refuse an alias that is too long, unprintable, taken, or names another plug's id.

        @raise InvalidArgument: saying why.
        """
        folded = alias.casefold()
        if len(alias) > MAX_ALIAS or not alias.isprintable():
            raise InvalidArgument(f"an alias is 1-{MAX_ALIAS} printable characters")
        if re.fullmatch(r"[0-9a-fA-F-]{1,8}", alias) and any(
            p.id.casefold().startswith(folded) and p is not plug for p in plugs.values()
        ):
            raise InvalidArgument(f"alias {alias!r} would hide another plug's id")
        for other in self.ids.get(folded, ()):
            if other != plug.id:
                raise InvalidArgument(f"alias {alias!r} is the id of plug {other}")
        owner = self.aliases.get(folded)
        if owner is not None and owner != plug.id:
            raise InvalidArgument(f"alias {alias!r} is already used by plug {owner}")

    def renamed(self, plug: PlugState, previous: str | None) -> None:
        """Move a plug's alias entry after it was renamed from C{previous}."""
        self._ordered = None
        if previous and self.aliases.get(previous.casefold()) == plug.id:
            del self.aliases[previous.casefold()]
        if plug.alias:
            self.aliases[plug.alias.casefold()] = plug.id
