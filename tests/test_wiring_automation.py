"""The real daemon (tap.makeService) on loopback with its state directory: automation and energy insight
wired to the hub and the store, across restarts, with a simulated plug."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.python import usage
from twisted.trial import unittest

from vesyncd import tap
from vesyncd.core import model as h
from vesyncd.sim.runner import Simulator
from tests.fakes import waitFor


def options(stateDir: str, *extra: str) -> tap.Options:
    """Parsed daemon options: plugs on loopback port 0, no DNS or HTTP, days in UTC."""
    config = tap.Options()
    config.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", stateDir, "--refresh-interval", "0",
                         "--no-dns", "--no-http", "--timezone", "UTC",
                         *extra])
    return config


class WiredDaemonTests(unittest.TestCase):
    """Start and restart the whole daemon on one state directory."""

    def setUp(self) -> None:
        self.stateDir = self.mktemp()
        self.daemon: tap.Daemon | None = None

    def start(self, *extra: str) -> tap.Daemon:
        """Build and start the daemon on the test's state directory (stopped at cleanup unless stopped)."""
        daemon = tap.makeService(options(self.stateDir, *extra), reactor)
        daemon.startService()
        self.daemon = daemon
        self.addCleanup(self.stopIfRunning, daemon)
        return daemon

    def stopIfRunning(self, daemon: tap.Daemon) -> Any:
        """Stop a daemon still running."""
        return daemon.stopService() if daemon.running else None

    def startSim(self, daemon: tap.Daemon, seed: str) -> Any:
        """One simulated plug against the daemon; stopped at cleanup."""
        sim = Simulator(reactor, "127.0.0.1", daemon.plugListener.port.getHost().port, 1, seed=seed)
        sim.start()
        self.addCleanup(sim.stop)
        return sim.plugs[0]

    @defer.inlineCallbacks
    def test_timerSurvivesRestart(self) -> Any:
        """A timer set through the daemon's engine is there after a restart on the same state directory."""
        daemon = self.start()
        automation = daemon.context.automation
        timer = automation.setTimer("a1b2c3", "off", "1h")
        yield daemon.stopService()
        again = self.start().context.automation
        self.assertEqual(again.timer("a1b2c3")["ts"], timer["ts"])
        self.assertEqual(again.timer("a1b2c3")["switch"], "off")

    @defer.inlineCallbacks
    def test_scheduleCauseReachesEventAndHistory(self) -> Any:
        """A schedule's switch carries cause schedule:<id> into the relay event and the stored switch history."""
        daemon = self.start()
        plug = self.startSim(daemon, "sched")
        hub = daemon.hub
        yield waitFor(lambda: hub.isOnline(plug.id), what="login")
        yield hub.switch(plug.id, False)
        events: list[h.Event] = []
        self.addCleanup(hub.subscribe(events.append))
        # Two whole seconds ahead, so the schedule is never in the past when added.
        at = (datetime.now(timezone.utc) + timedelta(seconds=2)).strftime("%H:%M:%S")
        schedule = daemon.context.automation.addSchedule(plug.id, "on", at)
        cause = f"schedule:{schedule['id']}"
        relay = yield waitFor(lambda: next((e for e in events if e.kind == h.RELAY), None), what="the schedule's run")
        self.assertEqual((relay.data["relay"], relay.data["cause"]), (True, cause))
        self.assertEqual(hub.get(plug.id).relay_cause, cause)
        switches = yield daemon.context.insight.switches(plug.id)
        self.assertEqual([(s["relay"], s["cause"]) for s in switches[:2]], [(True, cause), (False, "command")])
        yield daemon.stopService()
        # The history is in the database: a restarted daemon reads it back.
        again = self.start()
        stored = yield again.context.insight.switches(plug.id, 1)
        self.assertEqual([(s["relay"], s["cause"]) for s in stored], [(True, cause)])

    @defer.inlineCallbacks
    def test_countdownWithSimulatedPlug(self) -> Any:
        """switchFor(plug, on, 3 s) is confirmed on, then the plug is off about 3 s later with cause 'timer'."""
        daemon = self.start()
        plug = self.startSim(daemon, "countdown")
        hub = daemon.hub
        yield waitFor(lambda: hub.isOnline(plug.id), what="login")
        yield hub.switch(plug.id, False)
        events: list[h.Event] = []
        self.addCleanup(hub.subscribe(events.append))
        started = time.monotonic()
        timer = yield daemon.context.automation.switchFor(plug.id, True, 3)
        self.assertAlmostEqual(timer["ts"] - timer["created_ts"], 3.0, places=3)
        self.assertEqual(timer["switch"], "off")
        self.assertTrue(plug.relay)
        self.assertEqual(hub.get(plug.id).relay, True)
        off = yield waitFor(lambda: next((e for e in events if e.kind == h.RELAY and not e.data["relay"]), None),
                            timeout=15, what="the timer's switch off")
        self.assertEqual(off.data["cause"], h.CAUSE_TIMER)
        self.assertFalse(plug.relay)
        # Never before the time is up, on the daemon's own clock (the one its timers run on).
        self.assertGreaterEqual(off.at, timer["ts"])
        self.assertLess(time.monotonic() - started, 15)
        self.assertIsNone(daemon.context.automation.timer(plug.id))

    @defer.inlineCallbacks
    def test_forgetDropsAutomation(self) -> Any:
        """Forgetting a plug removes its timer and schedules."""
        daemon = self.start()
        plug = self.startSim(daemon, "forget")
        yield waitFor(lambda: daemon.hub.isOnline(plug.id), what="login")
        automation = daemon.context.automation
        automation.setTimer(plug.id, "off", "1h")
        automation.addSchedule(plug.id, "on", "07:00", days="daily")
        daemon.hub.forget(plug.id)
        self.assertIsNone(automation.timer(plug.id))
        self.assertEqual(automation.schedulesOf(plug.id), [])

    @defer.inlineCallbacks
    def test_insightFollowsRealReports(self) -> Any:
        """A simulated plug's own energy reports reach EnergyInsight: its today figure is the hub's, priced."""
        daemon = self.start("--currency", "EUR", "--price-kwh", "0.25")
        # A fast simulated clock: keepalives, and the report 3 s after each, come within seconds.
        sim = Simulator(reactor, "127.0.0.1", daemon.plugListener.port.getHost().port, 1, seed="reports",
                        speed=60.0, load_w=3000.0)
        sim.start()
        self.addCleanup(sim.stop)
        plug = sim.plugs[0]
        hub = daemon.hub
        yield waitFor(lambda: hub.isOnline(plug.id), what="login")
        if not hub.get(plug.id).relay:
            yield hub.switch(plug.id, True)
        yield waitFor(lambda: hub.energy(plug.id).today_wh > 0, timeout=15, what="an energy report")
        sim.stop()  # no report may come between the two readings compared below
        yield waitFor(lambda: not hub.isOnline(plug.id), what="the plug gone")
        periods = yield daemon.context.insight.periods(plug.id)
        todayWh = hub.energy(plug.id).today_wh
        self.assertAlmostEqual(periods["today_wh"], todayWh, places=5)
        self.assertAlmostEqual(periods["lifetime_wh"], hub.energy(plug.id).lifetime_wh, places=5)
        self.assertAlmostEqual(periods["today_cost"], round(todayWh / 1000 * 0.25, 4), places=4)
        totals = yield daemon.context.insight.totals()
        self.assertEqual((totals["plugs_online"], totals["power_w"], totals["currency"]), (0, 0.0, "EUR"))
        self.assertAlmostEqual(totals["today_wh"], todayWh, places=5)

    @defer.inlineCallbacks
    def test_insightFiguresAndBaselineAcrossRestart(self) -> Any:
        """EnergyInsight prices a plug's reports with the configured tariff, and its baseline survives a restart."""
        daemon = self.start("--currency", "EUR", "--price-kwh", "0.25")
        plug = self.startSim(daemon, "insight")
        hub = daemon.hub
        yield waitFor(lambda: hub.isOnline(plug.id), what="login")
        now = reactor.seconds()
        hub.ledger.record(plug.id, now, 3600 * 400, 3600)  # 400 Wh
        insight = daemon.context.insight
        periods = yield insight.periods(plug.id)
        self.assertAlmostEqual(periods["today_wh"], 400.0)
        self.assertEqual((periods["currency"], periods["today_cost"]), ("EUR", 0.1))
        table = yield insight.costTable()
        self.assertEqual([(r["plug"], r["wh"], r["cost"]) for r in table["plugs"]], [(plug.id, 400.0, 0.1)])
        for i in range(30 * 4):  # 30 hours of 15-minute slots at 6 W
            insight.baselines.add(plug.id, now - 30 * 3600 + i * 900, 6.0)
        self.assertEqual(insight.baseline(plug.id)["baseline_w"], 6.0)
        yield daemon.stopService()
        again = self.start("--currency", "EUR", "--price-kwh", "0.25")
        baseline = again.context.insight.baseline(plug.id)
        self.assertEqual((baseline["baseline_w"], baseline["currency"]), (6.0, "EUR"))


