"""The cluster's operations side in memory: the control port's C{nodes} request over AMP, C{vesyncctl nodes}
(text and JSON), with a cluster view standing in for the cluster package's."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.control_helpers import TOKEN, World
from tests.fakes import result
from vesyncd.cli import cluster as cli_cluster
from vesyncd.cli.output import Output
from vesyncd.control import commands as c
from vesyncd.control.cluster_api import MAX_NODES, MAX_TEXT, clusterJSON, fitCluster
from vesyncd.core.clusterview import ClusterView, LeaseInfo, NodeInfo

#: The time the fake view's values were read at.
NOW = 1000.0


def node(name: str, address: str | None = None, plugAddress: str | None = None, age: float = 1.0,
         alive: bool = True, plugs: int = 0, this: bool = False) -> NodeInfo:
    """A node row as a cluster view gives it, read at L{NOW}."""
    return NodeInfo(name, address, plugAddress, NOW - 3600.0, NOW - age, age, alive, plugs, this)


def lease(plug: str, holder: str, age: float, left: float) -> LeaseInfo:
    """A lease held for C{age} seconds that lapses C{left} seconds after L{NOW}."""
    return LeaseInfo(plug, holder, NOW + left, NOW - age, age)


@implementer(ClusterView)
class FakeView:
    """A cluster view holding given values (what the cluster package's NodeDirectory reads from the database)."""

    def __init__(self, nodeName: str = "a", nodes: list[NodeInfo] | None = None,
                 leases: list[LeaseInfo] | None = None, database: dict[str, Any] | None = None,
                 broker: dict[str, Any] | None = None, counters: dict[str, int] | None = None) -> None:
        self.nodeName = nodeName
        self.nodeList = list(nodes or [])
        self.leaseList = list(leases or [])
        self.databaseStatus = database if database is not None else {
            "read_age_s": 1.0, "heartbeat_failures": 0, "reachable": True}
        self.brokerStatus = broker
        self.counterValues = dict(counters or {})

    def nodes(self) -> list[NodeInfo]:
        return list(self.nodeList)

    def liveAddresses(self) -> list[str]:
        return [n.address for n in self.nodeList if n.alive and n.address]

    def leases(self, node: str | None = None) -> list[LeaseInfo]:
        return [x for x in self.leaseList if node in (None, x.node)]

    def ownerOf(self, plugId: str) -> str | None:
        return next((x.node for x in self.leaseList if x.plug == plugId), None)

    def status(self) -> dict[str, Any]:
        return {"node": self.nodeName, "nodes": [n.toJSON() for n in self.nodeList],
                "leases_held": len(self.leases(self.nodeName)),
                "read_age_s": self.databaseStatus.get("read_age_s"),
                "heartbeat_failures": self.databaseStatus.get("heartbeat_failures", 0)}

    def counters(self) -> dict[str, int]:
        return dict(self.counterValues)

    def database(self) -> dict[str, Any]:
        return self.databaseStatus

    def broker(self) -> dict[str, Any] | None:
        return self.brokerStatus

    def refresh(self) -> Deferred:
        return succeed(self.nodes())


def threeNodes() -> FakeView:
    """Nodes a (this one), b and c (dead), 150 plugs each on a and b; a's oldest lease is 4.2 s old and its
    soonest lapses in 11 s, b's oldest is 9 s old."""
    leases = ([lease("pa0", "a", 4.2, 11.0)] + [lease(f"pa{i}", "a", 1.0, 14.0) for i in range(1, 150)]
              + [lease("pb0", "b", 9.0, 6.5)] + [lease(f"pb{i}", "b", 2.0, 13.0) for i in range(1, 150)])
    view = FakeView(nodes=[
        node("c", "127.0.0.4", "127.0.0.4:17273", 31.4, False, 0),
        node("a", "127.0.0.2", "127.0.0.2:17273", 0.4, True, 150, this=True),
        node("b", "127.0.0.3", "127.0.0.3:17273", 1.1, True, 150),
    ], leases=leases, database={"read_age_s": 0.4, "heartbeat_failures": 0, "reachable": True},
        broker={"connected": True})
    verifyObject(ClusterView, view)
    return view


def loggedIn(world: World):
    client, _server, pump = world.amp()
    d = client.login(TOKEN)
    pump.flush()
    result(d)
    return client, pump


def ask(world: World):
    client, pump = loggedIn(world)
    d = client.nodes()
    pump.flush()
    return d


def test_nodesAloneIsAPlainError():
    """A daemon not in a cluster answers NotInCluster with a sentence saying what a cluster needs."""
    world = World(plugs=1)
    with pytest.raises(c.NotInCluster) as caught:
        result(ask(world))
    assert "--node NAME" in str(caught.value) and caught.value.code == "not_clustered"


def test_nodesOverAMP():
    """The nodes sorted by name, this node marked, leases counted per node with the oldest one's age and the
    soonest expiry, totals summed, the database's and broker's status as the view gives them."""
    world = World(plugs=1)
    world.core.cluster = threeNodes()
    doc = result(ask(world))
    assert [n["name"] for n in doc["nodes"]] == ["a", "b", "c"]
    a, b, cnode = doc["nodes"]
    assert set(a) == {"name", "address", "plug_address", "heartbeat_age", "alive", "plugs", "leases",
                      "lease_age_max", "lease_expires_in_min", "self"}
    assert set(doc) == {"node", "nodes", "listed", "alive", "dead", "plugs", "database", "broker"}
    assert a["self"] and not b["self"] and a["plugs"] == 150 and a["leases"] == 150 and a["lease_age_max"] == 4.2
    assert a["lease_expires_in_min"] == 11.0 and a["plug_address"] == "127.0.0.2:17273"
    assert b["leases"] == 150 and b["lease_age_max"] == 9.0 and b["lease_expires_in_min"] == 6.5
    assert not cnode["alive"] and cnode["heartbeat_age"] == 31.4
    assert (cnode["leases"], cnode["lease_age_max"], cnode["lease_expires_in_min"]) == (0, None, None)
    assert (doc["node"], doc["alive"], doc["dead"], doc["plugs"], doc["listed"]) == ("a", 2, 1, 300, 3)
    assert doc["database"]["reachable"] is True and doc["broker"] == {"connected": True}


def test_hostileRowsBounded():
    """What another node wrote in the shared database is cut: long names, NaN ages, too many nodes."""
    view = FakeView(nodes=[node("x" * 5000, "\x1b[2J" * 100, "1.2.3.4", float("nan"), True, 1)] * (MAX_NODES + 50),
                    leases=[lease("p", "x" * 5000, float("inf"), float("nan"))],
                    database={"read_age_s": float("nan"), "error": "e" * 5000, "reachable": False})
    doc = clusterJSON(view)
    assert len(doc["nodes"]) == doc["listed"] == MAX_NODES
    first = doc["nodes"][0]
    assert len(first["name"]) == MAX_TEXT and len(first["address"]) == MAX_TEXT and first["heartbeat_age"] is None
    assert (first["leases"], first["lease_age_max"], first["lease_expires_in_min"]) == (1, None, None)
    assert doc["database"]["read_age_s"] is None and len(doc["database"]["error"]) == MAX_TEXT
    json.dumps(doc, allow_nan=False)
    fitted = fitCluster(doc, lambda d: len(c.JSON().toString(d)) <= 10_000)
    assert 0 < len(fitted["nodes"]) < MAX_NODES and fitted["listed"] == MAX_NODES


def test_hostileRowsFitOneAMPValue():
    """Over AMP, the answer for the largest cluster view still arrives (its list cut to one value)."""
    world = World(plugs=1)
    world.core.cluster = FakeView(nodes=[node("x" * 5000, "y" * 5000, "z" * 5000, 1.0, True, 1)] * 1000)
    doc = result(ask(world))
    assert doc["listed"] == MAX_NODES and 0 < len(doc["nodes"]) <= MAX_NODES


def runCLI(doc: Any, asJSON: bool) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()

    class Client:
        async def nodes(self):
            return doc

    import asyncio
    code = asyncio.run(cli_cluster.run(Client(), SimpleNamespace(), Output(out, err, asJSON)))
    return code, out.getvalue()


def test_cliText():
    """The table: one row per node, this node named, dead nodes in capitals, then the database and broker."""
    code, text = runCLI(clusterJSON(threeNodes()), False)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "PLUG", "ADDRESS", "PLUGS", "LEASES", "OLDEST", "LEASE", "HEARTBEAT", "STATE"]
    assert lines[1].startswith("a (this node)") and lines[1].split()[-1] == "alive" and "150" in lines[1]
    assert lines[3].startswith("c") and lines[3].endswith("DEAD") and "31 s" in lines[3]
    assert "2 alive, 1 dead, 300 plugs owned" in text
    assert "database: reachable" in text and "broker: connected" in text


