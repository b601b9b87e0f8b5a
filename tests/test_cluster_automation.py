"""Automation in a cluster, in memory: items act only on the plug's node, changes reach every node, and
a schedule run is made once across a take-over (neither twice nor skipped)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from tests.test_cluster import Cluster
from vesyncd.plugs import codec as m

#: 2023-11-14 22:00:00 UTC.
START = datetime(2023, 11, 14, 22, 0, tzinfo=timezone.utc).timestamp()


def at(hhmmss: str) -> float:
    """POSIX time of a moment on the test's day (UTC)."""
    h, mi, s = (int(x) for x in hhmmss.split(":"))
    return datetime(2023, 11, 14, h, mi, s, tzinfo=timezone.utc).timestamp()


def advanceTo(cl: Cluster, moment: float) -> None:
    """Move the clock to C{moment} a second at a time, delivering what the nodes publish; the plugs of the
    live nodes say they are alive every 30 s."""
    while cl.clock.seconds() < moment:
        cl.clock.advance(min(1.0, moment - cl.clock.seconds()))
        if int(cl.clock.seconds()) % 30 == 0:
            for name, node in cl.nodes.items():
                if name not in cl.broker.down:
                    for session in node.hub.sessions():
                        session.received(m.KeepAlive())
        cl.broker.pump()


def kill(cl: Cluster, name: str) -> None:
    """Node C{name} dies: no more messages, renewals, heartbeats or automation."""
    node = cl.nodes[name]
    cl.broker.down.add(name)
    node.member.leases._loop.stop()
    node.member.directory._loop.stop()
    node.engine.stop()


def storedSchedule(cl: Cluster, scheduleId: str) -> dict:
    row = cl.db.execute("SELECT doc FROM automation WHERE kind = 'schedule' AND id = ?", (scheduleId,)).fetchone()
    return json.loads(row[0])


def test_timer_set_on_one_node_runs_once_on_the_plugs_node():
    """A countdown set on node a for a plug on c switches it once, from c; a drops it when c is done."""
    cl = Cluster(automation=True, start=START)
    a, c = cl.nodes["a"], cl.nodes["c"]
    session = c.login("p1")
    cl.settle()
    a.engine.setTimer("p1", "on", "10m")
    cl.settle()
    assert c.engine.timer("p1") is not None
    advanceTo(cl, START + 601)
    assert c.relaysSent("p1") == [{"uri": "/relay", "action": "open"}]
    session.received(m.RuntimeInfo(relay=True))
    cl.settle()
    assert c.hub.get("p1").relay_cause == "timer"
    assert a.engine.timer("p1") is None and c.engine.timer("p1") is None
    assert cl.db.execute("SELECT COUNT(*) FROM automation WHERE kind = 'timer'").fetchone() == (0,)


def test_schedule_missed_while_the_plugs_node_was_dead_runs_once_on_the_new_node():
    """Node b holds the plug and dies just before its schedule's time; the other nodes do not run it
    for a plug held elsewhere; when the plug reconnects to c, c catches the run up, once."""
    cl = Cluster(automation=True, start=START)
    b, c = cl.nodes["b"], cl.nodes["c"]
    b.login("p1")
    cl.settle()
    schedule = b.engine.addSchedule("p1", "on", "22:20")
    cl.settle()
    assert c.engine.schedulesOf("p1")[0]["id"] == schedule["id"]
    advanceTo(cl, at("22:19:50"))
    kill(cl, "b")
    advanceTo(cl, at("22:20:05"))
    assert storedSchedule(cl, schedule["id"]).get("last_run") is None  # nobody ran it
    assert "p1" not in c.connections
    c.login("p1")
    cl.settle()
    assert c.relaysSent("p1") == [{"uri": "/relay", "action": "open"}]
    assert storedSchedule(cl, schedule["id"])["last_run"] == at("22:20:00")
    assert cl.nodes["a"].connections == {}


def test_schedule_run_by_the_plugs_node_is_not_run_again_after_a_take_over():
    """Node b runs the schedule; when the plug later moves to c, c does not run it again."""
    cl = Cluster(automation=True, start=START)
    b, c = cl.nodes["b"], cl.nodes["c"]
    session = b.login("p1")
    cl.settle()
    schedule = b.engine.addSchedule("p1", "on", "22:20")
    cl.settle()
    advanceTo(cl, at("22:20:01"))
    assert b.relaysSent("p1") == [{"uri": "/relay", "action": "open"}]
    session.received(m.RuntimeInfo(relay=True))
    cl.settle()
    advanceTo(cl, at("22:25:00"))
    kill(cl, "b")
    c.login("p1")
    cl.settle()
    assert c.relaysSent("p1") == []
    assert storedSchedule(cl, schedule["id"])["last_run"] == at("22:20:00")


def test_schedule_removed_on_one_node_is_gone_on_all():
    """Removing a schedule on node a removes it from every node's engine."""
    cl = Cluster(automation=True, start=START)
    cl.nodes["c"].login("p1")
    cl.settle()
    schedule = cl.nodes["c"].engine.addSchedule("p1", "off", "23:00")
    cl.settle()
    cl.nodes["a"].engine.removeSchedule(schedule["id"])
    cl.settle()
    assert all(n.engine.schedulesOf("p1") == [] for n in cl.nodes.values())
    advanceTo(cl, at("23:00:05"))
    assert cl.nodes["c"].relaysSent("p1") == []