class TariffOptionTests(unittest.TestCase):
    """Tariff options and the config file's [[tariff]] tables are checked at start-up, naming the key."""

    def config(self, text: str) -> str:
        """A config file with C{text}."""
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def refusal(self, *args: str) -> str:
        """The usage error's text for these arguments."""
        with self.assertRaises(usage.UsageError) as caught:
            options(self.mktemp(), *args)
        return str(caught.exception)

    def test_flatPrice(self) -> None:
        """--currency and --price-kwh make a flat schedule."""
        config = options(self.mktemp(), "--currency", "eur", "--price-kwh", "0.3")
        self.assertEqual(config["tariff-schedule"].currency, "EUR")

    def test_optionRefusals(self) -> None:
        """A price without a currency, or a negative price, is refused naming the option."""
        self.assertTrue(self.refusal("--price-kwh", "0.3").startswith("currency: "))
        self.assertTrue(self.refusal("--currency", "EUR", "--price-kwh", "-1").startswith("price-kwh: "))
        self.assertTrue(self.refusal("--currency", "ZZZ", "--price-kwh", "1").startswith("currency: "))

    def test_tomlTables(self) -> None:
        """[[tariff]] tables from the config file become the schedule; a bad one names its key."""
        good = self.config('currency = "EUR"\n[[tariff]]\nprice-kwh = 0.3\n[[tariff]]\nfrom = 2026-07-01\n'
                           'price-kwh = 0.4\n')
        config = options(self.mktemp(), "--config", good)
        self.assertEqual(len(config["tariff-schedule"].tariffs), 2)
        bad = self.config('currency = "EUR"\n[[tariff]]\n  [[tariff.window]]\n  days = "mon-fri"\n'
                          '  from = "07:00"\n  to = "22:00"\n  price-kwh = -0.2\n')
        self.assertIn("tariff[1].window[1].price-kwh", self.refusal("--config", bad))
        typo = self.config('currency = "EUR"\n[[tariff]]\nprice_kwh = 0.3\n')
        self.assertIn("tariff[1]", self.refusal("--config", typo))

    def test_automationOptionRefusal(self) -> None:
        """A latitude without a longitude is refused naming the missing option."""
        self.assertIn("--longitude", self.refusal("--latitude", "52.5"))
