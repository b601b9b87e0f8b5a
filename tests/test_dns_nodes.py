"""The DNS responder in a cluster: C{server2.vesync.com} answered with every live node, ordered per asker
by rendezvous hashing (vesyncd.dns.nodes), checked with dnslib and once with the real ``dig``."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from dnslib import DNSRecord
from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from vesyncd.dns.nodes import MAX_NODE_ANSWERS, NodeSpreader, cleanAddresses, nodeIPv4, rendezvousOrder
from vesyncd.dns.server import makeDNSService
from tests.dns_helpers import makeCore, query

NODES = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
DIG = shutil.which("dig")


def answerOf(core, asker: str, packet: bytes | None = None) -> tuple[list[str], list[int]]:
    """The A records (in order) and their TTLs of the core's answer to C{asker}."""
    out = core.handle(packet or query(), (asker, 5353))
    reply = DNSRecord.parse(out.data)
    return [str(rr.rdata) for rr in reply.rr], [rr.ttl for rr in reply.rr]


def spreadingCore(addresses):
    """A core whose cluster says C{addresses()} are live (own address 192.168.1.2)."""
    return makeCore(spreader=NodeSpreader(addresses))


def test_everyLiveNodeAnsweredShortTTL():
    """All live nodes are in the answer, each once, with the short node TTL."""
    core = spreadingCore(lambda: NODES)
    addresses, ttls = answerOf(core, "192.168.1.50")
    assert sorted(addresses) == NODES
    assert set(ttls) == {core.nodeTTL} and core.nodeTTL <= core.ttl


def test_oneAskerAlwaysSameOrderAcrossNodesAndRestarts():
    """Every node's responder (a new core each, the list given in any order) answers one asker alike."""
    first, _ = answerOf(spreadingCore(lambda: NODES), "192.168.1.77")
    for shuffled in (NODES[::-1], NODES[1:] + NODES[:1]):
        again, _ = answerOf(spreadingCore(lambda s=shuffled: s), "192.168.1.77")
        assert again == first


def test_askersSpreadEvenly():
    """1,500 askers' first choices spread over three nodes within 15 % of even."""
    core = spreadingCore(lambda: NODES)
    firsts = Counter(answerOf(core, f"10.1.{i // 250}.{i % 250}")[0][0] for i in range(1500))
    assert set(firsts) == set(NODES)
    assert all(400 <= n <= 600 for n in firsts.values()), firsts


def test_deadNodeMovesOnlyItsOwnAskers():
    """A node leaving moves only the askers whose first choice it was; the others keep their node."""
    askers = [f"10.2.{i // 200}.{i % 200}" for i in range(600)]
    before = {a: rendezvousOrder(a, NODES)[0] for a in askers}
    after = {a: rendezvousOrder(a, NODES[:2])[0] for a in askers}
    moved = [a for a in askers if before[a] != after[a]]
    assert moved and all(before[a] == NODES[2] for a in moved)
    # and each moved asker lands on its second choice of before: its fallback record
    assert all(after[a] == rendezvousOrder(a, NODES)[1] for a in moved)


def test_noLiveNodeAnswersOwnAddress():
    """An empty list (or one with nothing usable) answers this host's address as a single node does."""
    for live in ([], ["not an address", "::1", "0.0.0.0", "224.0.0.1"]):
        core = spreadingCore(lambda live=live: live)
        addresses, ttls = answerOf(core, "192.168.1.50")
        assert addresses == ["192.168.1.2"] and ttls == [core.ttl]


def test_listChangesAreSeenAtOnce():
    """The cached reply is keyed on the order, so a node dying changes the very next answer."""
    live = list(NODES)
    core = spreadingCore(lambda: live)
    assert len(answerOf(core, "192.168.1.50")[0]) == 3
    live.pop()
    assert sorted(answerOf(core, "192.168.1.50")[0]) == NODES[:2]


def test_failingCallableAnswersOwnAddress():
    """A cluster view that raises (database down) does not stop DNS: this node answers for itself."""

    def broken():
        raise RuntimeError("database unreachable")

    core = spreadingCore(broken)
    assert answerOf(core, "192.168.1.50")[0] == ["192.168.1.2"]
    assert core.counters.errors == 0


def test_hostileEntriesCheckedAndBounded():
    """Ports dropped, junk and duplicates ignored, at most MAX_NODE_ANSWERS answered."""
    assert nodeIPv4("10.0.0.1:17273") == "10.0.0.1"
    assert nodeIPv4("10.0.0.1:17273:9") is None
    assert nodeIPv4(None) is None and nodeIPv4("x" * 100) is None
    assert cleanAddresses(["10.0.0.2", "10.0.0.2:1", "10.0.0.10"]) == ("10.0.0.2", "10.0.0.10")
    many = [f"10.9.0.{i}" for i in range(1, 60)]
    core = spreadingCore(lambda: many)
    packet = query(edns=True)
    out = core.handle(packet, ("192.168.1.50", 5353))
    reply = DNSRecord.parse(out.data)
    assert len(reply.rr) == MAX_NODE_ANSWERS and len(out.data) < 512


@pytest.mark.parametrize("qtype", ["AAAA", "MX", "TXT"])
def test_otherTypesStillNoData(qtype):
    """Other query types for the name get NOERROR without records, as on one node."""
    core = spreadingCore(lambda: NODES)
    reply = DNSRecord.parse(core.handle(query(qtype=qtype), ("192.168.1.50", 5353)).data)
    assert reply.header.rcode == 0 and not reply.rr


def test_withoutSpreaderUnchanged():
    """A single node (no cluster) answers one record with the normal TTL."""
    core = makeCore()
    addresses, ttls = answerOf(core, "192.168.1.50")
    assert addresses == ["192.168.1.2"] and ttls == [core.ttl]


class DigNodesTests(unittest.TestCase):
    """The real ``dig`` against the real service with three live nodes."""

    timeout = 30
    if DIG is None:
        skip = "dig not installed (apt-get install bind9-dnsutils)"

    def setUp(self):
        self.live = list(NODES)
        self.service = makeDNSService(reactor, port=0, interface="127.0.0.1", upstreams=[],
                                      nodeAddresses=lambda: self.live)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.udpPort.getHost().port

    @defer.inlineCallbacks
    def dig(self, *args: str):
        out, err, code = yield utils.getProcessOutputAndValue(
            DIG, ["@127.0.0.1", "-p", str(self.port), "+tries=1", "+time=5", "+short", *args],
            env={"PATH": "/usr/bin:/bin"})
        self.assertEqual(code, 0, err)
        return out.decode().split()

    @defer.inlineCallbacks
    def test_digSeesAllNodesInTheAskersOrder(self):
        """dig (asking from 127.0.0.1) gets the three nodes in rendezvous order, over UDP and TCP; a node
        gone is gone from the next answer."""
        expected = list(rendezvousOrder("127.0.0.1", NODES))
        self.assertEqual((yield self.dig("server2.vesync.com", "A")), expected)
        self.assertEqual((yield self.dig("+tcp", "server2.vesync.com", "A")), expected)
        self.live.remove(expected[0])
        self.assertEqual((yield self.dig("server2.vesync.com", "A")), expected[1:])
