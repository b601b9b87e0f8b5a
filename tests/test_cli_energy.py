"""vesyncctl's energy commands against the AMP server in memory with an energy insight of fixed figures:
`energy --cost`, `cost`, `export`, `history`, and `status` with periods and the always-on baseline;
dates as users write them."""

from __future__ import annotations

import json
from datetime import date, timedelta

from twisted.trial import unittest

from vesyncd.cli.args import dayArg, monthArg, yearArg

from control_helpers import CLIHarness, FakeInsight, World


class EnergyTests(CLIHarness, unittest.TestCase):
    """Cost, periods, export and history through the control port."""

    def setUp(self) -> None:
        self.insight = FakeInsight()
        self.world = World(insight=self.insight)

    def test_energyWithCost(self) -> None:
        """`energy --cost` adds a cost column and total (plain), currency/total_cost/cost per bucket (JSON),
        and a cost column (CSV); without --cost the ledger answers as before."""
        code, out, _ = self.run_("energy", "00aa", "--day", "2023-11-14", "--cost")
        self.assertEqual(code, 0)
        self.assertIn("COST", out)
        self.assertRegex(out, r"00:00 +1\.000 kWh +0\.30 EUR")
        self.assertRegex(out, r"total +1\.500 kWh +0\.45 EUR")
        self.assertIn("plus daily charges of 0.35 EUR for the house", out)
        doc = json.loads(self.run_("--json", "energy", "00aa", "--day", "2023-11-14", "--cost")[1])
        self.assertEqual((doc["currency"], doc["total_cost"], doc["buckets"][1]["cost"]), ("EUR", 0.45, 0.15))
        self.assertEqual(self.insight.calls[-1], ("history", "00aa-plug-0", "day", "2023-11-14", True))
        csv = self.run_("energy", "00aa", "--day", "2023-11-14", "--cost", "--csv")[1].splitlines()
        self.assertEqual((csv[0], csv[-1]), ("start,label,wh,cost (EUR)", ",total,1500.0,0.45"))
        plain = json.loads(self.run_("--json", "energy", "00aa", "--day", "2023-11-14")[1])
        self.assertNotIn("total_cost", plain)

    def test_costTable(self) -> None:
        """`cost` is one row per plug, largest first, with a total; `--month last-month` is a month."""
        code, out, _ = self.run_("cost", "--month", "2023-11")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], "energy and cost in 2023-11")
        self.assertTrue(lines[2].startswith("10aa-plug-1") and lines[3].startswith("00aa-plug-0"), lines)
        self.assertRegex(lines[4], r"^total +3\.000 kWh +0\.90 EUR$")
        self.assertEqual(json.loads(self.run_("--json", "cost")[1])["total_cost"], 0.9)
        self.assertEqual(self.run_("cost", "--month", "last-month")[0], 0)
        self.assertRegex(self.insight.calls[-1][1], r"^\d{4}-\d\d$")
        self.assertEqual(self.run_("cost", "--month", "2023-13")[0], 2)

    def test_exportInPieces(self) -> None:
        """`export` asks for at most 14 days at a time and prints one header and every row."""
        code, out, _ = self.run_("export", "00aa", "--from", "2023-11-01", "--to", "2023-11-20")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], "start_utc,start_local (UTC),wh,cost (EUR)")
        self.assertEqual(len(lines), 21)
        self.assertEqual([c[2:] for c in self.insight.calls],
                         [("2023-11-01", "2023-11-14"), ("2023-11-15", "2023-11-20")])
        self.assertNotIn("\r", out)
        self.assertEqual(self.run_("export", "00aa", "--from", "2023-11-20", "--to", "2023-11-01")[0], 2)
        self.assertEqual(self.run_("export", "00aa", "--from", "2023-02-30", "--to", "2023-03-01")[0], 2)

    def test_exportRefusesLongPiecesAtTheDaemon(self) -> None:
        """The daemon answers at most 14 days per request, whatever a client asks."""
        failure = self.failureResultOf(self.world.core.export("00aa", "2023-11-01", "2023-11-30"))
        self.assertIn("14 days", str(failure.value))

    def test_statusShowsPeriodsAndBaseline(self) -> None:
        """`status` shows yesterday to this year with cost and the always-on power with its yearly cost;
        `--json status` carries both objects."""
        out = self.run_("status", "00aa")[1]
        self.assertIn("Yesterday:  1.830 kWh  0.55 EUR", out)
        self.assertIn("This year:  803.112 kWh  240.93 EUR", out)
        self.assertIn("Always on:  8.0 W (70 kWh a year, 21.04 EUR)", out)
        doc = json.loads(self.run_("--json", "status", "00aa")[1])
        self.assertEqual((doc["energy"]["week_wh"], doc["baseline"]["baseline_w"]), (2242.5, 8.0))

    def test_history(self) -> None:
        """`history` lists switches newest first with their causes."""
        out = self.run_("history", "00aa")[1]
        self.assertRegex(out, r"2023-11-14T22:10:00Z +off +timer\n")
        self.assertEqual(json.loads(self.run_("--json", "history", "00aa", "--limit", "5")[1])[0]["cause"], "timer")
        self.assertEqual(self.insight.calls[-1], ("switches", "00aa-plug-0", 5))
        self.assertEqual(self.run_("history", "00aa", "--limit", "0")[0], 2)

    def test_withoutInsight(self) -> None:
        """Without energy insight, --cost and cost are refused (exit 1, code refused); status still works."""
        self.world = World()
        code, out, _ = self.run_("--json", "cost")
        self.assertEqual((code, json.loads(out)["error"]["code"]), (1, "refused"))
        self.assertEqual(self.run_("energy", "00aa", "--cost")[0], 1)
        code, out, _ = self.run_("status", "00aa")
        self.assertEqual(code, 0)
        self.assertNotIn("Always on", out)


