"""The real daemon on loopback with simulated plugs of both firmware profiles."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd import tap
from vesyncd.sim.runner import Simulator
from tests.fakes import waitFor


class DaemonTests(unittest.TestCase):
    """Start makeService on 127.0.0.1:0 and drive it with simulated plugs over real TCP."""

    def setUp(self) -> Any:
        options = tap.Options()
        options.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", self.mktemp(),
                              "--refresh-interval", "0", "--no-dns", "--no-http"] + self.extraOptions())
        self.service = tap.makeService(options, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.hub: Hub = self.service.hub
        self.port = self.service.plugListener.port.getHost().port

    def extraOptions(self) -> list[str]:
        """Options a subclass adds."""
        return []

    def startSim(self, count: int, firmware: str, seed: str) -> Simulator:
        """Connect C{count} simulated plugs; they disconnect at cleanup."""
        sim = Simulator(reactor, "127.0.0.1", self.port, count, firmware=firmware, seed=seed, speed=1.0)
        sim.start()
        self.addCleanup(sim.stop)
        return sim

    @defer.inlineCallbacks
    def test_switch_and_button_both_firmwares(self) -> Any:
        """Plain and AES plugs log in; switching changes their relays; a button press is seen."""
        plain = self.startSim(3, "1.89", "plain")
        aes = self.startSim(3, "2.123", "aes")
        plugs = plain.plugs + aes.plugs
        yield defer.ensureDeferred(waitFor(lambda: all(self.hub.isOnline(p.id) for p in plugs), what="logins"))
        self.assertEqual([self.hub.get(p.id).encrypted for p in plugs], [False] * 3 + [True] * 3)
        results = yield defer.gatherResults([self.hub.switch(p.id, False) for p in plugs])
        self.assertEqual([r.relay for r in results], [False] * 6)
        self.assertEqual([p.relay for p in plugs], [False] * 6)
        events: list[h.Event] = []
        self.addCleanup(self.hub.subscribe(events.append))
        aes.plugs[1].press()
        yield defer.ensureDeferred(waitFor(lambda: any(e.kind == h.RELAY for e in events), what="button press"))
        relay = [e for e in events if e.kind == h.RELAY][0]
        self.assertEqual((relay.plug, relay.data["relay"], relay.data["cause"]),
                         (aes.plugs[1].id, True, h.CAUSE_BUTTON))
        state = yield self.hub.refresh(plain.plugs[0].id)
        self.assertAlmostEqual(state.voltage_v, 120.4, places=2)

    @defer.inlineCallbacks
    def test_disconnect_marks_offline_and_command_fails(self) -> Any:
        """A plug that goes away is offline at once and commands to it fail with PlugOffline."""
        sim = self.startSim(1, "1.89", "gone")
        plug = sim.plugs[0]
        yield defer.ensureDeferred(waitFor(lambda: self.hub.isOnline(plug.id)))
        sim.stop()
        yield defer.ensureDeferred(waitFor(lambda: not self.hub.get(plug.id).online, what="offline"))
        with self.assertRaises(h.PlugOffline):
            yield self.hub.switch(plug.id, True)