def test_cliJSONAndEscaping():
    """--json prints the answer as it is; plain text escapes a hostile node name."""
    doc = clusterJSON(FakeView(nodes=[node("evil\x1b[31m", "a", "b", 1.0, True, 1)]))
    code, text = runCLI(doc, True)
    assert code == 0 and json.loads(text) == doc
    _, plain = runCLI(doc, False)
    assert "\x1b" not in plain


def test_cliParserAndCommandTable():
    """addParser adds a `nodes` command; COMMANDS maps it to run."""
    import argparse

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    cli_cluster.addParser(sub)
    assert p.parse_args(["nodes"]).command == "nodes"
    assert cli_cluster.COMMANDS["nodes"] is cli_cluster.run


def test_summaryInInfo():
    """The control plane publishes a short cluster summary in `info` when it has a view (for the doctor)."""
    from vesyncd.control import tap as controlTap
    from vesyncd.service import DaemonInfo
    from twisted.application.service import MultiService

    info = DaemonInfo()
    world = World(plugs=1)
    config = {"control": "unix:/nonexistent/vesyncd-test.sock", "pb": None, "control-insecure": False}
    controlTap.makeServices(MultiService(), world.hub, config, world.clock, TOKEN, info, cluster=threeNodes())
    summary = info.facts["cluster"]()
    assert summary["nodes"] == [{"name": "a", "alive": True, "self": True}, {"name": "b", "alive": True, "self": False},
                                {"name": "c", "alive": False, "self": False}]
    assert summary["database"]["reachable"] is True and summary["broker"] == {"connected": True}
    assert summary["dead"] == 1


