"""The cluster in memory: leases, command routing, events across nodes and hostile broker input, with
real hubs and cluster members on one task.Clock, one shared SQLite database and an in-memory broker."""

from __future__ import annotations

import json

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python import usage

from tests.cluster_helpers import PREFIX, FakeBroker, Node, sharedDatabase, syncRun
from tests.fakes import result
from vesyncd.cluster.leases import LeaseKeeper, effectiveExpiry
from vesyncd.cluster.settings import ClusterSettings, checkOptions
from vesyncd.core.model import CommandTimeout, PlugOffline, PlugState
from vesyncd.plugs import codec as m


def failure(d):
    """The exception a fired Deferred failed with."""
    out = []
    d.addErrback(lambda f: out.append(f.value))
    assert out, "the Deferred did not fail"
    return out[0]


class Cluster:
    """Nodes a, b, c started on one clock, database and broker."""

    def __init__(self, names=("a", "b", "c"), automation=False, start=1_700_000_000.0, heartbeat=5.0):
        self.clock = task.Clock()
        self.clock.advance(start)
        self.db = sharedDatabase()
        self.broker = FakeBroker()
        self.nodes = {n: Node(n, self.clock, self.db, self.broker, automation=automation, heartbeat=heartbeat).start()
                      for n in names}

    def settle(self, seconds: float = 0.0) -> None:
        """Run what is due (batched lease writes) and deliver everything published."""
        for _ in range(5):
            self.clock.advance(seconds)
            seconds = 0.0
            self.broker.pump()

    def lease(self, plugId):
        row = self.db.execute("SELECT node FROM leases WHERE plug = ?", (plugId,)).fetchone()
        return row[0] if row else None


# -- options ---------------------------------------------------------------------------------------


def test_node_needs_mqtt():
    """--node without --mqtt is refused with a message that says what to add."""
    with pytest.raises(usage.UsageError, match="--node needs --mqtt"):
        checkOptions({"node": "a", "mqtt": None})


def test_bad_node_name_refused():
    """A node name that could not be a topic level is refused, naming --node."""
    with pytest.raises(usage.UsageError, match="--node"):
        checkOptions({"node": "a/b", "mqtt": "mqtt://127.0.0.1", "node-lease": 15.0, "node-heartbeat": 5.0})


def test_no_node_no_cluster():
    """Without --node there are no cluster settings: a single node runs as before."""
    config = {"node": None, "mqtt": None}
    checkOptions(config)
    assert config["cluster-settings"] is None


# -- leases ----------------------------------------------------------------------------------------


def keeper(clock, db, node, held, lost, lapsed, lease=15.0):
    return LeaseKeeper(clock, syncRun, lambda: db, ClusterSettings(node, lease=lease), held=lambda: held,
                       onLost=lambda p, n: lost.append((p, n)), onLapsed=lambda p, n: lapsed.append((p, n)))


def test_claim_says_who_held_it_and_a_new_connection_wins():
    """A claim fires with the previous holder; a second node's claim takes the lease from the first."""
    clock, db = task.Clock(), sharedDatabase()
    a = keeper(clock, db, "a", set(), [], [])
    b = keeper(clock, db, "b", set(), [], [])
    first = a.claim("p1")
    clock.advance(0)
    assert result(first) is None
    again = a.claim("p1")
    clock.advance(0)
    assert result(again) == "a"
    taken = b.claim("p1")
    clock.advance(0)
    assert result(taken) == "a"
    assert db.execute("SELECT node FROM leases WHERE plug = 'p1'").fetchone() == ("b",)


def test_claims_in_one_turn_are_one_transaction():
    """A login wave's claims in one reactor turn are written together."""
    clock, db = task.Clock(), sharedDatabase()
    calls = []

    def run(fn, *args):
        calls.append(fn.__name__)
        return syncRun(fn, *args)

    k = LeaseKeeper(clock, run, lambda: db, ClusterSettings("a"), held=lambda: [], onLost=lambda p, n: None,
                    onLapsed=lambda p, n: None)
    ds = [k.claim(f"p{i}") for i in range(500)]
    clock.advance(0)
    assert calls == ["_write"]
    assert all(result(d) is None for d in ds)
    assert db.execute("SELECT COUNT(*) FROM leases WHERE node = 'a'").fetchone() == (500,)


