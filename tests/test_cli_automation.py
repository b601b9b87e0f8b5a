"""vesyncctl's automation commands (countdowns, schedules, away mode, power rules) against the real AMP
server and a real automation engine in memory, and their errors: usage (exit 2, naming the option)
and refused (exit 1)."""

from __future__ import annotations

import json

from twisted.trial import unittest

from vesyncd.cli.formatting import formatEvent

from control_helpers import CLIHarness, World


class CountdownTests(CLIHarness, unittest.TestCase):
    """`on|off|toggle PLUG --for D` and `timer PLUG [--cancel]`."""

    def setUp(self) -> None:
        self.world = World(automation=True)

    def test_onForSwitchesNowAndBackLater(self) -> None:
        """`on --for 30m` answers once the plug is on, with the countdown; after 30 min the daemon
        switches it off by itself."""
        code, out, err = self.run_("--json", "on", "00aa", "--for", "30m", between=lambda: self.world.confirm(0, True))
        self.assertEqual((code, err), (0, ""))
        answer = json.loads(out)
        self.assertEqual((answer["plug"]["relay"], answer["timer"]["switch"], answer["timer"]["left_s"]),
                         ("on", "off", 1800.0))
        code, out, _ = self.run_("timer", "00aa")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^00aa-plug-0: countdown off at 2023-11-14 22:43:20 \(in 30 min\)\n$")
        for _ in range(60):  # the plug keeps reporting, so it stays online
            self.world.clock.advance(30)
            self.world.confirm(0, self.world.clock.seconds() < answer["timer"]["ts"])
        self.assertIn(b'"action":"break"', self.world.sessions[0].connection.sent[-1])  # off
        self.assertIs(self.world.hub.get("00aa").relay, False)
        self.assertEqual(json.loads(self.run_("--json", "timer", "00aa")[1]), None)

    def test_plainOnForAndCancel(self) -> None:
        """Plain output names the plug and the countdown; `timer --cancel` cancels it once."""
        code, out, _ = self.run_("on", "10aa", "--for", "1h30m", between=lambda: self.world.confirm(1, True))
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^10aa-plug-1 is on; off at .* \(in 1 h 30 min\)\n$")
        self.assertEqual(self.run_("timer", "10aa", "--cancel")[1], "10aa-plug-1: countdown cancelled\n")
        self.assertEqual(self.run_("timer", "10aa", "--cancel")[1], "10aa-plug-1: no countdown to cancel\n")
        self.assertEqual(self.run_("timer", "10aa")[1], "10aa-plug-1: countdown none\n")

    def test_toggleForReadsTheRelay(self) -> None:
        """`toggle --for` switches an off plug on and sets the countdown back to off."""
        code, out, _ = self.run_("--json", "toggle", "00aa", "--for", "90s", between=lambda: self.world.confirm(0, True))
        self.assertEqual((code, json.loads(out)["timer"]["switch"]), (0, "off"))

    def test_badDurationIsAUsageErrorNamingTheOption(self) -> None:
        """A bad --for exits 2 naming --for, before anything is switched; with --json the error is an object
        on standard output; an unknown plug exits 1."""
        code, out, err = self.run_("on", "00aa", "--for", "soon")
        self.assertEqual((code, out), (2, ""))
        self.assertIn("--for", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        self.assertIs(self.world.hub.get("00aa").relay, False)
        code, out, _ = self.run_("--json", "on", "00aa", "--for", "8d")
        self.assertEqual(code, 2)
        error = json.loads(out)["error"]
        self.assertEqual(error["code"], "usage")
        self.assertTrue(error["message"].startswith("--for"), error)
        code, out, _ = self.run_("--json", "on", "nothing", "--for", "30m")
        self.assertEqual((code, json.loads(out)["error"]["code"]), (1, "unknown"))


class ScheduleTests(CLIHarness, unittest.TestCase):
    """`schedule add|list|rm|enable|disable`."""

    def setUp(self) -> None:
        self.world = World(automation=True)

    def test_addListDisableRemove(self) -> None:
        """A schedule added by alias is listed with the plug's name, can be disabled and removed."""
        self.world.hub.rename("00aa", "Lamp")
        code, out, _ = self.run_("--json", "schedule", "add", "lamp", "on", "--at", "18:30", "--days", "weekdays")
        self.assertEqual(code, 0)
        schedule = json.loads(out)
        self.assertRegex(schedule["id"], r"^s[0-9a-f]{6}$")
        self.assertEqual((schedule["plug"], schedule["at"], schedule["days"]),
                         ("00aa-plug-0", "18:30:00", ["mon", "tue", "wed", "thu", "fri"]))
        sid = schedule["id"]
        listing = self.run_("schedule", "list")[1]
        self.assertIn("Lamp", listing)
        self.assertIn("18:30 mon,tue,wed,thu,fri", listing)
        self.assertEqual([s["id"] for s in json.loads(self.run_("--json", "schedule", "list", "Lamp")[1])], [sid])
        self.assertEqual(json.loads(self.run_("--json", "schedule", "list", "10aa")[1]), [])
        code, out, _ = self.run_("schedule", "disable", sid)
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith(f"disabled {sid}: Lamp on at 18:30"), out)
        self.assertFalse(json.loads(self.run_("--json", "schedule", "list")[1])[0]["enabled"])
        self.assertTrue(self.run_("schedule", "rm", sid)[1].startswith(f"removed {sid}"))
        self.assertIn("no schedules", self.run_("schedule", "list")[1])

    def test_errors(self) -> None:
        """Bad --at and --days exit 2 naming the option; sun times without a location say which options
        to give; an unknown id is refused (exit 1)."""
        for argv, field in [(("--at", "25:00"), "--at"), (("--at", "18:00", "--days", "funday"), "--days"),
                            (("--at", "07:00", "--once", "2001-01-01"), "--once")]:
            code, out, err = self.run_("schedule", "add", "00aa", "on", *argv)
            self.assertEqual(code, 2, argv)
            self.assertTrue(err.startswith(f"vesyncctl: {field}"), err)
        code, _, err = self.run_("schedule", "add", "00aa", "off", "--at", "sunset-30m")
        self.assertEqual(code, 2)
        self.assertIn("--latitude", err)
        code, out, _ = self.run_("--json", "schedule", "rm", "s000000")
        self.assertEqual((code, json.loads(out)["error"]["code"]), (1, "refused"))


