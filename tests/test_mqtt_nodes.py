"""In-memory tests of L{vesyncd.mqtt.nodes.TopicNodes}: the topic level of each plug kept one change
at a time gives the same answer as working it out for every plug from scratch, reports exactly the
plugs that moved, and does work for the plugs involved only (not for every plug); and the bridge
moves the topics of exactly those plugs on a rename or a forget."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tests.fakes import FakeConnection
from tests.test_mqtt_naming import Publisher
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt import nodes as nodesModule
from vesyncd.mqtt.bridge import MQTTBridge
from vesyncd.mqtt.nodes import TopicNodes
from vesyncd.plugs import codec as m


def fromScratch(plugs: dict[str, str | None]) -> dict[str, str]:
    """The rule, worked out for every plug at once (the reference the index must agree with)."""
    slugs = {plugId: ha.slugify(alias) for plugId, alias in plugs.items()}
    ids = {ha.safeId(plugId) for plugId in plugs}
    wanted: dict[str, int] = {}
    for slug in slugs.values():
        if slug:
            wanted[slug] = wanted.get(slug, 0) + 1
    levels = {}
    for plugId, slug in slugs.items():
        own = ha.safeId(plugId)
        if slug and wanted[slug] == 1 and slug != "status" and (slug == own or slug not in ids):
            levels[plugId] = slug
        else:
            levels[plugId] = own
    return levels


IDS = [f"p{i}" for i in range(12)] + ["a/b+#", "x y"]
ALIASES = [None, "Lamp", "lamp!", "LAMP", "Fan", "Status", "p3", "P4", "Kettle", "x y", "Desk Lamp", "desk-lamp"]
OPERATIONS = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(IDS), st.sampled_from(ALIASES)),
    st.tuples(st.just("remove"), st.sampled_from(IDS)),
    st.tuples(st.just("reconcile"), st.dictionaries(st.sampled_from(IDS), st.sampled_from(ALIASES))))


@settings(max_examples=200, deadline=None)
@given(st.lists(OPERATIONS, max_size=60))
def test_changesAgreeWithTheRuleWorkedOutFromScratch(operations: list[Any]) -> None:
    """Adds, renames, removes and reconciles over a small pool of clashing names (aliases equal to
    other plugs' ids, to each other in another spelling, to C{status}; unsafe ids): after each change
    the map equals the from-scratch answer, C{moved} names exactly the plugs whose level changed,
    and every level and every id finds its plug."""
    nodes = TopicNodes()
    plugs: dict[str, str | None] = {}
    for operation in operations:
        before = dict(nodes.nodes)
        if operation[0] == "set":
            plugs[operation[1]] = operation[2]
            change = nodes.set(operation[1], operation[2])
        elif operation[0] == "remove":
            plugs.pop(operation[1], None)
            before.pop(operation[1], None)
            change = nodes.remove(operation[1])
        else:
            plugs = dict(operation[1])
            before = {plugId: level for plugId, level in before.items() if plugId in plugs}
            change = nodes.reconcile(plugs.items())
        expected = fromScratch(plugs)
        assert nodes.nodes == expected
        assert change.moved == {plugId: (before.get(plugId), level) for plugId, level in expected.items()
                                if before.get(plugId) != level}
        for plugId, level in expected.items():
            assert nodes.plugAt(level) == plugId
            assert nodes.plugAt(ha.safeId(plugId)) == plugId
        assert nodes.plugAt("status") is None


def test_collisionsOfTheTouchedSlugsOnly() -> None:
    """C{collisions(slugs)} lists the collisions among the given slugs; without, all of them."""
    nodes = TopicNodes()
    nodes.reconcile([("a", "Lamp"), ("b", "lamp"), ("c", "Fan"), ("d", "fan!"), ("e", "Kettle")])
    assert nodes.collisions({"lamp", "kettle"}) == [{"slug": "lamp", "plugs": ["a", "b"]}]
    assert [found["slug"] for found in nodes.collisions()] == ["fan", "lamp"]
    change = nodes.set("b", "Heater")
    assert {"lamp", "heater"} <= change.slugs
    assert nodes.collisions(change.slugs) == []
    assert change.moved == {"a": ("a", "lamp"), "b": ("b", "heater")}


def test_aRenameAmongManyPlugsWorksOutOnlyTheNamesInvolved(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2,000 plugs mapped, a rename, an add and a remove each make one slug, whatever the count
    (working out every plug's slug again held the reactor for 80-200 ms at 10,000 plugs)."""
    nodes = TopicNodes()
    nodes.reconcile((f"plug-{i}", f"Socket {i}") for i in range(2000))
    made: list[Any] = []
    real = nodesModule.slugify

    def counted(alias: str | None) -> str:
        made.append(alias)
        return real(alias)

    monkeypatch.setattr(nodesModule, "slugify", counted)
    assert nodes.set("plug-7", "Socket 8").moved == {"plug-7": ("socket_7", "plug-7"), "plug-8": ("socket_8", "plug-8")}
    assert nodes.set("plug-new", "Heater").moved == {"plug-new": (None, "heater")}
    assert nodes.remove("plug-8").moved == {"plug-7": ("plug-7", "socket_8")}
    assert made == ["Socket 8", "Heater"]
    # Nothing changed: a reconcile is one lookup per plug, no slug made.
    plugs = [(f"plug-{i}", f"Socket {i}") for i in range(2000) if i not in (7, 8)]
    assert nodes.reconcile(plugs + [("plug-7", "Socket 8"), ("plug-new", "Heater")]).moved == {}
    assert made == ["Socket 8", "Heater"]


# -- the bridge ----------------------------------------------------------------------------------

def bridgeWith(count: int) -> tuple[Hub, MQTTBridge, Publisher]:
    """A started, published bridge over a hub with C{count} plugs called C{Socket <n>}."""
    clock = Clock()
    hub = Hub(clock, Settings(max_new_plugs_per_minute=count + 10))
    for i in range(count):
        plugId = f"2b8e1f5c-0000-4000-8000-{i:012d}"
        hub.login(FakeConnection(), m.Login(id=plugId, firmVersion="1.89", deviceName="x", relay=True))
        hub.rename(plugId, f"Socket {i}")
    pub = Publisher()
    bridge = MQTTBridge(hub, pub, clock=clock)
    bridge.start()
    bridge.publishAll()
    while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
        clock.advance(0)  # the republish, a slice per turn
    pub.log.clear()
    return hub, bridge, pub


def test_renameMovesTheTopicsOfThePlugsInvolvedOnly() -> None:
    """Renaming a plug to another's name moves both to their ids (old topics cleared, configs and
    state published under the new level) and touches no third plug; renaming it back restores both."""
    hub, bridge, pub = bridgeWith(50)
    first, second = "2b8e1f5c-0000-4000-8000-000000000001", "2b8e1f5c-0000-4000-8000-000000000002"
    hub.rename(first, "Socket_2")
    assert bridge.nodes[first] == first and bridge.nodes[second] == second
    cleared = {topic for topic, payload in pub.log if payload == b"" and topic.startswith("vesyncd/")}
    assert cleared == {f"vesyncd/socket_{n}/{what}" for n in (1, 2) for what in ("availability", "relay", "state")}
    touched = {topic.split("/")[1] for topic, _ in pub.log if topic.startswith("vesyncd/")}
    assert touched == {"socket_1", "socket_2", first, second}
    pub.log.clear()
    hub.rename(first, "Socket 1")
    assert bridge.nodes[first] == "socket_1" and bridge.nodes[second] == "socket_2"
    assert {topic.split("/")[1] for topic, _ in pub.log if topic.startswith("vesyncd/")} == {
        "socket_1", "socket_2", first, second}


def test_forgetGivesTheNameBackAndCommandsFindPlugsByNameOrId() -> None:
    """Forgetting one of two plugs that wanted a name gives it to the other, whose topics move; a
    command reaches a plug by its level or its id, and a forgotten plug's level reaches nobody."""
    hub, bridge, pub = bridgeWith(20)
    first, second = "2b8e1f5c-0000-4000-8000-000000000001", "2b8e1f5c-0000-4000-8000-000000000002"
    hub.rename(first, "Socket_2")
    hub.forget(second)
    assert bridge.nodes[first] == "socket_2" and second not in bridge.nodes
    assert (f"vesyncd/{first}/state", b"") in pub.log
    assert bridge._plugForNode("socket_2") == first
    assert bridge._plugForNode(first) == first
    assert bridge._plugForNode(second) is None
    assert bridge._plugForNode("socket_3") == "2b8e1f5c-0000-4000-8000-000000000003"