def test_heartbeats_keep_leases_alive_without_rewriting_them_and_a_dead_nodes_lapse_once():
    """A node's heartbeat renews all of its leases at once: 60 s of beats leave the lease row as claimed
    (no row written per lease); when the node dies its lease lapses once its heartbeat is stale and is
    reported by exactly one of the surviving nodes."""
    clock, db = task.Clock(), sharedDatabase()
    clock.advance(1000)
    lapsedA, lapsedB, lapsedC = [], [], []
    heldA = {"p1"}
    a = keeper(clock, db, "a", heldA, [], lapsedA)
    b = keeper(clock, db, "b", set(), [], lapsedB)
    c = keeper(clock, db, "c", set(), [], lapsedC)

    def beat(*names):
        for name in names:
            db.execute("INSERT INTO nodes (name, address, plug_address, started, heartbeat) VALUES (?, NULL, NULL, 0, ?)"
                       " ON CONFLICT (name) DO UPDATE SET heartbeat = excluded.heartbeat", (name, clock.seconds()))

    beat("a", "b", "c")
    for k in (a, b, c):
        k.start()
    a.claim("p1")
    clock.advance(0)
    claimed = db.execute("SELECT node, expires FROM leases").fetchall()
    assert claimed == [("a", 1015.0)]
    changes = db.total_changes
    for _ in range(12):  # 60 s of heartbeats: the lease never lapses
        beat("a", "b", "c")
        clock.advance(5)
    assert db.execute("SELECT node, expires FROM leases").fetchall() == claimed
    assert db.total_changes - changes == 12 * 3, "only the heartbeats were written"
    assert lapsedB == lapsedC == []
    assert effectiveExpiry(1015.0, clock.seconds() - 5, 15.0) > clock.seconds()
    a._loop.stop()  # node a dies without a word
    for _ in range(5):
        beat("b", "c")
        clock.advance(5)
    assert db.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
    assert sorted(lapsedB + lapsedC) == [("p1", "a")]


def test_heartbeat_must_renew_leases_in_time():
    """A heartbeat slower than half the lease would let live nodes' leases lapse: refused, naming both."""
    with pytest.raises(ValueError, match="--node-heartbeat.*--node-lease"):
        ClusterSettings("a", lease=15.0, heartbeat=10.0)


def test_a_live_nodes_expired_lease_is_not_removed():
    """After the database was away every lease has expired; a node whose heartbeat is fresh keeps its
    leases (it renews them itself), only a dead node's lapse, and not on the first pass back."""
    clock, db = task.Clock(), sharedDatabase()
    clock.advance(1000)
    lapsed = []
    db.execute("INSERT INTO nodes VALUES ('a', NULL, NULL, 0, ?), ('c', NULL, NULL, 0, ?)", (1000.0, 900.0))
    db.execute("INSERT INTO leases VALUES ('p1', 'a', 990, 900), ('p2', 'c', 990, 900)")
    b = keeper(clock, db, "b", set(), [], lapsed)
    result(b.renew())
    assert lapsed == []  # b's first pass after the database was away judges nothing
    result(b.renew())
    assert lapsed == [("p2", "c")]
    assert db.execute("SELECT plug FROM leases").fetchall() == [("p1",)]


def test_renewal_reports_a_plug_another_node_took():
    """A plug still connected here whose lease another node holds is reported lost (the stale
    connection is then closed); a lease held for a plug no longer here is dropped."""
    clock, db = task.Clock(), sharedDatabase()
    lost = []
    held = {"p1"}
    a = keeper(clock, db, "a", held, lost, [])
    b = keeper(clock, db, "b", set(), [], [])
    a.claim("p1")
    a.claim("p2")
    clock.advance(0)
    b.claim("p1")
    clock.advance(0)
    result(a.renew())
    assert lost == [("p1", "b")]
    assert db.execute("SELECT plug, node FROM leases ORDER BY plug").fetchall() == [("p1", "b")]


# -- events and the view of other nodes' plugs -------------------------------------------------------


