"""The AMP control port in memory: login rules, every command, errors, events and input bounds."""

from __future__ import annotations

import json
import struct

import pytest
from twisted.trial import unittest
from twisted.python import usage

from vesyncd.control import commands as c
from vesyncd.control.amp import MAX_IN_FLIGHT, MAX_PENDING_BYTES
from vesyncd.control.tap import checkEndpoint, checkOptions, unixPath

from control_helpers import TOKEN, World

PLUG_KEYS = {"id", "alias", "online", "relay", "power_w", "voltage_v", "rssi_dbm", "firmware", "address",
             "last_seen", "energy_today_kwh", "energy_lifetime_kwh"}


class LoginTests(unittest.TestCase):
    """Authentication comes before anything else."""

    def setUp(self) -> None:
        self.world = World()
        self.client, self.server, self.pump = self.world.amp()

    def test_commandBeforeLogin(self) -> None:
        """Every command before Login fails with NotLoggedIn."""
        d = self.client.info()
        self.pump.flush()
        self.failureResultOf(d, c.NotLoggedIn)

    def test_wrongTokenRefusedAndSlowed(self) -> None:
        """A wrong token fails with BadToken only after the throttle's delay, and is counted."""
        d = self.client.login("00" * 32)
        self.pump.flush()
        self.assertNoResult(d)
        self.world.clock.advance(0.5)
        self.pump.flush()
        failure = self.failureResultOf(d, c.BadToken)
        self.assertIn("wrong token", str(failure.value))
        self.assertEqual(self.world.core.stats["bad_tokens"], 1)
        d2 = self.client.login("11" * 32)
        self.pump.flush()
        self.world.clock.advance(0.5)
        self.pump.flush()
        self.assertNoResult(d2)  # the second failure waits twice as long
        self.world.clock.advance(0.5)
        self.pump.flush()
        self.failureResultOf(d2, c.BadToken)

    def test_rightToken(self) -> None:
        """The right token logs in; later commands work."""
        d = self.client.login(TOKEN)
        self.pump.flush()
        self.successResultOf(d)
        d = self.client.info()
        self.pump.flush()
        self.assertIn("version", self.successResultOf(d))

    def test_loginTimeoutCloses(self) -> None:
        """A connection that does not log in within 10 s is closed."""
        self.world.clock.advance(9.9)
        self.assertFalse(self.server.transport.disconnecting)
        self.world.clock.advance(0.2)
        self.assertTrue(self.server.transport.disconnecting)

    def test_loggedInConnectionStaysOpen(self) -> None:
        """After login the deadline no longer applies."""
        self.client.login(TOKEN)
        self.pump.flush()
        self.world.clock.advance(30)
        self.assertFalse(self.server.transport.disconnecting)


