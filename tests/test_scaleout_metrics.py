"""/metrics in a cluster: the per-node series (node="NAME") added by the cluster view."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from tests.test_scaleout_control import node, threeNodes
from tests.test_web_metrics import scrape, value
from tests.web_helpers import Harness
from vesyncd.core.clusterview import ClusterView
from vesyncd.web.metrics import MAX_NODE_SERIES, ClusterCollector


class ClusterMetricsTests(unittest.TestCase):
    """The cluster collector on the web app's registry, scraped through /metrics."""

    def harness(self, view) -> Harness:
        h = Harness()
        h.app.registry.register(ClusterCollector(view))
        return h

    def test_perNodeSeries(self) -> None:
        """Each node's liveness, heartbeat age, plugs and leases, labelled with its name."""
        view = threeNodes()
        view.counterValues = {"renewals": 40, "taken_over": 3, "routed": 12, "routed_failed": 1}
        s = scrape(self.harness(view))
        self.assertEqual(value(s["vesyncd_cluster_node_up"], node="a"), 1.0)
        self.assertEqual(value(s["vesyncd_cluster_node_up"], node="c"), 0.0)
        self.assertEqual(value(s["vesyncd_cluster_node_plugs"], node="b"), 150.0)
        self.assertEqual(value(s["vesyncd_cluster_node_leases"], node="b"), 150.0)  # counted from leases()
        self.assertEqual(value(s["vesyncd_cluster_node_leases"], node="c"), 0.0)
        self.assertAlmostEqual(value(s["vesyncd_cluster_node_heartbeat_age_seconds"], node="c"), 31.4)
        self.assertEqual(value(s["vesyncd_cluster_events_total"], node="a", event="renewals"), 40.0)
        self.assertEqual(value(s["vesyncd_cluster_lease_renewals_total"], node="a"), 40.0)
        self.assertEqual(value(s["vesyncd_cluster_lease_takeovers_total"], node="a"), 3.0)
        self.assertEqual(value(s["vesyncd_cluster_routed_commands_total"], node="a"), 12.0)
        self.assertEqual(value(s["vesyncd_cluster_routed_command_failures_total"], node="a"), 1.0)

    def test_boundedAndHostile(self) -> None:
        """Label values are cut, the node series bounded, odd values skipped; the exposition still parses."""
        view = threeNodes()
        view.nodeList = [node(f"n{i}" + "\n\"x" * 40, "", "", float("nan"), True, 1)
                         for i in range(MAX_NODE_SERIES + 30)]
        view.nodeName = "me\n" * 100
        h = self.harness(view)
        r = h.request("GET", "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        up = families["vesyncd_cluster_node_up"].samples
        self.assertEqual(len(up), MAX_NODE_SERIES)
        self.assertTrue(all(len(x.labels["node"]) <= 64 for x in up))
        self.assertEqual(families["vesyncd_cluster_node_heartbeat_age_seconds"].samples, [])  # NaN left out
        self.assertEqual(len(families["vesyncd_cluster_node_plugs"].samples), MAX_NODE_SERIES)
        self.assertTrue(all(len(x.labels["node"]) <= 64 for x in families["vesyncd_cluster_events"].samples))

    def test_withoutClusterNoSeries(self) -> None:
        """A single node's /metrics has no cluster series."""
        s = scrape(Harness())
        self.assertFalse([k for k in s if k.startswith("vesyncd_cluster_")])

    def test_realNodeDirectoryHeartbeatFailures(self) -> None:
        """The cluster package's NodeDirectory: its heartbeat ages and failed heartbeats reach /metrics."""
        from twisted.internet import task
        from twisted.internet.defer import fail

        from vesyncd.cluster.nodes import NodeDirectory
        from vesyncd.cluster.settings import ClusterSettings

        directory = NodeDirectory(task.Clock(), lambda fn, *a: fail(RuntimeError("database down")), lambda: None,
                                  ClusterSettings("a"))
        verifyObject(ClusterView, directory)
        directory.beat()
        directory.beat()
        s = scrape(self.harness(directory))
        self.assertEqual(value(s["vesyncd_cluster_events_total"], node="a", event="heartbeat_failures"), 2.0)
