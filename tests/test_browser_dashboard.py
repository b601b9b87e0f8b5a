"""The dashboard in headless chromium at 1280 px and 375 px (light and dark): the live power chart,
the countdown control, schedules, and a house of 1,000 plugs.

The daemon (hub, plug server, web front end with the automation engine and energy insight) runs in
this process on the real reactor, on loopback; the blocking selenium steps run in a thread.  Every
wait is on a condition with a bounded timeout.  Screenshots are kept in the test's temporary
directory (their paths are printed; VESYNCD_SCREENSHOTS=DIR copies them there).
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timezone
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial import unittest

from tests.fakes import waitFor
from tests.test_browser import browserTempDir, startBrowser
from tests.web_helpers import login as fakeLogin
from tests.web_helpers import runtime
from vesyncd.auth import loadOrCreateToken
from vesyncd.automation.engine import AutomationEngine
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.store import MemoryAutomationStore
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.insight.service import EnergyInsight
from vesyncd.insight.tariffconfig import tariffSchedule
from vesyncd.plugs.server import PlugServerFactory
from vesyncd.service import DaemonInfo, ListenerService
from vesyncd.sim.runner import Simulator
from vesyncd.web import tap as web_tap

try:
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - depends on the machine
    pass


def waiter(driver: Any, seconds: float = 10) -> Any:
    """A bounded wait that polls every 50 ms and looks again when the page replaced an element it held."""
    return WebDriverWait(driver, seconds, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])


def clickFresh(driver: Any, css: str) -> None:
    """Find, bring to the middle of the screen and click an element, finding it again if the page
    redrew it in between (the click then had not happened)."""
    def click(d: Any) -> bool:
        element = d.find_element(By.CSS_SELECTOR, css)
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return True
    WebDriverWait(driver, 10, poll_frequency=0.05,
                  ignored_exceptions=[StaleElementReferenceException, ElementClickInterceptedException]).until(click)

WIDE = (1280, 900)
PHONE = (375, 812)


class DashboardBase(unittest.TestCase):
    """A daemon with automation and insight on loopback; C{plugs} simulated plugs log in."""

    timeout = 120
    plugs = 1

    def setUp(self) -> Any:
        self.tmp = browserTempDir(self, "vesyncd-dashboard-")
        self.hub = Hub(reactor, Settings(command_timeout=5.0, max_new_plugs_per_minute=5000))
        self.addCleanup(self.hub.closeAll, "test over")
        self.top = service.MultiService()
        plugs = ListenerService(reactor, "plug server", "tcp:0:interface=127.0.0.1", PlugServerFactory(self.hub, reactor=reactor))
        plugs.setServiceParent(self.top)
        self.engine = AutomationEngine(self.hub, MemoryAutomationStore(), reactor, AutomationConfig(zone=timezone.utc))
        self.engine.start([])
        self.addCleanup(self.engine.stop)
        schedule = tariffSchedule({"currency": "EUR", "price-kwh": 0.30, "daily-charge": None})
        self.insight = EnergyInsight(self.hub, self.hub.ledger, timezone.utc, reactor, schedule)
        config = {"http": "tcp:0:interface=127.0.0.1", "no-http": False, "http-insecure": False,
                  "metrics-public": False, "state-dir": self.tmp / "state"}
        self.info = DaemonInfo(stateDir=config["state-dir"], listeners={"plugs": plugs})
        self.token = loadOrCreateToken(config["state-dir"] / "control.token")
        web_tap.makeServices(self.top, self.hub, config, reactor, self.token, self.info,
                             automation=self.engine, insight=self.insight)
        self.top.startService()
        self.addCleanup(self.top.stopService)
        d = gatherResults([plugs.listening, self.info.listeners["http"].listening])
        d.addCallback(self._started)
        return d

    def _started(self, ports: list[Any]) -> Any:
        plugPort, httpPort = (p.getHost().port for p in ports)
        self.base = f"http://127.0.0.1:{httpPort}"
        self.sim = Simulator(reactor, "127.0.0.1", plugPort, self.plugs, speed=30.0, seed="dashboard")
        self.sim.start()
        self.addCleanup(self.sim.stop)
        return waitFor(lambda: sum(p.loggedIn for p in self.sim.plugs) == self.plugs and len(self.hub.plugs()) == self.plugs)

    @inlineCallbacks
    def withBrowser(self, steps: Any) -> Any:
        """Run C{steps(driver)} with a fresh headless chromium, and quit it afterwards."""
        driver = yield threads.deferToThread(startBrowser, self.tmp / "profile")
        try:
            yield steps(driver)
        finally:
            yield threads.deferToThread(driver.quit)
            yield task.deferLater(reactor, 0.3, lambda: None)

    def shot(self, driver: Any, name: str) -> Path:
        """Save a screenshot (called in the selenium thread) and say where."""
        path = self.tmp / f"{name}.png"
        driver.save_screenshot(str(path))
        assert path.stat().st_size > 1000
        print(f"screenshot: {path}")
        keep = os.environ.get("VESYNCD_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, keep)
        return path

    def login(self, driver: Any, size: tuple[int, int] = WIDE, shot: str | None = None) -> None:
        """Open the page at C{size}, check the login page names this daemon's token file, and log in."""
        driver.set_window_size(*size)
        driver.get(self.base + "/")
        wait = waiter(driver)
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        wait.until(lambda d: d.find_element(By.ID, "token-path").text == str(self.tmp / "state" / "control.token"))
        if shot:
            self.shot(driver, shot)
        driver.find_element(By.ID, "token").send_keys(self.token)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class").split())