class CommandTests(unittest.TestCase):
    """Every command of a logged-in client."""

    def setUp(self) -> None:
        self.world = World()
        self.client, self.server, self.pump = self.world.amp()
        self.client.login(TOKEN)
        self.pump.flush()

    def call(self, d):  # type: ignore[no-untyped-def]
        """Deliver everything and return the result."""
        self.pump.flush()
        return self.successResultOf(d)

    def fails(self, d, error):  # type: ignore[no-untyped-def]
        """Deliver everything and return the failure, checking its type."""
        self.pump.flush()
        return self.failureResultOf(d, error)

    def test_listPlugsSchema(self) -> None:
        """ListPlugs returns PlugState JSON with energy for every plug."""
        plugs = self.call(self.client.listPlugs())
        self.assertEqual(len(plugs), 2)
        for plug in plugs:
            self.assertLessEqual(PLUG_KEYS, set(plug))
            self.assertIs(plug["online"], True)
            self.assertEqual(plug["relay"], "off")

    def test_listPlugsPages(self) -> None:
        """Pages follow offset and limit; the client fetches them all."""
        page = self.call(self.client.listPage(1, 1))
        self.assertEqual((page["total"], page["offset"], len(page["plugs"])), (2, 1, 1))
        self.assertEqual(len(self.call(self.client.listPlugs(pageSize=1))), 2)
        self.fails(self.client.listPage(-1, 1), c.InvalidArgument)

    def test_getPlugByPrefixAndAlias(self) -> None:
        """GetPlug resolves an id prefix and an alias (case-insensitive)."""
        self.assertEqual(self.call(self.client.getPlug("00"))["id"], "00aa-plug-0")
        self.call(self.client.rename("00", "Kettle"))
        self.assertEqual(self.call(self.client.getPlug("kettle"))["alias"], "Kettle")

    def test_unknownAndAmbiguous(self) -> None:
        """Unknown and ambiguous references fail with UnknownPlug."""
        self.fails(self.client.getPlug("nope"), c.UnknownPlug)
        self.fails(self.client.switch("nope", "on"), c.UnknownPlug)

    def test_switchWaitsForConfirmation(self) -> None:
        """Switch answers only once the plug confirmed, with the new state."""
        d = self.client.switch("00", "on")
        self.pump.flush()
        self.assertNoResult(d)
        self.assertIn(b"/relay", self.world.sessions[0].connection.sent[-1])
        self.world.confirm(0, True)
        plug = self.call(d)
        self.assertEqual((plug["relay"], plug["relay_cause"], plug["power_w"]), ("on", "command", 12.5))

    def test_toggle(self) -> None:
        """Toggle switches an off plug on."""
        d = self.client.switch("00", "toggle")
        self.pump.flush()
        self.world.confirm(0, True)
        self.assertEqual(self.call(d)["relay"], "on")

    def test_badState(self) -> None:
        """A state other than on/off/toggle is InvalidArgument."""
        self.fails(self.client.switch("00", "dim"), c.InvalidArgument)

    def test_timeout(self) -> None:
        """A plug that does not answer gives CommandTimeout."""
        d = self.client.switch("00", "on")
        self.pump.flush()
        self.world.clock.advance(5.1)
        self.fails(d, c.CommandTimeout)

    def test_offline(self) -> None:
        """A plug whose connection is gone gives PlugOffline."""
        self.world.sessions[1].lost("test")
        self.fails(self.client.switch("10", "on"), c.PlugOffline)

    def test_refresh(self) -> None:
        """Refresh sends /getRuntime and answers the new readings."""
        d = self.client.refresh("00")
        self.pump.flush()
        self.world.confirm(0, False)
        self.assertEqual(self.call(d)["voltage_v"], 230.0)

    def test_renameInvalid(self) -> None:
        """An alias taken by another plug is InvalidArgument."""
        self.call(self.client.rename("00", "Lamp"))
        self.fails(self.client.rename("10", "lamp"), c.InvalidArgument)

    def test_setPowerOn(self) -> None:
        """SetPowerOn sets and clears the policy; a bad one is InvalidArgument."""
        self.assertEqual(self.call(self.client.setPowerOn("00", "last"))["power_on"], "last")
        self.assertIsNone(self.call(self.client.setPowerOn("00", "none"))["power_on"])
        self.fails(self.client.setPowerOn("00", "maybe"), c.InvalidArgument)

    def test_forget(self) -> None:
        """Forget drops the plug."""
        self.assertEqual(self.call(self.client.forget("00"))["id"], "00aa-plug-0")
        self.fails(self.client.getPlug("00aa-plug-0"), c.UnknownPlug)

    def test_info(self) -> None:
        """Info has the version, uptime and the hub's counters."""
        info = self.call(self.client.info())
        self.assertEqual(info["plugs_online"], 2)
        self.assertIn("counters", info)
        self.assertEqual(info["control"]["logins"], 1)

    def test_energy(self) -> None:
        """Energy answers every bucket of the period, and refuses a bad period."""
        self.world.sessions[0].received(__import__("vesyncd.plugs.codec", fromlist=["Report"]).Report(
            wattSeconds=3600 * 10, seconds=60))
        day = self.call(self.client.energy("00", "year", "2023"))
        self.assertEqual(len(day["buckets"]), 12)
        self.assertAlmostEqual(day["total_wh"], 10.0)
        self.fails(self.client.energy("00", "week", "2023"), c.InvalidArgument)
        self.fails(self.client.energy("00", "day", "2023-13-01"), c.InvalidArgument)

    def test_watchEvents(self) -> None:
        """After Watch the server pushes relay (with cause), runtime, alias and forgotten events."""
        events: list[dict] = []
        self.call(self.client.watch(events.append))
        self.world.sessions[0].received(__import__("vesyncd.plugs.codec", fromlist=["State"]).State(relay=True))
        self.call(self.client.rename("10", "Fan"))
        self.call(self.client.forget("Fan"))
        kinds = [(e["event"], e["data"].get("relay"), e["data"].get("cause")) for e in events]
        self.assertIn(("relay", True, "button"), kinds)
        self.assertEqual([e["event"] for e in events][-2:], ["alias", "forgotten"])
        self.assertEqual((events[-1]["alias"], events[-1]["name"]), ("Fan", "Fan"))
        self.call(self.client.unwatch())
        self.world.confirm(0, False)
        self.pump.flush()
        self.assertEqual(events[-1]["event"], "forgotten")

    def test_watchersBounded(self) -> None:
        """Watchers beyond the cap get Busy."""
        self.world.core.watchers.maximum = 1
        self.call(self.client.watch(lambda e: None))
        other, _server, pump = self.world.amp()
        other.login(TOKEN)
        pump.flush()
        d = other.watch(lambda e: None)
        pump.flush()
        self.failureResultOf(d, c.Busy)

    def test_backedUpWatcherDropped(self) -> None:
        """A watcher whose transport backs up is dropped, not buffered for."""
        self.call(self.client.watch(lambda e: None))
        self.server.pauseProducing()
        self.world.confirm(0, True)
        self.assertTrue(self.server.transport.disconnected or self.server.transport.disconnecting)
        self.assertEqual(len(self.world.core.watchers), 0)

    def test_inFlightBounded(self) -> None:
        """Requests beyond the in-flight cap of one connection get Busy."""
        pending = [self.client.refresh("00") for _ in range(MAX_IN_FLIGHT)]
        extra = self.client.refresh("00")
        self.pump.flush()
        self.failureResultOf(extra, c.Busy)
        for d in pending:
            self.assertNoResult(d)


