"""The control plane under hostile use, in memory: connection caps per host and in total (AMP and PB),
ambiguous names refused with the matches, and held plugs listed and approved over AMP and PB."""

from __future__ import annotations

import io
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest

from vesyncd.cli.main import execute
from vesyncd.control import commands as c
from vesyncd.control.limits import ConnectionLimit
from vesyncd.core.settings import Settings
from vesyncd.plugs import codec as m

from control_helpers import TOKEN, FakePlugConnection, World


def connectFrom(factory: Any, host: str | None, port: int = 40000) -> tuple[Any, StringTransport]:
    """A server protocol of C{factory} connected over a StringTransport from C{host} (None: UNIX socket)."""
    peer = UNIXAddress(None) if host is None else IPv4Address("TCP", host, port)
    transport = StringTransport(peerAddress=peer)
    proto = factory.buildProtocol(peer)
    proto.makeConnection(transport)
    return proto, transport


class ConnectionCapTests(unittest.TestCase):
    """Control connections are capped per source host and in total, for AMP and PB alike."""

    def setUp(self) -> None:
        self.world = World()

    def check(self, factory: Any) -> None:
        """Per-host and total caps refuse with a logged line naming the peer; a closed slot is free again."""
        factory.limit = ConnectionLimit("control port", maxTotal=5, maxPerHost=2)
        first = [connectFrom(factory, "192.0.2.1", 40000 + i) for i in range(2)]
        self.assertTrue(all(not t.disconnecting for _, t in first))
        with capturedLogs() as events:
            _, third = connectFrom(factory, "192.0.2.1", 40099)
        self.assertTrue(third.disconnecting)
        text = " ".join(formatEvent(e) for e in events)
        self.assertIn("192.0.2.1:40099", text)
        self.assertIn("2 control connections are open from 192.0.2.1", text)
        others = [connectFrom(factory, f"198.51.100.{i}") for i in range(3)]
        self.assertTrue(all(not t.disconnecting for _, t in others))
        _, sixth = connectFrom(factory, "203.0.113.9")
        self.assertTrue(sixth.disconnecting)
        _, unix = connectFrom(factory, None)
        self.assertTrue(unix.disconnecting)
        self.assertEqual(factory.limit.refused, 3)
        # A closed connection gives its place back; a refused one never took one.
        proto, _ = first[0]
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((factory.limit.total, factory.limit.perHost["192.0.2.1"]), (4, 1))
        _, again = connectFrom(factory, "192.0.2.1", 40100)
        self.assertFalse(again.disconnecting)

    def test_ampCaps(self) -> None:
        """The AMP control port refuses beyond 2 per host and 5 in all."""
        self.check(self.world.factory)

    def test_pbCaps(self) -> None:
        """The PB front end refuses beyond 2 per host and 5 in all."""
        self.check(self.world.pbFactory)

    def test_unixClientsCountOnlyInTotal(self) -> None:
        """UNIX socket clients cannot be told apart, so only the total cap applies to them."""
        limit = ConnectionLimit("control port", maxTotal=3, maxPerHost=1)
        self.assertEqual([limit.admit(UNIXAddress(None)) for _ in range(4)], [True, True, True, False])

    def test_defaultsLeaveRoomForWatchers(self) -> None:
        """The default total leaves room for every permitted watcher plus commands."""
        from vesyncd.control.api import MAX_WATCHERS
        self.assertGreater(self.world.factory.limit.maxTotal, MAX_WATCHERS)


class AmbiguityAndApprovalTests(unittest.TestCase):
    """Ambiguous names fail with the hub's list of matches; held plugs are listed and approved."""

    def setUp(self) -> None:
        self.world = World(plugs=1, settings=Settings(command_timeout=5.0, new_plugs="hold"))

    def amp(self) -> tuple[Any, Any]:
        """A logged-in AMP client and its pump."""
        client, _server, pump = self.world.amp()
        d = client.login(TOKEN)
        pump.flush()
        self.successResultOf(d)
        return client, pump

    def test_ambiguousOverAMP(self) -> None:
        """An id prefix matching two plugs fails with AmbiguousPlug (an UnknownPlug) and the hub's words."""
        world = World()
        world.hub.login(FakePlugConnection("192.0.2.66:5000"), m.Login(id="00ab-other", firmVersion="1.89"))
        self.world = world
        client, pump = self.amp()
        d = client.switch("00a", "on")
        pump.flush()
        failure = self.failureResultOf(d, c.AmbiguousPlug)
        self.assertIsInstance(failure.value, c.UnknownPlug)
        self.assertIn("matches 2 plugs", str(failure.value))

    def test_pendingAndApproveOverAMP(self) -> None:
        """Pending lists the held plug; Approve takes it in and it then answers as a known plug."""
        client, pump = self.amp()
        d = client.pending()
        pump.flush()
        answer = self.successResultOf(d)
        self.assertEqual(([p["id"] for p in answer["pending"]], answer["total"]), (["00aa-plug-0"], 1))
        d = client.getPlug("00aa")
        pump.flush()
        self.failureResultOf(d, c.UnknownPlug)
        d = client.approve("00aa")
        pump.flush()
        self.assertEqual(self.successResultOf(d)["id"], "00aa-plug-0")
        d = client.pending()
        pump.flush()
        self.assertEqual(self.successResultOf(d), {"pending": [], "total": 0})
        d = client.approve("00aa")
        pump.flush()
        self.failureResultOf(d, c.UnknownPlug)

    def test_pendingCutToOneAMPValue(self) -> None:
        """More held plugs than fit 64 KiB: the answer lists the oldest that fit and the true total,
        and vesyncctl says how many it could not show."""
        self.world = World(plugs=1, settings=Settings(command_timeout=5.0, new_plugs="hold",
                                                      max_new_plugs_per_minute=1000))
        for i in range(200):
            self.world.hub.login(FakePlugConnection(f"198.51.100.{i % 250}:5000"),
                                 m.Login(id=f"held-{i:03d}-" + "x" * 200, firmVersion="1.89", deviceName="y" * 200))
        client, pump = self.amp()
        d = client.pending()
        pump.flush()
        answer = self.successResultOf(d)
        self.assertEqual(answer["total"], 201)
        self.assertLess(len(answer["pending"]), 201)
        self.assertEqual(answer["pending"][0]["id"], "00aa-plug-0")
        out, err = io.StringIO(), io.StringIO()
        d = defer.ensureDeferred(execute(self.world.clock, ["pending"], out, err,
                                         connect=lambda reactor, args: defer.succeed(client)))
        pump.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn(f"{201 - len(answer['pending'])} more held plugs are not shown", err.getvalue())

    def test_pendingAndApproveOverPB(self) -> None:
        """The PB perspective offers the same pending and approve."""
        clientFactory, _server, pump = self.world.pb()
        d = clientFactory.getRootObject()
        pump.flush()
        root = self.successResultOf(d)
        d = root.callRemote("login", TOKEN)
        pump.flush()
        perspective = self.successResultOf(d)
        d = perspective.callRemote("pending")
        pump.flush()
        self.assertEqual([p["id"] for p in self.successResultOf(d)], ["00aa-plug-0"])
        d = perspective.callRemote("approve", "00aa-plug-0")
        pump.flush()
        self.assertEqual(self.successResultOf(d)["id"], "00aa-plug-0")
