"""Two nodes in one process on a real mosquitto and one shared SQLite state: a command through node a for
a plug connected to node b is confirmed by b, events of b's plugs reach a's watchers, and a plug that
moves to a keeps its energy totals and is commanded there."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.mqtt_helpers import MOSQUITTO, SKIP_REASON, Broker, waitFor


class Node:
    """A whole daemon built by tap.makeService with --node, sharing the state directory."""

    def __init__(self, name: str, brokerPort: int, stateDir: str) -> None:
        from vesyncd import tap

        self.name = name
        config = tap.Options()
        config.parseOptions(["--no-dns", "--no-http", "--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", stateDir,
                             "--control", f"unix:{os.path.join(stateDir, name + '.sock')}",
                             "--refresh-interval", "0", "--mqtt", f"mqtt://127.0.0.1:{brokerPort}",
                             "--node", name, "--node-heartbeat", "0.5", "--node-lease", "3"])
        self.top = tap.makeService(config, reactor)
        self.hub = self.top.hub
        self.cluster = self.top.context.cluster
        for client in (self.top.context.mqtt.client,):
            client.minDelay, client.maxDelay = 0.05, 0.3
        self.sim: Any = None

    @inlineCallbacks
    def start(self, plugs: int = 0, seed: str = "sim") -> Any:
        """Start the daemon and, if asked, simulated plugs against its plug port."""
        from vesyncd.sim.runner import Simulator

        self.top.startService()
        port = yield self.top.plugListener.listening
        self.plugPort = port.getHost().port
        if plugs:
            self.sim = Simulator(reactor, "127.0.0.1", self.plugPort, plugs, seed=seed)
            self.sim.start()
        return self

    @inlineCallbacks
    def stop(self) -> Any:
        if self.sim is not None:
            self.sim.stop()
        if self.top.running:
            yield self.top.stopService()


class TwoNodes(unittest.TestCase):
    """Nodes a and b over mosquitto and one SQLite database."""

    if MOSQUITTO is None:
        skip = SKIP_REASON

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.broker = Broker()
        self.addCleanup(self.broker.cleanup)
        yield self.broker.start()
        self.stateDir = tempfile.mkdtemp(prefix="vesyncd-cluster-")
        self.addCleanup(shutil.rmtree, self.stateDir, True)
        self.a = Node("a", self.broker.port, self.stateDir)
        self.b = Node("b", self.broker.port, self.stateDir)
        self.addCleanup(self.a.stop)
        self.addCleanup(self.b.stop)
        yield self.a.start()
        yield self.b.start(plugs=2)
        yield waitFor(lambda: len([p for p in self.b.hub.plugs() if p.online]) == 2, what="plugs online on b")
        self.ids = sorted(p.id for p in self.b.hub.plugs())
        # The link is up on a when b's events arrive there.
        yield waitFor(lambda: all(self.a.hub.elsewhere(i) == "b" for i in self.ids), what="a to see b's plugs")

    @inlineCallbacks
    def test_command_through_a_is_confirmed_by_b(self) -> Any:
        """a switches b's plug over the broker; the answer is b's confirmed state; a's watchers see the
        relay event with origin b; a's view follows."""
        plugId = self.ids[0]
        seen: list[Any] = []
        self.a.hub.subscribe(seen.append)
        before = self.b.hub.get(plugId).relay
        state = yield self.a.hub.switch(plugId, not before)
        self.assertEqual(state.relay, not before)
        self.assertEqual(self.b.hub.get(plugId).relay, not before)
        yield waitFor(lambda: any(e.kind == "relay" and e.origin == "b" and e.plug == plugId for e in seen),
                      what="the relay event on a")
        self.assertEqual(self.a.hub.get(plugId).relay, not before)
        self.assertEqual(self.a.cluster.counters()["routed"], 1)
        self.assertEqual(self.b.cluster.counters()["requests_served"], 1)

    @inlineCallbacks
    def test_plug_moving_to_a_is_owned_and_commanded_there(self) -> Any:
        """The plugs leave b and connect to a: the leases move to a, a commands them locally, b routes
        to a, and the energy totals a reads back are those b had."""
        from vesyncd.sim.runner import Simulator

        plugId = self.ids[0]
        lifetime = self.b.hub.energy(plugId).lifetime_wh
        self.b.sim.stop()
        self.b.sim = None
        yield waitFor(lambda: not self.a.hub.get(plugId).online, what="a to see the plug go offline")
        self.a.sim = Simulator(reactor, "127.0.0.1", self.a.plugPort, 2)
        self.a.sim.start()
        yield waitFor(lambda: self.a.hub.session(plugId) is not None, what="the plug on a")
        yield waitFor(lambda: self.b.hub.elsewhere(plugId) == "a", what="b to see the plug on a")
        yield waitFor(lambda: self.a.cluster.view.ownerOf(plugId) == "a", what="a's lease in the directory")
        self.assertGreaterEqual(self.a.hub.energy(plugId).lifetime_wh, lifetime)
        before = self.a.hub.get(plugId).relay
        state = yield self.b.hub.switch(plugId, not before)
        self.assertEqual(state.relay, not before)
        names = [n.name for n in self.a.cluster.view.nodes() if n.alive]
        self.assertEqual(names, ["a", "b"])
