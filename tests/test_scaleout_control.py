"""The cluster's operations side in memory: the control port's C{nodes} request over AMP, C{vesyncctl nodes}
(text and JSON), with a cluster view standing in for the cluster package's."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from tests.control_helpers import TOKEN, World
from tests.fakes import result
from vesyncd.cli import cluster as cli_cluster
from vesyncd.cli.output import Output
from vesyncd.control import commands as c
from vesyncd.control.cluster_api import MAX_NODES, MAX_TEXT, clusterJSON, fitCluster


@dataclass
class Node:
    """A node's row as the cluster view gives it."""

    name: str
    address: str
    plug_address: str
    heartbeat_age: float
    alive: bool
    plugs: int
    leases: Any = 0
    lease_age_max: float | None = None


@dataclass
class View:
    """A cluster view: this node's name, the nodes, the database and the broker."""

    nodeName: str = "a"
    nodes: list[Node] = field(default_factory=list)
    database: dict[str, Any] | None = None
    broker: dict[str, Any] | None = None

    def liveAddresses(self) -> list[str]:
        return [n.plug_address for n in self.nodes if n.alive]


def threeNodes() -> View:
    return View(nodes=[
        Node("c", "127.0.0.4:9000", "127.0.0.4:17273", 31.4, False, 0, [], None),
        Node("a", "127.0.0.2:9000", "127.0.0.2:17273", 0.4, True, 150, 150, 4.2),
        Node("b", "127.0.0.3:9000", "127.0.0.3:17273", 1.1, True, 150, [{"age": 2.0}, {"age": 9.0}], None),
    ], database={"kind": "postgresql", "reachable": True, "schema": 5}, broker={"broker": "127.0.0.1:1883",
                                                                               "connected": True})


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
    """The nodes sorted by name, this node marked, lease lists counted with their oldest age, totals summed."""
    world = World(plugs=1)
    world.core.cluster = threeNodes()
    doc = result(ask(world))
    assert [n["name"] for n in doc["nodes"]] == ["a", "b", "c"]
    a, b, cnode = doc["nodes"]
    assert a["self"] and not b["self"] and a["plugs"] == 150 and a["leases"] == 150 and a["lease_age_max"] == 4.2
    assert b["leases"] == 2 and b["lease_age_max"] == 9.0
    assert not cnode["alive"] and cnode["heartbeat_age"] == 31.4
    assert (doc["node"], doc["alive"], doc["dead"], doc["plugs"]) == ("a", 2, 1, 300)
    assert doc["database"]["schema"] == 5 and doc["broker"]["connected"] is True


def test_hostileRowsBounded():
    """What another node wrote in the shared database is cut: long names, NaN ages, too many nodes."""
    view = View(nodes=[Node("x" * 5000, "\x1b[2J", "1.2.3.4", float("nan"), True, 1)] * (MAX_NODES + 50))
    doc = clusterJSON(view)
    assert len(doc["nodes"]) == doc["listed"] == MAX_NODES
    assert len(doc["nodes"][0]["name"]) == MAX_TEXT and doc["nodes"][0]["heartbeat_age"] is None
    fitted = fitCluster(doc, lambda d: len(c.JSON().toString(d)) <= 10_000)
    assert 0 < len(fitted["nodes"]) < MAX_NODES and fitted["listed"] == MAX_NODES


def test_hostileRowsFitOneAMPValue():
    """Over AMP, the answer for the largest cluster view still arrives (its list cut to one value)."""
    world = World(plugs=1)
    world.core.cluster = View(nodes=[Node("x" * 5000, "y" * 5000, "z" * 5000, 1.0, True, 1)] * 1000)
    doc = result(ask(world))
    assert doc["listed"] == MAX_NODES and 0 < len(doc["nodes"]) <= MAX_NODES


def test_dictRowsAndMethods():
    """A view whose nodes are dicts and whose attributes are methods reads the same."""
    view = SimpleNamespace(nodeName=lambda: "b", nodes=lambda: [
        {"name": "b", "plugAddress": "10.0.0.3", "heartbeatAge": 2, "alive": 1, "plugCount": 7}])
    doc = clusterJSON(view)
    assert doc["nodes"][0] == {**doc["nodes"][0], "plug_address": "10.0.0.3", "heartbeat_age": 2, "alive": True,
                               "plugs": 7, "self": True}


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
    assert "database: postgresql, reachable, schema 5" in text and "broker: 127.0.0.1:1883, connected" in text


def test_cliJSONAndEscaping():
    """--json prints the answer as it is; plain text escapes a hostile node name."""
    doc = clusterJSON(View(nodes=[Node("evil\x1b[31m", "a", "b", 1, True, 1)]))
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
    assert summary["database"]["schema"] == 5 and summary["dead"] == 1


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
    clock.advance(60.0)  # no heartbeat read for a minute: the database is taken for unreachable
    assert clusterJSON(directory)["database"]["reachable"] is False


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
