"""The control port's and PB's automation and energy-insight commands in memory: the same core answers
both, errors keep their codes (usage, refused), lists are cut to one AMP value, older clients still work,
and per-connection log lines stay below info."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from vesyncd.control import commands as c
from vesyncd.control.amp_features import fitJSON

from control_helpers import TOKEN, FakeInsight, World


class AMPFeatureTests(unittest.TestCase):
    """The automation and insight commands over AMP."""

    def setUp(self) -> None:
        self.world = World(automation=True, insight=FakeInsight())
        self.client, self.server, self.pump = self.world.amp()
        self.client.login(TOKEN)
        self.pump.flush()

    def call(self, d: Any) -> Any:
        """Deliver everything and return the result."""
        self.pump.flush()
        return self.successResultOf(d)

    def fails(self, d: Any, error: type[Exception]) -> Any:
        """Deliver everything and return the failure of the given type."""
        self.pump.flush()
        return self.failureResultOf(d, error).value

    def test_schedulesAndRulesRoundTrip(self) -> None:
        """Add, list (with total), enable and remove over AMP; the engine holds what the client sees."""
        schedule = self.call(self.client.addSchedule("00aa", "off", "23:00", "fri-mon"))
        self.assertEqual(schedule["days"], ["mon", "fri", "sat", "sun"])
        self.assertEqual(self.call(self.client.schedules()), {"schedules": [schedule], "total": 1})
        self.assertFalse(self.call(self.client.enableSchedule(schedule["id"], False))["enabled"])
        self.assertTrue(self.call(self.client.enableSchedule(schedule["id"], True))["enabled"])
        self.call(self.client.removeSchedule(schedule["id"]))
        self.assertEqual(self.world.engine.schedulesOf(), [])
        rule = self.call(self.client.addRule("10aa", "below", "2", "5m", "on"))
        self.assertEqual((rule["when"], rule["then"]), ("below", "on"))
        self.assertEqual(self.call(self.client.rules("10aa"))["total"], 1)
        self.assertEqual(self.call(self.client.automation("10aa"))["rules"], [rule])

    def test_errorsKeepTheirCodes(self) -> None:
        """Bad input is a UsageError naming the option; an unknown id is Refused; an unknown plug is
        UnknownPlug; a rule kind the engine does not know is a usage error too."""
        error = self.fails(self.client.addSchedule("00aa", "on", "7 pm"), c.UsageError)
        self.assertTrue(str(error).startswith("--at:"), error)
        self.assertIsInstance(self.fails(self.client.removeRule("r123456"), c.Refused), c.Refused)
        self.fails(self.client.timer("nobody"), c.UnknownPlug)
        self.fails(self.client.addRule("00aa", "sideways", "2", "5m"), c.UsageError)

    def test_olderClientsEnergyCall(self) -> None:
        """Energy without the new optional `cost` argument answers the ledger's history as before."""
        history = self.call(self.client.energy("00aa", "year", "2023"))
        self.assertEqual(len(history["buckets"]), 12)
        self.assertNotIn("total_cost", history)
        self.assertIn("total_cost", self.call(self.client.pricedEnergy("00aa", "day", "2023-11-14")))

    def test_costTableAndSummary(self) -> None:
        """The cost table and the energy summary pass through unchanged."""
        self.assertEqual(self.call(self.client.costTable("2023-11"))["total_cost"], 0.9)
        self.fails(self.client.costTable("2023-1"), c.UsageError)
        summary = self.call(self.client.energySummary("10aa"))
        self.assertEqual((summary["periods"]["year_cost"], summary["baseline"]["baseline_w"]), (240.93, 8.0))

    def test_daemonWithoutFeatures(self) -> None:
        """A core without automation or insight refuses their requests by name."""
        world = World()
        error = self.failureResultOf(world.core.schedules(), c.Refused).value
        self.assertIn("automation", str(error))
        self.failureResultOf(world.core.costTable(), c.Refused)


def test_fitJSONHalvesToOneValue() -> None:
    """A list too big for one AMP value is cut to a head that fits."""
    items = [{"id": "s%06d" % i, "pad": "x" * 300} for i in range(1000)]
    fitted = fitJSON(items)
    assert 0 < len(fitted) < 1000 and len(c.JSON().toString(fitted)) <= c.MAX_VALUE
    assert fitted == items[: len(fitted)]


class PBFeatureTests(unittest.TestCase):
    """The same requests over PB."""

    def setUp(self) -> None:
        self.world = World(automation=True, insight=FakeInsight())
        factory, self.server, self.pump = self.world.pb()
        root = factory.getRootObject()
        self.pump.flush()
        d = self.successResultOf(root).callRemote("login", TOKEN)
        self.pump.flush()
        self.perspective = self.successResultOf(d)

    def remote(self, name: str, *args: Any) -> Any:
        """Call the perspective and deliver everything."""
        d = self.perspective.callRemote(name, *args)
        self.pump.flush()
        return d

    def test_automationOverPB(self) -> None:
        """Schedules, away mode and the describe view over PB; bad input fails with UsageError."""
        schedule = self.successResultOf(self.remote("addSchedule", "00aa", "on", "06:30"))
        self.assertEqual(self.successResultOf(self.remote("schedules")), [schedule])
        away = self.successResultOf(self.remote("away", "10aa", "18:00", "23:00"))
        self.assertEqual(away["from"], "18:00:00")
        self.assertEqual(self.successResultOf(self.remote("automation", "10aa"))["away"]["to"], "23:00:00")
        failure = self.failureResultOf(self.remote("addRule", "00aa", "above", "lots", "1m"))
        self.assertIn("UsageError", str(failure.type))
        self.assertEqual(self.successResultOf(self.remote("switchHistory", "00aa", 2))[0]["cause"], "timer")


class LogLevelTests(unittest.TestCase):
    """A control client's connection, login and departure log nothing at info or above."""

    def test_perConnectionLinesAtDebug(self) -> None:
        """Connecting, logging in, one request and closing leave only debug lines."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        world = World()
        client, _server, pump = world.amp()
        client.login(TOKEN)
        pump.flush()
        client.info()
        pump.flush()
        client.close()
        pump.flush()
        # The client's end (vesyncctl, here in the same process) is AMP's own and may say what it likes.
        loud = [e for e in events if e.get("log_level") is not None and e["log_level"] >= LogLevel.info
                and e.get("cls") != "ControlClientProtocol"]
        self.assertEqual(loud, [])
        quiet = [e.get("log_format") for e in events if e.get("log_level") == LogLevel.debug]
        self.assertTrue(any("logged in" in (f or "") for f in quiet), quiet)