def test_realNodeDirectory():
    """The cluster package's NodeDirectory (on an in-memory SQLite with schema 5's tables) read by `nodes`:
    heartbeat ages, this node, leases per node with the oldest lease's age and the soonest expiry, the
    database judged by how fresh the last read is, and liveAddresses for DNS."""
    import sqlite3

    from twisted.internet import task
    from twisted.internet.defer import maybeDeferred

    from vesyncd.cluster.nodes import NodeDirectory
    from vesyncd.cluster.settings import ClusterSettings
    from vesyncd.storage.schema import SCHEMA_5

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA_5)
    clock = task.Clock()
    clock.advance(1000.0)
    conn.execute("INSERT INTO nodes VALUES ('b', '10.0.0.3', '10.0.0.3:17273', 900, 999)")
    conn.execute("INSERT INTO nodes VALUES ('c', '10.0.0.4', '10.0.0.4:17273', 900, 950)")
    conn.executemany("INSERT INTO leases VALUES (?, ?, ?, ?)",
                     [("p1", "a", 1012, 990), ("p2", "a", 1005, 900), ("p3", "b", 1010, 995)])
    directory = NodeDirectory(clock, lambda fn, *a: maybeDeferred(fn, *a), lambda: conn,
                              ClusterSettings("a", lease=15.0, heartbeat=5.0), address=lambda: "10.0.0.2",
                              plugAddress=lambda: "10.0.0.2:17273")
    verifyObject(ClusterView, directory)
    assert directory.broker() is None  # not told about a broker link
    result(directory.refresh())
    clock.advance(2.0)
    doc = clusterJSON(directory)
    a, b, cnode = doc["nodes"]
    assert (a["name"], a["self"], a["alive"], a["heartbeat_age"]) == ("a", True, True, 2.0)
    # a's leases hold until 15 s after its heartbeat (written at 1000 by the refresh): 13 s left at 1002.
    assert a["leases"] == 2 and a["lease_age_max"] == 102.0 and a["lease_expires_in_min"] == 13.0
    assert (b["leases"], b["alive"], cnode["alive"], cnode["leases"]) == (1, True, False, 0)
    assert doc["database"] == {"read_age_s": 2.0, "heartbeat_failures": 0, "reachable": True}
    assert sorted(directory.liveAddresses()) == ["10.0.0.2", "10.0.0.3"]
    assert doc["broker"] is None and doc["node"] == "a" and (doc["alive"], doc["dead"], doc["plugs"]) == (2, 1, 3)
    clock.advance(60.0)  # no heartbeat read for a minute: the database is taken for unreachable
    assert clusterJSON(directory)["database"] == {"read_age_s": 62.0, "heartbeat_failures": 0, "reachable": False,
                                                  "error": "last read 62 s ago, 0 heartbeat(s) failed"}