def test_a_plug_on_one_node_is_seen_online_on_the_others_with_origin():
    """A login on c is seen on a: the plug is online there, held by c; a watcher gets the events with
    origin 'c', a subscriber that acts (remote=False) gets none."""
    cl = Cluster()
    a = cl.nodes["a"]
    watched, acting = [], []
    a.hub.subscribe(watched.append)
    a.hub.subscribe(acting.append, remote=False)
    cl.nodes["c"].login("p1", relay=True)
    cl.settle()
    plug = a.hub.get("p1")
    assert plug.online and plug.relay is True
    assert a.hub.elsewhere("p1") == "c"
    assert [(e.kind, e.origin) for e in watched] == [("plug_new", "c"), ("online", "c"), ("relay", "c")]
    assert acting == []
    assert cl.lease("p1") == "c"


def test_alias_set_on_another_node_goes_to_the_plugs_node():
    """Renaming a plug held by c on a renames it on c (which stores and announces it) and on b."""
    cl = Cluster()
    cl.nodes["c"].login("p1")
    cl.settle()
    cl.nodes["a"].hub.rename("p1", "kettle")
    cl.settle()
    assert cl.nodes["c"].hub.get("p1").alias == "kettle"
    assert cl.nodes["b"].hub.resolve("kettle").id == "p1"


def test_hostile_broker_messages_are_dropped():
    """Malformed JSON, a forged sender, another prefix and oversized payloads change nothing and raise nothing."""
    cl = Cluster(names=("a",))
    a = cl.nodes["a"]
    for topic, payload in [
        (f"{PREFIX}/cluster/x/events", b"{not json"),
        (f"{PREFIX}/cluster/x/events", json.dumps({"node": "y", "event": {}}).encode()),
        (f"{PREFIX}/cluster/x/events", b"[" * 100 + b"]" * 100),
        (f"{PREFIX}/cluster/x/events", b"{\"node\": \"x\", \"pad\": \"" + b"a" * 40000 + b"\"}"),
        (f"{PREFIX}/cluster/a/request", json.dumps({"from": "x", "op": "__class__", "id": "1"}).encode()),
        (f"{PREFIX}/cluster/x/events", json.dumps({"node": "x", "event": {"event": "online", "plug": "p",
                                                                           "ts": "NaN", "data": {}}}).encode()),
        (f"{PREFIX}/cluster/../events", b"{}"),
        ("other/cluster/x/events", b"{}"),
    ]:
        a.member.link.received(topic, payload)
    assert a.hub.plugs() == []
    assert a.member.link.stats["dropped"] >= 6


# -- routed commands -------------------------------------------------------------------------------


def test_command_through_a_for_a_plug_on_c_is_confirmed_by_c():
    """A switch asked on a for a plug on c goes to c, which sends /relay; c's confirmation comes back to
    a's caller as the plug's state, and a's view follows."""
    cl = Cluster()
    a, c = cl.nodes["a"], cl.nodes["c"]
    session = c.login("p1", relay=False)
    cl.settle()
    d = a.hub.switch("p1", True)
    cl.settle()
    assert c.relaysSent("p1") == [{"uri": "/relay", "action": "open"}]
    session.received(m.RuntimeInfo(relay=True, power=(12.0, 12.0)))
    cl.settle()
    state = result(d)
    assert isinstance(state, PlugState) and state.relay is True and state.power_w == 12.0
    assert a.hub.get("p1").relay is True
    assert c.hub.get("p1").relay_cause == "command"


def test_routed_command_fails_as_it_would_on_the_plugs_node():
    """A plug that left c meanwhile: a's command fails with PlugOffline, the error c's hub raised."""
    cl = Cluster()
    a, c = cl.nodes["a"], cl.nodes["c"]
    c.login("p1")
    cl.settle()
    # c loses the plug but a has not heard yet.
    cl.broker.down.add("c")
    c.hub.sessions()[0].lost("gone")
    cl.broker.down.discard("c")
    d = a.hub.switch("p1", True)
    cl.settle()
    assert isinstance(failure(d), PlugOffline)


def test_routed_command_times_out_when_the_node_does_not_answer():
    """With node c silent (dead, lease not yet lapsed) a's command fails with CommandTimeout after the
    command timeout and the route margin, not sooner."""
    cl = Cluster()
    a, c = cl.nodes["a"], cl.nodes["c"]
    c.login("p1")
    cl.settle()
    cl.broker.down.add("c")
    d = a.hub.switch("p1", True)
    cl.broker.pump()
    cl.clock.advance(6.9)
    assert not d.called
    cl.clock.advance(0.2)
    assert isinstance(failure(d), CommandTimeout)
    assert a.member.link.pending() == 0


