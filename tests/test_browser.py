"""A real browser against a real daemon: Debian's chromium, driven by chromedriver through selenium.

The daemon (hub, plug server, web front end) and two simulated plugs run in this process on the
real reactor, all on loopback; the blocking selenium steps run in a thread (deferToThread).  The
test logs in, switches a plug from the page, presses a simulated plug's button and watches the page
follow, opens the energy chart, renames a plug in place, and saves screenshots (their paths are
printed).  Skipped when chromium, chromedriver or selenium are missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial import unittest

from tests.fakes import waitFor
from vesyncd.web import tap as web_tap
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.auth import loadOrCreateToken
from vesyncd.service import DaemonInfo, ListenerService
from vesyncd.sim.runner import Simulator
from vesyncd.plugs.server import PlugServerFactory

CHROMIUM = os.environ.get("VESYNCD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VESYNCD_CHROMEDRIVER", "/usr/bin/chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None


def _skipReason() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def startBrowser(profile: Path) -> Any:
    """Headless chromium with a fresh profile and no background traffic."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", "--disable-default-apps", "--mute-audio",
                f"--user-data-dir={profile}", "--window-size=1100,850"):
        options.add_argument(arg)
    # An explicit driver path: selenium never looks for (or downloads) a driver of its own.
    return webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)


def browserTempDir(case: unittest.TestCase, prefix: str) -> Path:
    """Skip C{case} when no browser can run, keep selenium offline, and make the test's directory: its
    C{profile} and C{state} are removed by the case's cleanups, the rest (screenshots) is kept to look at."""
    reason = _skipReason()
    if reason:
        raise unittest.SkipTest(reason)
    os.environ.setdefault("SE_OFFLINE", "true")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    case.addCleanup(shutil.rmtree, tmp / "profile", True)
    case.addCleanup(shutil.rmtree, tmp / "state", True)
    return tmp