def test_nodeDirectoryBrokerAsked():
    """A NodeDirectory given the broker link's state asks it at each call; one never read says so."""
    from twisted.internet import task
    from twisted.internet.defer import maybeDeferred

    from vesyncd.cluster.nodes import NodeDirectory
    from vesyncd.cluster.settings import ClusterSettings

    up = [False]
    directory = NodeDirectory(task.Clock(), lambda fn, *a: maybeDeferred(fn, *a), lambda: None,
                              ClusterSettings("a"), brokerConnected=lambda: up[0])
    assert clusterJSON(directory)["broker"] == {"connected": False}
    up[0] = True
    assert directory.broker() == {"connected": True}
    assert directory.database() == {"read_age_s": None, "heartbeat_failures": 0, "reachable": False,
                                    "error": "never read, 0 heartbeat(s) failed"}


def test_checkedFailureStillMapsToAKnownError():
    """A hub error whose Failure was already checked (as a routed command's is) still reaches the client as
    the control error, and the connection stays open (a stale class cache once made it 'unknown')."""
    from twisted.internet.defer import fail

    from vesyncd.core import model as h

    world = World(plugs=1)
    client, pump = loggedIn(world)

    def refresh(ref):
        d = fail(h.CommandTimeout("node b did not answer within 7 s"))
        d.addErrback(lambda f: f.check(h.CommandTimeout) and f)  # computes the Failure's class cache
        return d

    world.hub.refresh = refresh
    d = client.refresh("0")
    pump.flush()
    with pytest.raises(c.CommandTimeout):
        result(d)
    d = client.info()
    pump.flush()
    assert result(d)["version"]


def test_memberDirectoryReportsTheBrokerLink():
    """A cluster member's view reports its own broker link as it is at each call (the link's connection is
    set up after the view is made), and `nodes` shows it with this node's row."""
    from twisted.internet import task

    from tests.cluster_helpers import FakeBroker, Node, sharedDatabase

    clock = task.Clock()
    clock.advance(1_700_000_000.0)
    broker = FakeBroker()
    a = Node("a", clock, sharedDatabase(), broker).start()
    view = a.member.directory
    verifyObject(ClusterView, view)
    assert view.broker() == {"connected": True}
    broker.down.add("a")
    doc = clusterJSON(view)
    assert doc["broker"] == {"connected": False} and doc["node"] == "a"
    assert [(n["name"], n["self"], n["alive"]) for n in doc["nodes"]] == [("a", True, True)]
    assert doc["database"]["reachable"] is True
