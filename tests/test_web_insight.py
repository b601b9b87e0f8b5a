"""The energy insight routes of the HTTP API (with a fake EnergyInsight), and the login hint, in memory."""

from __future__ import annotations

from twisted.trial import unittest

from tests.web_helpers import PLUG_A, PLUG_B, FakeInsight, Harness, runtime


class InsightRouteTests(unittest.TestCase):
    """Periods, baseline, cost, CSV, chart and totals."""

    def test_plugDetail(self) -> None:
        """A plug's JSON carries its periods with cost and its baseline beside the usual keys."""
        h = Harness(insight=FakeInsight())
        doc = h.request("GET", "/api/plugs/kettle").json()
        self.assertEqual(doc["id"], PLUG_B)
        self.assertEqual((doc["periods"]["yesterday_wh"], doc["periods"]["year_cost"]), (1830.0, 240.93))
        self.assertEqual(doc["baseline"]["baseline_w"], 8.0)
        self.assertIn("energy_today_kwh", doc)

    def test_plugDetailWithoutInsight(self) -> None:
        """Without insight the keys are there and null, so a client needs no second code path."""
        doc = Harness().request("GET", f"/api/plugs/{PLUG_A}").json()
        self.assertEqual((doc["periods"], doc["baseline"], doc["automation"]), (None, None, None))

    def test_energyWithCost(self) -> None:
        """cost=1 asks insight for the priced history of the period; a bad value names the period."""
        insight = FakeInsight()
        h = Harness(insight=insight)
        doc = h.request("GET", f"/api/plugs/{PLUG_A}/energy?month=2023-11&cost=1").json()
        self.assertEqual((doc["total_cost"], doc["currency"]), (0.3, "EUR"))
        self.assertIn(("history", PLUG_A, "month", "2023-11", True), insight.calls)
        bad = h.request("GET", f"/api/plugs/{PLUG_A}/energy?day=bad&cost=1")
        self.assertEqual((bad.status, bad.json()["field"]), (400, "day"))
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}/energy?cost=maybe").json()["field"], "cost")
        self.assertEqual(Harness().request("GET", f"/api/plugs/{PLUG_A}/energy?cost=1").status, 503)

    def test_costTable(self) -> None:
        """GET /api/cost?month= is insight's table; a malformed month names month."""
        insight = FakeInsight()
        h = Harness(insight=insight)
        self.assertEqual(h.request("GET", "/api/cost?month=2023-10").json()["month"], "2023-10")
        self.assertIn(("costTable", "2023-10"), insight.calls)
        self.assertEqual(h.request("GET", "/api/cost").json()["month"], "2023-11")
        r = h.request("GET", "/api/cost?month=October")
        self.assertEqual((r.status, r.json()["field"]), (400, "month"))

    def test_csvExport(self) -> None:
        """export.csv is text/csv with a file name; the zone is in its header line; bad dates name the field."""
        insight = FakeInsight()
        h = Harness(insight=insight)
        r = h.request("GET", f"/api/plugs/{PLUG_A}/export.csv?from=2023-11-01&to=2023-11-15")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/csv; charset=utf-8")
        self.assertIn("attachment", r.header("content-disposition"))
        self.assertTrue(r.body.startswith(b"start_utc,start_local (UTC)"))
        self.assertIn(("hourlyCSV", PLUG_A, "2023-11-01", "2023-11-15"), insight.calls)
        bad = h.request("GET", f"/api/plugs/{PLUG_A}/export.csv?from=1.11.2023")
        self.assertEqual((bad.status, bad.json()["field"]), (400, "from"))
        backwards = h.request("GET", f"/api/plugs/{PLUG_A}/export.csv?from=2023-11-10&to=2023-11-01")
        self.assertEqual((backwards.status, backwards.json()["field"]), (400, "to"))
        h.request("GET", f"/api/plugs/{PLUG_A}/export.csv")
        self.assertEqual(insight.calls[-1], ("hourlyCSV", PLUG_A, "2023-11-01", "2023-11-14"))

    def test_chart(self) -> None:
        """The chart is insight's hour and day series; without insight, the web's own hour of readings."""
        self.assertEqual(Harness(insight=FakeInsight()).request("GET", f"/api/plugs/{PLUG_A}/chart").json()["day"],
                         [[1_699_999_700, 40.3]])
        h = Harness()
        runtime(h.sessionA, relay=True, watts=33.0)
        doc = h.request("GET", f"/api/plugs/{PLUG_A}/chart").json()
        self.assertEqual((doc["hour"][-1][1], doc["day"]), (33.0, []))

    def test_totals(self) -> None:
        """The totals header's figures: insight's, or the hub's sum without cost."""
        self.assertEqual(Harness(insight=FakeInsight()).request("GET", "/api/totals").json()["today_cost"], 0.24)
        h = Harness()
        runtime(h.sessionA, relay=True, watts=30.0)
        runtime(h.sessionB, relay=True, watts=12.5)
        doc = h.request("GET", "/api/totals").json()
        self.assertEqual((doc["power_w"], doc["plugs_online"], doc["currency"]), (42.5, 2, None))

    def test_switches(self) -> None:
        """The latest switches with their causes, bounded by limit."""
        insight = FakeInsight()
        h = Harness(insight=insight)
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}/switches?limit=5").json()["switches"][0]["cause"], "timer")
        self.assertIn(("switches", PLUG_A, 5), insight.calls)
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}/switches?limit=500").status, 400)

    def test_loginHint(self) -> None:
        """GET /api/login tells, without credentials, where this daemon keeps its token."""
        h = Harness(tokenPath="/srv/vesyncd/state/control.token")
        r = h.request("GET", "/api/login", token=None)
        self.assertEqual((r.status, r.json()), (200, {"token_path": "/srv/vesyncd/state/control.token"}))


class RealInsightTests(unittest.TestCase):
    """The routes over the real EnergyInsight on the harness's hub and ledger (no tariff)."""

    def test_detailTotalsAndCsv(self) -> None:
        """Periods and baseline in the plug's JSON, null costs without a tariff, the zone in the CSV header."""
        from datetime import timezone

        from vesyncd.insight.service import EnergyInsight

        h = Harness(insightFactory=lambda hub, clock: EnergyInsight(hub, hub.ledger, timezone.utc, clock))
        runtime(h.sessionA, relay=True, watts=25.0)
        doc = h.request("GET", f"/api/plugs/{PLUG_A}").json()
        self.assertEqual(set(doc["periods"]) >= {"today_wh", "yesterday_wh", "week_wh", "month_wh", "year_wh"}, True)
        self.assertIsNone(doc["periods"]["today_cost"])
        self.assertIsNone(doc["baseline"]["baseline_w"])
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}/chart").json()["hour"][-1][1], 25.0)
        exchange = h.send("GET", "/api/totals")
        h.clock.advance(0)  # the house totals read each plug's periods on later reactor turns
        self.assertEqual(exchange.response().json()["power_w"], 25.0)
        bad = h.request("GET", f"/api/plugs/{PLUG_A}/energy?month=2023-13&cost=1")
        self.assertEqual((bad.status, bad.json()["field"]), (400, "month"))
        csv = h.request("GET", f"/api/plugs/{PLUG_A}/export.csv?from=2023-11-14&to=2023-11-14")
        self.assertEqual(csv.status, 200)
        self.assertIn(b"UTC", csv.body.split(b"\r\n")[0])
