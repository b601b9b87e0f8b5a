"""`vesyncctl doctor` in a cluster: the database, the MQTT broker and the other nodes, judged from what the
daemon reports in `info` (the doctor asks the control port), with the doctor's in-memory probes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_doctor import FakeProbes, run
from vesyncd.doctor.clusterchecks import brokerCheck, clusterChecks, databaseCheck, nodesCheck

PG = {"kind": "postgresql", "url": "postgresql://vesyncd:***@127.0.0.1:5432/vesyncd", "reachable": True,
      "schema": 5, "schema_expected": 5}
BROKER = {"broker": "127.0.0.1:1883", "connected": True}


def cluster(**kw: Any) -> dict[str, Any]:
    doc = {"node": "a", "alive": 3, "dead": 0, "plugs": 300,
           "nodes": [{"name": n, "alive": True, "self": n == "a"} for n in "abc"]}
    doc.update(kw)
    return doc


def status(**kw: Any) -> dict[str, Any]:
    return {"version": "0.1", "pid": 42, "uptime": 90.5, **kw}


def test_singleNodeOnSQLiteGetsNoClusterCheck():
    """A daemon that reports neither database nor broker nor cluster: no new check, as before."""
    checks = run(FakeProbes())
    assert not {"database", "mqtt broker", "cluster nodes"} & set(checks)


def test_healthyCluster():
    """Database reachable at the expected schema, broker connected, every node alive: three OKs, in order."""
    probes = FakeProbes(status=status(database=PG, broker=BROKER, cluster=cluster()))
    checks = run(probes)
    assert [checks[n].level.value for n in ("database", "mqtt broker", "cluster nodes")] == ["OK"] * 3
    assert "schema version 5" in checks["database"].message and "***" in checks["database"].message
    assert "3 node(s) alive, 300 plugs owned" in checks["cluster nodes"].message
    names = list(checks)
    assert names.index("database") < names.index("mqtt broker") < names.index("cluster nodes") < names.index("clock")


@pytest.mark.parametrize("db, level, words", [
    ({**PG, "reachable": False, "error": "connection refused"}, "FAIL", "cannot reach"),
    ({**PG, "schema": 4}, "FAIL", "vesyncctl migrate"),
    ({**PG, "schema": 6}, "WARN", "newer"),
    ({"kind": "sqlite", "url": "/var/lib/vesyncd/state.db"}, "FAIL", "not a shared PostgreSQL"),
])
def test_databaseProblems(db, level, words):
    """Each database problem is one finding naming it, with a fix."""
    check = databaseCheck(status(database=db, cluster=cluster()))
    assert check.level.value == level and words in (check.message + (check.fix or "")), check


def test_databaseFromTheClusterAnswer():
    """Without a top-level `database`, the cluster summary's is used (schema_version read as schema)."""
    check = databaseCheck(status(cluster=cluster(database={"kind": "postgresql", "reachable": True,
                                                            "schema_version": 5})))
    assert check.level.value == "OK" and "schema version 5" in check.message


def test_brokerDown():
    """Broker down: FAIL in a cluster (routing stops), WARN on a single node (only Home Assistant misses out)."""
    down = {"broker": "127.0.0.1:1883", "connected": False, "error": "connection refused"}
    inCluster = brokerCheck(status(broker=down, cluster=cluster()))
    alone = brokerCheck(status(mqtt=down))
    assert inCluster.level.value == "FAIL" and "other nodes" in inCluster.message
    assert alone.level.value == "WARN" and "Home Assistant" in alone.message
    assert brokerCheck(status(mqtt={"broker": "x"})) is None


def test_deadNodesNamed():
    """Dead nodes are named (a few, then a count); this node taken for dead is a FAIL."""
    nodes = [{"name": f"n{i}", "alive": i == 0, "self": i == 0} for i in range(9)]
    check = nodesCheck(status(cluster=cluster(nodes=nodes, alive=1, dead=8)))
    assert check.level.value == "WARN" and "8 node(s)" in check.message and "and 3 more" in check.message
    me = [{"name": "a", "alive": False, "self": True}]
    assert nodesCheck(status(cluster=cluster(nodes=me))).level.value == "FAIL"


def test_hostileReportEscapedAndNeverCrashes():
    """Node names and errors are escaped in the doctor's text; odd shapes give no check, not a crash."""
    evil = "\x1b]0;owned\x07"
    probes = FakeProbes(status=status(database={**PG, "reachable": False, "error": evil},
                                      cluster=cluster(nodes=[{"name": evil, "alive": False}, "junk"])))
    checks = run(probes)
    assert "\x1b" not in checks["database"].message and "\x1b" not in checks["cluster nodes"].message
    assert clusterChecks(status(database="up", broker=[1], cluster=7)) == []
