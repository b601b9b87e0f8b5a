"""The Perspective Broker front end in memory: same portal, same requests, events to a Referenceable."""

from __future__ import annotations

from twisted.spread import pb
from twisted.trial import unittest

from control_helpers import TOKEN, World


class Watcher(pb.Referenceable):
    """Collects pushed events."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def remote_event(self, event: dict) -> None:
        """One event."""
        self.events.append(event)


class PBTests(unittest.TestCase):
    """PB mirrors the AMP commands through the shared core."""

    def setUp(self) -> None:
        self.world = World()
        self.clientFactory, self.server, self.pump = self.world.pb()
        root = self.clientFactory.getRootObject()
        self.pump.flush()
        self.root = self.successResultOf(root)

    def login(self, token: str = TOKEN):  # type: ignore[no-untyped-def]
        """Log in and return the perspective Deferred."""
        d = self.root.callRemote("login", token)
        self.pump.flush()
        return d

    def test_wrongTokenSlowed(self) -> None:
        """A wrong token fails with BadToken after the throttle's delay."""
        d = self.login("00" * 32)
        self.assertNoResult(d)
        self.world.clock.advance(0.5)
        self.pump.flush()
        failure = self.failureResultOf(d)
        self.assertIn("BadToken", str(failure.type))

    def test_commandsAndEvents(self) -> None:
        """List, switch with confirmation, errors and watched events work over PB."""
        perspective = self.successResultOf(self.login())
        d = perspective.callRemote("listPlugs", 0, 10)
        self.pump.flush()
        self.assertEqual(self.successResultOf(d)["total"], 2)
        watcher = Watcher()
        d = perspective.callRemote("watch", watcher)
        self.pump.flush()
        self.successResultOf(d)
        d = perspective.callRemote("switch", "00", "on")
        self.pump.flush()
        self.world.confirm(0, True)
        self.pump.flush()
        self.assertEqual(self.successResultOf(d)["relay"], "on")
        self.assertIn(("relay", True, "command"), [(e["event"], e["data"].get("relay"), e["data"].get("cause"))
                                                   for e in watcher.events])
        d = perspective.callRemote("getPlug", "nope")
        self.pump.flush()
        self.assertIn("UnknownPlug", str(self.failureResultOf(d).type))

    def test_loginTimeout(self) -> None:
        """A PB connection that does not log in within 10 s is closed."""
        self.world.clock.advance(10.1)
        self.assertTrue(self.server.transport.disconnecting)