class DateTests(CLIHarness, unittest.TestCase):
    """Dates on the command line: words accepted, bad dates are usage errors (exit 2)."""

    def setUp(self) -> None:
        self.world = World()

    def test_badDatesExitTwo(self) -> None:
        """`--day 2026-13-01` and friends exit 2 naming the option; with --json as an error object."""
        for argv in (["--day", "2026-13-01"], ["--day", "tomorrowish"], ["--month", "2026-00"], ["--year", "20x6"]):
            code, out, err = self.run_("energy", "00aa", *argv)
            self.assertEqual((code, out), (2, ""), argv)
            self.assertIn(argv[0], err)
        code, out, _ = self.run_("--json", "energy", "00aa", "--day", "2026-13-01")
        error = json.loads(out)["error"]
        self.assertEqual((code, error["code"]), (2, "usage"))
        self.assertIn("--day", error["message"])

    def test_wordsForDates(self) -> None:
        """today, yesterday, this-month, last-month (and this-year, last-year) are real dates."""
        today = date(2026, 3, 1)
        self.assertEqual(dayArg("yesterday", today), "2026-02-28")
        self.assertEqual(dayArg("today", today), "2026-03-01")
        self.assertEqual(monthArg("last-month", today), "2026-02")
        self.assertEqual(monthArg("last-month", date(2026, 1, 31)), "2025-12")
        self.assertEqual(monthArg("this-month", today), "2026-03")
        self.assertEqual(yearArg("last-year", today), "2025")
        code, out, _ = self.run_("--json", "energy", "00aa", "--day", "yesterday")
        self.assertEqual((code, json.loads(out)["value"]), (0, (date.today() - timedelta(days=1)).isoformat()))


class RealInsightTests(CLIHarness, unittest.TestCase):
    """The same commands against the real EnergyInsight over the hub's ledger, with a flat tariff."""

    def setUp(self) -> None:
        from zoneinfo import ZoneInfo

        from vesyncd.insight.service import EnergyInsight
        from vesyncd.insight.tariff import Tariff, TariffSchedule

        self.world = World()
        schedule = TariffSchedule([Tariff.flat(0.30, "EUR")])
        self.world.core.insight = EnergyInsight(self.world.hub, self.world.hub.ledger, ZoneInfo("UTC"),
                                                self.world.clock, schedule)
        # 1 kWh in the hour before the clock's time (2023-11-14 22:13 UTC).
        self.world.hub.ledger.record("00aa-plug-0", self.world.clock.seconds(), 3_600_000, 3600)

    def test_costExportStatusHistory(self) -> None:
        """The day's energy is priced, the cost table lists it first, the export has it hour by hour
        with the zone in the header, status carries the periods, and a switch shows in the history."""
        doc = json.loads(self.run_("--json", "energy", "00aa", "--day", "2023-11-14", "--cost")[1])
        self.assertEqual((doc["total_wh"], doc["currency"], doc["total_cost"]), (1000.0, "EUR", 0.3))
        table = json.loads(self.run_("--json", "cost", "--month", "2023-11")[1])
        self.assertEqual((table["plugs"][0]["plug"], table["total_cost"]), ("00aa-plug-0", 0.3))
        lines = self.run_("export", "00aa", "--from", "2023-11-14", "--to", "2023-11-14")[1].splitlines()
        self.assertIn("UTC", lines[0])
        self.assertIn("EUR", lines[0])
        self.assertEqual(sum(float(line.split(",")[2]) for line in lines[1:]), 1000.0)
        status = json.loads(self.run_("--json", "status", "00aa")[1])
        self.assertEqual((status["energy"]["today_wh"], status["energy"]["currency"]), (1000.0, "EUR"))
        self.assertIn("baseline_w", status["baseline"])
        self.run_("on", "10aa", between=lambda: self.world.confirm(1, True))
        switches = json.loads(self.run_("--json", "history", "10aa")[1])
        self.assertEqual((switches[0]["relay"], switches[0]["cause"]), (True, "command"))