class BoundedInputTests(unittest.TestCase):
    """What a client sends cannot grow memory without bound."""

    def test_unterminatedBoxCloses(self) -> None:
        """An AMP box that never ends closes the connection once past the cap."""
        world = World()
        _client, server, _pump = world.amp()
        value = b"x" * 60000
        pair = struct.pack("!H", 1) + b"k" + struct.pack("!H", len(value)) + value
        for _ in range(MAX_PENDING_BYTES // len(pair) + 1):
            server.dataReceived(pair)
        self.assertTrue(server.transport.disconnected or server.transport.disconnecting)


class OptionTests(unittest.SynchronousTestCase):
    """Start-up checks of --control and --pb."""

    def test_plainTCPRefused(self) -> None:
        """TCP without --control-insecure is a usage error that says how to fix it."""
        with pytest.raises(usage.UsageError, match="control-insecure"):
            checkEndpoint("control", "tcp:7000:interface=127.0.0.1", False)
        checkEndpoint("control", "tcp:7000:interface=127.0.0.1", True)

    def test_sslNeedsKey(self) -> None:
        """An ssl: endpoint without a key is refused; with one it is accepted."""
        with pytest.raises(usage.UsageError, match="privateKey"):
            checkEndpoint("pb", "ssl:7000", False)
        checkEndpoint("pb", "ssl:7000:privateKey=k.pem:certKey=c.pem", False)

    def test_defaultIsUnixSocket(self) -> None:
        """Without --control the endpoint is control.sock in the state directory, mode 660."""
        config = {"state-dir": "/tmp/x", "control": None, "pb": None, "control-insecure": False}
        checkOptions(config)
        self.assertEqual(config["control"], "unix:/tmp/x/control.sock:mode=660")
        self.assertEqual(str(unixPath(config["control"])), "/tmp/x/control.sock")

    def test_jsonArgumentRoundTrip(self) -> None:
        """The JSON argument type carries any JSON value."""
        arg = c.JSON()
        self.assertEqual(arg.fromString(arg.toString({"a": [1, None, "é"]})), {"a": [1, None, "é"]})
        self.assertEqual(json.loads(arg.toString([1])), [1])