def dark(driver: Any, on: bool) -> None:
    """Make chromium report prefers-color-scheme: dark (or light)."""
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]})


class LiveDashboardTests(DashboardBase):
    """One simulated plug: its live chart, its countdown and a schedule from the plug's page."""

    @inlineCallbacks
    def test_liveChartCountdownSchedule(self) -> Any:
        """The chart follows the plug's power; "on for 1m" counts down live and cancels; a schedule is added
        and removed; screenshots at 1280 px and 375 px, light and dark."""
        yield self.withBrowser(self._steps)

    @inlineCallbacks
    def _steps(self, driver: Any) -> Any:
        run = threads.deferToThread
        plug = self.sim.plugs[0]
        wait = lambda seconds=10: waiter(driver, seconds)  # noqa: E731
        plug.send({"uri": "/report", "e": format(40 * 3600, "x"), "t": format(3600, "x")})
        yield waitFor(lambda: self.hub.energy(plug.id).lifetime_wh > 0, what="the energy report")
        yield run(self.login, driver, PHONE, "login-phone")
        yield run(driver.set_window_size, *WIDE)

        def detail() -> None:
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#plugs .card")) == 1)
            # Cost next to kWh on the card (a flat tariff in EUR).
            wait().until(lambda d: "€" in d.find_element(By.CSS_SELECTOR, "#plugs .card .today").text)
            clickFresh(driver, "#plugs .card .details")
            wait().until(lambda d: d.find_element(By.ID, "detail").is_displayed())
            wait().until(lambda d: d.find_element(By.CSS_SELECTOR, "#periods tr[data-period=today] td:nth-child(3)").text != "–")

        yield run(detail)

        def chartData(name: str) -> str:
            # Read in one script: the chart's svg is replaced on every reading, so a found element
            # may be gone by the time a second command asks it for an attribute.
            return driver.execute_script(
                "const svg = document.querySelector('#live-chart svg'); return svg ? svg.dataset[arguments[0]] : '';", name)

        def chartLast() -> str:
            return chartData("last")

        # The chart moves with the plug: each new load is read (/getRuntime) and drawn without a reload.
        for watts in (150.0, 310.0):
            plug.load_w = watts
            plug.relay = True
            yield self.hub.refresh(plug.id)
            yield run(lambda: wait().until(lambda d: chartLast() == str(int(watts)) or chartLast() == str(watts)))
        points = yield run(lambda: int(chartData("points")))
        self.assertGreaterEqual(points, 2)
        yield run(self.shot, driver, "detail-wide")

        # Countdown: off for 1 minute; the time left is shown and ticks down; then cancelled.
        def countdown() -> None:
            driver.find_element(By.CSS_SELECTOR, "#countdown-switch option[value=off]").click()
            field = driver.find_element(By.ID, "countdown-for")
            field.clear()
            field.send_keys("1m")
            driver.find_element(By.CSS_SELECTOR, "#countdown button").click()
            wait().until(lambda d: d.find_element(By.ID, "timer").is_displayed())
            first = driver.find_element(By.ID, "timer-text").text
            assert first.startswith("Switches on in "), first
            wait(5).until(lambda d: d.find_element(By.ID, "timer-text").text != first)
            wait().until(lambda d: "timer" in d.find_element(By.ID, "next-action").text)

        yield run(countdown)
        self.assertFalse(plug.relay)
        self.assertEqual(self.engine.timer(plug.id)["switch"], "on")
        yield run(self.shot, driver, "countdown-wide")
        yield run(lambda: (clickFresh(driver, "#timer-cancel"),
                           wait().until(lambda d: not d.find_element(By.ID, "timer").is_displayed())))
        self.assertIsNone(self.engine.timer(plug.id))

        # A schedule added from the page is listed and named as the next action; then removed.
        def schedule() -> None:
            driver.find_element(By.ID, "schedule-at").send_keys("23:59")
            driver.find_element(By.CSS_SELECTOR, "#schedule-add button").click()
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#schedules li")) == 1)
            wait().until(lambda d: "schedule:" in d.find_element(By.ID, "next-action").text)
            bad = driver.find_element(By.ID, "schedule-at")
            bad.clear()
            bad.send_keys("25:00")
            driver.find_element(By.CSS_SELECTOR, "#schedule-add button").click()
            wait().until(lambda d: "--at" in d.find_element(By.ID, "automation-error").text)

        yield run(schedule)
        self.assertEqual(len(self.engine.schedulesOf(plug.id)), 1)

        def phone() -> None:
            driver.set_window_size(*PHONE)
            wait().until(lambda d: d.execute_script("return document.documentElement.scrollWidth") <= PHONE[0])
            self.shot(driver, "detail-phone")
            dark(driver, True)
            self.shot(driver, "detail-phone-dark")
            clickFresh(driver, "#schedules li button:last-child")
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#schedules li")) == 0)
            clickFresh(driver, "#back")
            wait().until(lambda d: d.find_element(By.ID, "plugs").is_displayed())
            assert pageWidth(driver) <= PHONE[0]
            self.shot(driver, "list-phone-dark")
            dark(driver, False)
            driver.set_window_size(*WIDE)
            self.shot(driver, "list-wide")

        yield run(phone)
        self.assertEqual(self.engine.schedulesOf(plug.id), [])