def test_mqtt_style_relay_set_on_every_node_is_carried_out_once():
    """Every node hears the same relay/set: only the plug's node acts (the others see it held elsewhere)."""
    cl = Cluster()
    cl.nodes["c"].login("p1")
    cl.settle()
    acting = [n for n in cl.nodes.values() if n.hub.elsewhere("p1") is None]
    assert [n.name for n in acting] == ["c"]


# -- take-over -------------------------------------------------------------------------------------


def test_take_over_closes_the_stale_connection_without_offline():
    """The plug reconnects to b while c still has its old connection: c closes it, emits no offline,
    and sees the plug on b; the lease is b's."""
    cl = Cluster()
    b, c = cl.nodes["b"], cl.nodes["c"]
    c.login("p1")
    cl.settle()
    seen = []
    c.hub.subscribe(seen.append)
    b.login("p1")
    cl.settle()
    assert c.connections["p1"].disconnected
    assert c.hub.session("p1") is None and c.hub.elsewhere("p1") == "b"
    assert [(e.kind, e.origin) for e in seen if e.kind == "offline" and e.origin is None] == []
    assert cl.lease("p1") == "b"
    assert cl.nodes["a"].hub.elsewhere("p1") == "b"


def test_reports_wait_for_the_stored_row_after_a_take_over():
    """Reports of a plug taken over are held until its row is read again, then accounted against the
    stored report mark: a report reaching back into time the other node already counted is refused,
    one for time nobody counted is accounted."""
    cl = Cluster()
    b, c = cl.nodes["b"], cl.nodes["c"]
    c.login("p1")
    c.login("p2")
    cl.settle()
    loads: dict[str, Deferred] = {}

    def load(plugId):
        loads[plugId] = Deferred()
        return loads[plugId]

    b.member.loadPlug = load
    now = cl.clock.seconds()
    sessions = {p: b.login(p) for p in ("p1", "p2")}
    cl.settle()
    for session in sessions.values():
        session.received(m.Report(wattSeconds=3600, seconds=180))
    assert b.hub.energy("p1").lifetime_wh == b.hub.energy("p2").lifetime_wh == 0.0
    # p1: node c counted up to 5 s ago, so this report's 180 s were counted there.
    loads["p1"].callback(PlugState(id="p1", report_until=now - 5))
    # p2: node c counted up to 200 s ago: the report covers time nobody counted.
    loads["p2"].callback(PlugState(id="p2", report_until=now - 200))
    assert b.hub.energy("p1").lifetime_wh == 0.0
    assert b.hub.stats["reports_refused_too_long"] == 1
    assert b.hub.energy("p2").lifetime_wh == 1.0
    assert b.hub.get("p1").report_until >= now - 5


def test_lapsed_lease_makes_the_plug_offline_once():
    """Node c dies: after the lease its plug is offline on every other node, announced once (as a local
    event of the node that removed the lease, which the others receive)."""
    cl = Cluster()
    c = cl.nodes["c"]
    c.login("p1")
    cl.settle()
    cl.broker.down.add("c")
    c.member.leases._loop.stop()
    c.member.directory._loop.stop()
    offline = {n: [] for n in "ab"}
    for n in "ab":
        cl.nodes[n].hub.subscribe(lambda e, n=n: e.kind == "offline" and offline[n].append(e.origin))
    for _ in range(5):
        cl.settle(5)
    assert not cl.nodes["a"].hub.get("p1").online and not cl.nodes["b"].hub.get("p1").online
    local = [n for n in "ab" if None in offline[n]]
    assert len(local) == 1
    assert cl.lease("p1") is None


def test_command_for_a_plug_on_a_dead_node_fails_at_once():
    """Once node c's heartbeat is stale (three heartbeats), a command through a for its plug fails with
    PlugOffline at once instead of waiting for the command timeout, while c's lease has not lapsed."""
    cl = Cluster(heartbeat=1.0)
    a, c = cl.nodes["a"], cl.nodes["c"]
    c.login("p1")
    cl.settle()
    cl.broker.down.add("c")
    c.member.directory._loop.stop()
    c.member.leases._loop.stop()
    for _ in range(4):
        cl.settle(1)
    assert a.hub.elsewhere("p1") == "c" and cl.lease("p1") == "c"
    d = a.hub.switch("p1", True)
    assert isinstance(failure(d), PlugOffline)
    assert a.member.link.pending() == 0