class BrowserTests(unittest.TestCase):
    """The dashboard in chromium against the daemon with simulated plugs."""

    timeout = 80

    def setUp(self) -> Any:
        self.tmp = browserTempDir(self, "vesyncd-browser-")
        self.hub = Hub(reactor, Settings(command_timeout=5.0))
        self.top = service.MultiService()
        plugs = ListenerService(reactor, "plug server", "tcp:0:interface=127.0.0.1", PlugServerFactory(self.hub, reactor=reactor))
        plugs.setServiceParent(self.top)
        config = {"http": "tcp:0:interface=127.0.0.1", "no-http": False, "http-insecure": False,
                  "metrics-public": False, "state-dir": self.tmp / "state"}
        web_tap.checkOptions(config)
        self.info = DaemonInfo(stateDir=config["state-dir"], listeners={"plugs": plugs})
        self.token = loadOrCreateToken(config["state-dir"] / "control.token")
        web_tap.makeServices(self.top, self.hub, config, reactor, self.token, self.info)
        self.top.startService()
        self.addCleanup(self.top.stopService)
        d = gatherResults([plugs.listening, self.info.listeners["http"].listening])
        d.addCallback(self._started)
        return d

    def _started(self, ports: list[Any]) -> Any:
        plugPort, httpPort = (p.getHost().port for p in ports)
        self.base = f"http://127.0.0.1:{httpPort}"
        # speed=30: keepalives and energy reports every few seconds.
        self.sim = Simulator(reactor, "127.0.0.1", plugPort, 2, speed=30.0, seed="browser")
        self.sim.start()
        self.addCleanup(self.sim.stop)
        return waitFor(lambda: sum(p.loggedIn for p in self.sim.plugs) == 2 and len(self.hub.plugs()) == 2)

    @inlineCallbacks
    def test_dashboard(self) -> Any:
        """Log in, see both plugs, switch one from the page, see a button press live, chart and rename."""
        driver = yield threads.deferToThread(startBrowser, self.tmp / "profile")
        try:
            yield self._dashboard(driver)
        finally:
            yield threads.deferToThread(driver.quit)
            # Let the reactor see the browser's connections close.
            yield task.deferLater(reactor, 0.3, lambda: None)

    @inlineCallbacks
    def _dashboard(self, driver: Any) -> Any:
        run = threads.deferToThread
        plug0, plug1 = self.sim.plugs
        wait = lambda seconds=10: WebDriverWait(driver, seconds, poll_frequency=0.05)  # noqa: E731

        def login() -> None:
            driver.get(self.base + "/")
            wait().until(lambda d: d.find_element(By.ID, "login").is_displayed())
            driver.find_element(By.ID, "token").send_keys(self.token)
            driver.find_element(By.CSS_SELECTOR, "#login button").click()
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.online")) == 2)
            wait().until(lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class").split())

        # An hour of 20 W in today's ledger, so that the cards and the chart have figures.
        plug0.send({"uri": "/report", "e": format(20 * 3600, "x"), "t": format(3600, "x")})
        yield waitFor(lambda: self.hub.energy(plug0.id).lifetime_wh > 0, what="the energy report")

        yield run(login)
        self.assertEqual(len(self.hub.plugs()), 2)

        def card(plugId: str) -> Any:
            return driver.find_element(By.CSS_SELECTOR, f'.card[data-id="{plugId}"]')

        # A click on the page's toggle switches the simulated plug.
        before = plug0.relay
        yield run(lambda: card(plug0.id).find_element(By.CSS_SELECTOR, ".switch").click())
        yield waitFor(lambda: plug0.relay is not before, what="the simulated plug to switch")
        yield run(lambda: wait().until(
            lambda d: card(plug0.id).get_attribute("data-relay") == ("on" if plug0.relay else "off")))

        # A button press on the plug shows on the page within a second or two (SSE).
        expected = "off" if plug1.relay else "on"
        pressed = time.monotonic()
        reactor.callLater(0, plug1.press)
        yield run(lambda: wait(5).until(lambda d: card(plug1.id).get_attribute("data-relay") == expected
                                        and card(plug1.id).find_element(By.CSS_SELECTOR, ".relay").is_selected()
                                        == (expected == "on")))
        latency = time.monotonic() - pressed
        self.assertLess(latency, 3.0)

        overview = self.tmp / "dashboard.png"
        yield run(driver.save_screenshot, str(overview))

        # Rename in place.
        def rename() -> None:
            card(plug0.id).find_element(By.CSS_SELECTOR, ".name").click()
            field = wait().until(lambda d: card(plug0.id).find_element(By.CSS_SELECTOR, ".name input"))
            field.send_keys("Desk lamp", Keys.ENTER)
            wait().until(lambda d: card(plug0.id).find_element(By.CSS_SELECTOR, ".name").text == "Desk lamp")

        yield run(rename)
        self.assertEqual(self.hub.get("desk lamp").id, plug0.id)

        # The energy chart: 24 hourly bars (one not empty), then a month's daily bars.
        def d_bars() -> list[Any]:
            return driver.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")

        def chart() -> int:
            card(plug0.id).find_element(By.CSS_SELECTOR, ".details").click()
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")) == 24)
            heights = [float(b.get_attribute("height")) for b in d_bars()]
            assert max(heights) > 0, heights
            driver.find_element(By.CSS_SELECTOR, "#period option[value=month]").click()
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")) >= 28)
            driver.find_element(By.ID, "prev").click()
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")) >= 28)
            driver.find_element(By.ID, "next").click()
            wait().until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")) >= 28)
            return len(driver.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar"))

        bars = yield run(chart)
        self.assertGreaterEqual(bars, 28)
        detail = self.tmp / "energy.png"
        yield run(driver.save_screenshot, str(detail))

        # A phone-sized window keeps one column of cards.
        def phone() -> None:
            driver.find_element(By.ID, "back").click()
            driver.set_window_size(390, 844)
            wait().until(lambda d: d.find_element(By.ID, "plugs").is_displayed())

        yield run(phone)
        mobile = self.tmp / "phone.png"
        yield run(driver.save_screenshot, str(mobile))
        for path in (overview, detail, mobile):
            self.assertGreater(path.stat().st_size, 1000)
            print(f"screenshot: {path}")
        keep = os.environ.get("VESYNCD_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for path in (overview, detail, mobile):
                shutil.copy(path, keep)