def pageWidth(driver: Any) -> int:
    """The page's width in CSS pixels (wider than the window means sideways scrolling on a phone)."""
    return int(driver.execute_script("return document.documentElement.scrollWidth"))


class ThousandPlugsTests(DashboardBase):
    """A house of 1,000 plugs: search, sort by power, and a bounded number of cards in the page."""

    plugs = 0

    def _started(self, ports: list[Any]) -> Any:
        self.base = f"http://127.0.0.1:{ports[1].getHost().port}"
        # In-memory plugs (no sockets): the page, not the plug server, is what is measured here.
        for i in range(1000):
            plugId = f"dddd{i:04d}-0000-4000-8000-000000000000"
            session, _ = fakeLogin(self.hub, plugId, relay=True, peer=f"10.9.{i // 250}.{i % 250}:40000")
            runtime(session, relay=True, watts=float(i % 997))
            self.hub.rename(plugId, f"Plug {i:04d}")
        return None

    @inlineCallbacks
    def test_thousandPlugs(self) -> Any:
        """The list shows a bounded page of cards; search narrows it; sort by power puts the largest first."""
        yield self.withBrowser(self._steps)

    @inlineCallbacks
    def _steps(self, driver: Any) -> Any:
        run = threads.deferToThread
        wait = lambda seconds=10: waiter(driver, seconds)  # noqa: E731

        def cards() -> list[Any]:
            return driver.find_elements(By.CSS_SELECTOR, "#plugs .card")

        def steps() -> float:
            started = time.monotonic()
            self.login(driver)
            wait(20).until(lambda d: d.find_element(By.ID, "count").text == "1000 plugs")
            shown = time.monotonic() - started
            assert 0 < len(cards()) <= 60, len(cards())
            assert len(driver.find_elements(By.CSS_SELECTOR, "#plugs .spark")) == len(cards())
            self.shot(driver, "thousand-wide")
            search = driver.find_element(By.ID, "search")
            search.send_keys("plug 0421")
            wait().until(lambda d: len(cards()) == 1 and cards()[0].find_element(By.CSS_SELECTOR, ".name").text == "Plug 0421")
            search.clear()
            search.send_keys("plug 04")
            wait().until(lambda d: d.find_element(By.ID, "count").text == "100 of 1000 plugs")
            assert len(cards()) <= 60
            search.clear()
            search.send_keys(" ")
            driver.find_element(By.CSS_SELECTOR, "#sort option[value=power]").click()
            wait().until(lambda d: cards()[0].find_element(By.CSS_SELECTOR, ".name").text == "Plug 0996")
            clickFresh(driver, "#page-next")
            wait().until(lambda d: d.find_element(By.ID, "page-info").text.startswith("2 / "))
            assert len(cards()) <= 60
            driver.set_window_size(*PHONE)
            wait().until(lambda d: pageWidth(d) <= PHONE[0])
            self.shot(driver, "thousand-phone")
            return shown

        shown = yield run(steps)
        print(f"1,000 plugs: logged in to all cards shown in {shown:.2f} s")
        self.assertLess(shown, 20.0)