def test_energy_seen_on_other_nodes_survives_the_plug_leaving():
    """The energy c reported for its plug stays a's figure after the plug left c, and b, taking the plug
    over, shows it until it has read the totals again."""
    cl = Cluster()
    a, b, c = cl.nodes["a"], cl.nodes["b"], cl.nodes["c"]
    session = c.login("p1")
    cl.settle()
    session.received(m.Report(wattSeconds=7200, seconds=180))
    cl.settle()
    assert a.hub.energy("p1").lifetime_wh == 2.0
    session.lost("gone")
    cl.settle()
    assert not a.hub.get("p1").online
    assert a.hub.energy("p1").lifetime_wh == 2.0
    loads = []
    b.member.loadPlug = lambda plugId: loads.append(Deferred()) or loads[-1]
    b.login("p1")
    cl.settle()
    assert b.hub.energy("p1").lifetime_wh == 2.0  # b's own ledger never saw the report
    loads[0].callback(None)
    assert b.hub.energy("p1").lifetime_wh == 0.0  # the ledger's reading now (reloadPlug is a no-op here)


def test_node_without_stored_state_is_refused(tmp_path):
    """--node on a daemon that keeps no state (benchmarks' persistent=False) cannot start: it says why."""
    from twisted.internet import reactor

    from vesyncd import tap
    from vesyncd.service import StartupError

    config = tap.Options()
    config.parseOptions(["--no-dns", "--no-http", "--plugs", "tcp:0:interface=127.0.0.1", "--state-dir",
                         str(tmp_path), "--control", f"unix:{tmp_path}/c.sock", "--mqtt", "mqtt://127.0.0.1:9",
                         "--node", "a"])
    with pytest.raises(StartupError, match="--node needs a database"):
        tap.makeService(config, reactor, persistent=False)


def test_single_node_builds_no_cluster(tmp_path):
    """Without --node the daemon has no cluster part and its hub no cluster seam."""
    from twisted.internet import reactor

    from vesyncd import tap

    config = tap.Options()
    config.parseOptions(["--no-dns", "--no-http", "--plugs", "tcp:0:interface=127.0.0.1", "--state-dir",
                         str(tmp_path), "--control", f"unix:{tmp_path}/c.sock"])
    top = tap.makeService(config, reactor, persistent=False)
    assert top.context.cluster is None and top.hub.cluster is None


def test_two_daemons_with_one_node_name_are_told():
    """A second daemon beating under the same --node name is noticed and counted (and logged as an error)."""
    clock, db = task.Clock(), sharedDatabase()
    clock.advance(100)
    from vesyncd.cluster.nodes import NodeDirectory

    first = NodeDirectory(clock, syncRun, lambda: db, ClusterSettings("a"))
    clock.advance(1)
    second = NodeDirectory(clock, syncRun, lambda: db, ClusterSettings("a"))
    clock.advance(1)
    result(first.beat())
    result(second.beat())
    assert second.counters()["duplicate_name"] == 1
    clock.advance(1)
    result(first.beat())
    assert first.counters()["duplicate_name"] == 1


def test_a_node_whose_link_comes_back_learns_the_plugs_state():
    """A node that missed events (its link was away, or it just started) says hello when its link is up;
    the others answer with their plugs' state, which its view takes (relay, power, alias, owner)."""
    cl = Cluster()
    a, c = cl.nodes["a"], cl.nodes["c"]
    cl.broker.down.add("a")
    session = c.login("p1", relay=False)
    c.hub.rename("p1", "lamp")
    session.received(m.RuntimeInfo(relay=True, power=(40.0, 40.0)))
    cl.settle()
    assert a.hub.plugs() == []
    cl.broker.down.discard("a")
    a.member.link.onConnected()
    cl.settle()
    plug = a.hub.get("lamp")
    assert plug.id == "p1" and plug.online and plug.relay is True and plug.power_w == 40.0
    assert a.hub.elsewhere("p1") == "c"
    # A second hello within the spacing is not answered again.
    sent = len(cl.broker.published)
    a.member.link.broadcast("state", {"hello": True})
    cl.settle()
    assert [t for t, _ in cl.broker.published[sent:] if t.endswith("/state")] == [f"{PREFIX}/cluster/a/state"]
