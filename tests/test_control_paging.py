"""Paged plug listings cost their page: the hub copies only a page's plugs and sorts only after a change."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from vesyncd.control import commands as c
from vesyncd.control.api import ControlCore
from vesyncd.core.hub import Hub
from vesyncd.core.model import PlugState
from vesyncd.core.settings import NEW_PLUGS_HOLD, Settings
from vesyncd.plugs import codec as m
from tests.fakes import FakeConnection, result

from control_helpers import TOKEN, World

PLUGS = 7 * c.MAX_PAGE + 3



def nameOrder(plugs: list[PlugState]) -> list[str]:
    """The ids of C{plugs} in the documented listing order: name without case, then id."""
    return [p.id for p in sorted(plugs, key=lambda p: ((p.alias or p.id).lower(), p.id))]


class CountingHub(Hub):
    """A hub that counts the plug copies it makes."""

    copies = 0

    def snapshot(self, plug: PlugState) -> PlugState:
        """Count, then copy as the hub does."""
        self.copies += 1
        return super().snapshot(plug)


def makeHub(n: int = PLUGS) -> CountingHub:
    """A hub on a fake clock with C{n} known plugs, some with aliases, in no particular order."""
    clock = Clock()
    clock.advance(1_700_000_000)
    known = [PlugState(id=f"{(i * 7919) % 100_003:06d}-plug", alias=(f"Lamp {i}" if i % 5 == 0 else None))
             for i in range(n)]
    return CountingHub(clock, known=known)


def listAll(core: ControlCore, hub: CountingHub, pageSize: int = c.MAX_PAGE) -> tuple[list[str], list[int]]:
    """Every plug id through the control API page by page, and the copies the hub made for each page."""
    ids: list[str] = []
    copies: list[int] = []
    while True:
        before = hub.copies
        page = result(core.listPlugs(len(ids), pageSize))
        copies.append(hub.copies - before)
        ids.extend(p["id"] for p in page["plugs"])
        if not page["plugs"] or len(ids) >= page["total"]:
            return ids, copies


def test_pageCopiesOnlyItsPlugs() -> None:
    """Listing N plugs through the control API copies each plug once: no page copies more than its size."""
    hub = makeHub()
    core = ControlCore(hub)
    ids, copies = listAll(core, hub)
    assert len(copies) == 8
    assert all(n <= c.MAX_PAGE for n in copies), copies
    assert sum(copies) == PLUGS


def test_orderAndPagingUnchanged() -> None:
    """Pages give the plugs by name (any case), then id, with total and offset as before."""
    hub = makeHub()
    core = ControlCore(hub)
    ids, _ = listAll(core, hub)
    assert ids == nameOrder(hub.plugs()) == [p.id for p in hub.plugs()]
    page = result(core.listPlugs(PLUGS - 2, c.MAX_PAGE))
    assert (page["total"], page["offset"], [p["id"] for p in page["plugs"]]) == (PLUGS, PLUGS - 2, ids[-2:])
    page = result(core.listPlugs(10, 10 * c.MAX_PAGE))
    assert [p["id"] for p in page["plugs"]] == ids[10:10 + c.MAX_PAGE]
    assert result(core.listPlugs(PLUGS + 5, 3))["plugs"] == []
    with pytest.raises(c.InvalidArgument):
        result(core.listPlugs(-1, 3))


def test_plugPage() -> None:
    """Hub.plugPage slices the order of Hub.plugs, copies only the slice and tells the total."""
    hub = makeHub(12)
    everything = [p.id for p in hub.plugs()]
    before = hub.copies
    page, total = hub.plugPage(3, 4)
    assert ([p.id for p in page], total, hub.copies - before) == (everything[3:7], 12, 4)
    page[0].alias = "changed in the copy"
    assert hub.get(page[0].id).alias != "changed in the copy"
    assert hub.plugPage(11, 5)[0][0].id == everything[11]
    assert hub.plugPage(12, 5) == ([], 12)
    assert hub.plugPage(0, 0) == ([], 12)


def test_orderFollowsChanges() -> None:
    """A rename, a forgotten plug and a new plug's login each show in the next listing."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = CountingHub(clock, known=[PlugState(id=f"{i:02d}-plug") for i in range(5)])
    core = ControlCore(hub)
    listed = lambda: listAll(core, hub, 2)[0]  # noqa: E731
    assert listed() == [f"{i:02d}-plug" for i in range(5)]
    hub.rename("03-plug", "!lamp")
    assert listed()[0] == "03-plug"
    hub.rename("03-plug", "zebra")
    assert listed()[-1] == "03-plug"
    hub.rename("03-plug", "")
    assert listed() == [f"{i:02d}-plug" for i in range(5)]
    hub.forget("01-plug")
    assert "01-plug" not in listed() and result(core.listPlugs(0, 1))["total"] == 4
    hub.login(FakeConnection(), m.Login(id="02a-plug", firmVersion="1.89", relay=False))
    assert listed() == ["00-plug", "02-plug", "02a-plug", "03-plug", "04-plug"]
    assert listed() == nameOrder(hub.plugs())


def test_approvedPlugJoinsTheListing() -> None:
    """A plug held for approval is not listed; once approved it is, in its place by name."""
    clock = Clock()
    clock.advance(1_700_000_000)
    hub = CountingHub(clock, Settings(new_plugs=NEW_PLUGS_HOLD),
                      known=[PlugState(id=f"{i:02d}-plug") for i in range(3)])
    core = ControlCore(hub)
    assert listAll(core, hub, 2)[0] == ["00-plug", "01-plug", "02-plug"]
    hub.login(FakeConnection(), m.Login(id="00a-plug", firmVersion="1.89", relay=False))
    assert listAll(core, hub, 2)[0] == ["00-plug", "01-plug", "02-plug"]
    hub.approve("00a-plug")
    assert listAll(core, hub, 2)[0] == ["00-plug", "00a-plug", "01-plug", "02-plug"]


def test_sortedOncePerChange(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paging through every plug reads each plug's name once for the order, not once per page."""
    hub = makeHub()
    core = ControlCore(hub)
    reads = [0]
    original = PlugState.name

    def counted(plug: PlugState) -> str:
        reads[0] += 1
        return original.fget(plug)  # type: ignore[attr-defined]

    monkeypatch.setattr(PlugState, "name", property(counted))
    listAll(core, hub)
    assert reads[0] <= PLUGS
    reads[0] = 0
    listAll(core, hub)
    assert reads[0] == 0
    hub.rename(hub.plugs()[0].id, "renamed")
    reads[0] = 0
    listAll(core, hub)
    assert reads[0] <= PLUGS



def test_pageCutToOneAMPValue() -> None:
    """A page whose JSON would pass 64 KiB is cut (serialised once) and the client still gets every plug."""
    world = World(plugs=60)
    for plug in world.hub.plugs():
        world.hub.resolve(plug.id).conflict = {"at": 1.0, "fields": ["account"], "first": {"account": "a" * 700},
                                               "now": {"account": "b" * 700}}
    client, server, pump = world.amp()
    client.login(TOKEN)
    pump.flush()
    first = client.listPage(0, c.MAX_PAGE)
    pump.flush()
    page = result(first)
    assert 0 < len(page["plugs"]) < c.MAX_PAGE and page["total"] == 60
    assert len(c.JSON().toString(page["plugs"])) <= c.MAX_VALUE
    everything = client.listPlugs()
    pump.flush()
    plugs = result(everything)
    assert [p["id"] for p in plugs] == [p.id for p in world.hub.plugs()]
    assert plugs[-1]["conflict"]["first"]["account"] == "a" * 700