class AwayAndRuleTests(CLIHarness, unittest.TestCase):
    """`away` and `rule add|list|rm`."""

    def setUp(self) -> None:
        self.world = World(automation=True)

    def test_away(self) -> None:
        """Away mode is set, shown and stopped; one window end alone is a usage error."""
        code, out, _ = self.run_("--json", "away", "00aa", "--from", "18:00", "--to", "23:30")
        self.assertEqual((code, json.loads(out)["from"], json.loads(out)["to"]), (0, "18:00:00", "23:30:00"))
        self.assertIn("away mode 18:00 to 23:30, next: on at", self.run_("away", "00aa")[1])
        self.assertEqual(self.run_("away", "00aa", "--off")[1], "00aa-plug-0: away mode stopped\n")
        self.assertEqual(self.run_("away", "00aa", "--off")[1], "00aa-plug-0: away mode was not on\n")
        code, _, err = self.run_("away", "00aa", "--from", "18:00")
        self.assertEqual(code, 2)
        self.assertIn("--to", err)
        self.assertEqual(self.run_("away", "00aa", "--from", "25:00", "--to", "23:00")[0], 2)

    def test_rules(self) -> None:
        """Rules are added (a done rule notifies by default), listed and removed; bad watts exit 2 naming
        the option; the 17th rule of a plug is refused (exit 1)."""
        code, out, _ = self.run_("--json", "rule", "add", "00aa", "--above", "2000", "--for", "1m", "--then", "off")
        rule = json.loads(out)
        self.assertEqual((code, rule["when"], rule["watts"], rule["for_s"], rule["then"]), (0, "above", 2000.0, 60, "off"))
        code, out, _ = self.run_("rule", "add", "00aa", "--done-below", "5", "--for", "3m")
        self.assertRegex(out, r"^added r[0-9a-f]{6}: 00aa-plug-0 done below 5 W for 3 min: notify \(idle\)\n$")
        listing = self.run_("rule", "list", "00aa")[1]
        self.assertIn("above 2000 W for 1 min", listing)
        self.assertEqual(len(json.loads(self.run_("--json", "rule", "list")[1])), 2)
        self.assertTrue(self.run_("rule", "rm", rule["id"])[1].startswith(f"removed {rule['id']}"))
        code, _, err = self.run_("rule", "add", "00aa", "--above", "-3", "--for", "1m")
        self.assertEqual(code, 2)
        self.assertIn("--above", err)
        self.assertEqual(self.run_("rule", "add", "00aa", "--above", "10", "--for", "1m", "--json")[0], 0)
        for _ in range(14):
            self.run_("rule", "add", "00aa", "--below", "10", "--for", "1m")
        code, out, _ = self.run_("--json", "rule", "add", "00aa", "--below", "10", "--for", "1m")
        self.assertEqual((code, json.loads(out)["error"]["code"]), (1, "refused"))

    def test_statusShowsAutomation(self) -> None:
        """`status` shows the timer, schedules, rules, away mode and the next action; `--json status`
        carries the engine's describe() under `automation`."""
        self.run_("schedule", "add", "00aa", "on", "--at", "06:00")
        self.run_("rule", "add", "00aa", "--above", "1500", "--for", "2m")
        status = self.run_("status", "00aa")[1]
        self.assertRegex(status, r"Schedules: +s[0-9a-f]{6} on 06:00 daily")
        self.assertRegex(status, r"Rules: +r[0-9a-f]{6} above 1500 W for 2 min: off")
        self.assertRegex(status, r"Next: +on at \d{4}-\d\d-\d\d 06:00 \(schedule:s[0-9a-f]{6}\)")
        self.assertIn("Timer:      none", status)
        doc = json.loads(self.run_("--json", "status", "00aa")[1])
        self.assertEqual((doc["id"], len(doc["automation"]["schedules"]), doc["automation"]["next"]["switch"]),
                         ("00aa-plug-0", 1, "on"))

    def test_withoutAutomation(self) -> None:
        """A daemon without automation refuses its commands (exit 1) and `status` leaves the lines out."""
        self.world = World()
        code, _, err = self.run_("timer", "00aa")
        self.assertEqual(code, 1)
        self.assertIn("without automation", err)
        status = self.run_("status", "00aa")
        self.assertEqual(status[0], 0)
        self.assertNotIn("Timer", status[1])


def test_ruleEventsInWatch() -> None:
    """`watch` shows a rule firing with the power seen and what was done, a failure, and a done rule's cycle."""
    base = {"plug": "p", "name": "Washer", "at": "T"}
    fired = dict(base, event="rule", data={"rule": "r08b2de", "power_w": 2150.0, "action": "off", "ok": True})
    assert formatEvent(fired) == "T Washer rule r08b2de at 2150.0 W: off"
    failed = dict(base, event="rule", data={"rule": "r1", "power_w": 3.0, "action": "on", "ok": False, "error": "\x1b"})
    assert formatEvent(failed) == "T Washer rule r1 at 3.0 W: on failed (\\x1b)"
    running = dict(base, event="rule_running", data={"rule": "r1", "running": False})
    assert formatEvent(running) == "T Washer rule r1 finished"
    relay = dict(base, event="relay", data={"relay": False, "cause": "schedule:s3fa9c1"})
    assert formatEvent(relay) == "T Washer relay off (schedule:s3fa9c1)"
