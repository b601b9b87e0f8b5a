"""
The dashboard with N plugs, measured in headless Chromium.

    python -m bench.dashboard [--plugs 1000] [--speed 5] [--idle 10]

Starts vesyncd as the other steps do (L{bench.plugs.Server}: the daemon C{twistd vesyncd} builds),
with its web front end on a loopback port, and N simulated plugs (C{python -m vesyncd.sim}, in
five processes of different loads so that sorting by power has something to sort; C{--speed}
scales their cadence, so the page also receives a steady stream of live events).  Then Debian's
chromium (through chromedriver and selenium, as C{tests/test_browser_dashboard.py} does) logs in
with the control token and the script prints, one line each and one JSON line last:

  - time from submitting the token until the list shows every plug (C{#count} reads "N plugs");
  - cards and DOM elements in the page against the plugs (only one page of cards is rendered);
  - search and sort-by-power: the input's handler (synchronous) and until the next frame is drawn,
    measured in the page with C{performance.now()}, median of 5; each result is checked (the one
    plug searched for; the largest power first);
  - the page's JavaScript heap (Chrome's C{Performance.getMetrics}: C{JSHeapUsedSize}) after load;
  - the page's script and task time per second while idle with the plugs' live events arriving.

Needs selenium (a test dependency), C{/usr/bin/chromium} and C{/usr/bin/chromedriver}
(C{apt-get install chromium chromium-driver}; C{VESYNCD_CHROMIUM} / C{VESYNCD_CHROMEDRIVER}
elsewhere); without them it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from bench.plugs import ROOT, Server, freePort

CHROMIUM = os.environ.get("VESYNCD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VESYNCD_CHROMEDRIVER", "/usr/bin/chromedriver")
#: Load in watts of the plugs of each simulator process (a fifth of the plugs each).
LOADS = (3.0, 25.0, 75.0, 400.0, 1800.0)

#: Runs one list change in the page and reports how long its handler took and until the next frame.
TIMED_CHANGE = """
const [selector, value, eventName, done] = arguments;
const el = document.querySelector(selector);
el.value = value;
const t0 = performance.now();
el.dispatchEvent(new Event(eventName, {bubbles: true}));
const handler = performance.now() - t0;
requestAnimationFrame(() => setTimeout(() => done([handler, performance.now() - t0]), 0));
"""


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def startBrowser(profile: str) -> Any:
    """Headless chromium with a fresh profile and no background traffic, at 1280 x 900."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", "--disable-default-apps", "--mute-audio",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)


def metrics(driver: Any) -> dict[str, float]:
    """Chrome's page metrics (C{Performance.getMetrics}) by name."""
    return {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}


def timedChange(driver: Any, selector: str, value: str, event: str) -> tuple[float, float]:
    """Set C{selector}'s value, fire C{event}; (handler ms, ms until the next frame was drawn)."""
    handler, frame = driver.execute_async_script(TIMED_CHANGE, selector, value, event)
    return float(handler), float(frame)


def measure(base: str, token: str, plugs: int, idle: float, profile: str) -> dict[str, Any]:
    """Log in and take every figure (see the module docstring)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = startBrowser(profile)
    try:
        driver.set_script_timeout(30)
        driver.execute_cdp_cmd("Performance.enable", {})
        wait = WebDriverWait(driver, 60, poll_frequency=0.02, ignored_exceptions=[StaleElementReferenceException])
        driver.get(base + "/")
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        driver.find_element(By.ID, "token").send_keys(token)
        started = time.monotonic()
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: d.find_element(By.ID, "count").text == f"{plugs} plugs")
        loaded = time.monotonic() - started
        cards = driver.execute_script("return document.querySelectorAll('#plugs .card').length")
        nodes = driver.execute_script("return document.getElementsByTagName('*').length")
        after = metrics(driver)

        # Search for one plug by the end of its id (every simulated plug is named after its id).
        ids = driver.execute_script("return [...state.plugs.keys()]")
        target = sorted(ids)[len(ids) // 2]
        search = []
        for _ in range(5):
            search.append(timedChange(driver, "#search", target[-12:], "input"))
            shown = driver.execute_script(
                "return [...document.querySelectorAll('#plugs .card')].map(c => c.dataset.id || '')")
            assert len(shown) == 1, shown
            search.append(timedChange(driver, "#search", "", "input"))
        searchOne = [s for s in search[0::2]]
        searchAll = [s for s in search[1::2]]

        sort = []
        for _ in range(5):
            sort.append(timedChange(driver, "#sort", "power", "change"))
            top, best = driver.execute_script(
                "const v = list.view; return [v[0].power_w, Math.max(...v.map(p => p.power_w ?? -1))]")
            assert top == best, (top, best)
            sort.append(timedChange(driver, "#sort", "name", "change"))
        sortPower = sort[0::2]

        # The page at rest while the plugs' live events arrive.
        m0, t0 = metrics(driver), time.monotonic()
        time.sleep(idle)
        m1, t1 = metrics(driver), time.monotonic()
        span = t1 - t0
        powered = driver.execute_script("return [...state.plugs.values()].filter(p => p.power_w > 0).length")
        return {
            "plugs": plugs, "load_to_all_listed_s": round(loaded, 3), "cards_in_dom": cards,
            "dom_elements": nodes, "plugs_with_power": powered,
            "js_heap_used_mb": round(after.get("JSHeapUsedSize", 0) / 2**20, 1),
            "js_heap_total_mb": round(after.get("JSHeapTotalSize", 0) / 2**20, 1),
            "search_one_handler_ms": round(statistics.median(h for h, _ in searchOne), 1),
            "search_one_frame_ms": round(statistics.median(f for _, f in searchOne), 1),
            "search_clear_frame_ms": round(statistics.median(f for _, f in searchAll), 1),
            "sort_power_handler_ms": round(statistics.median(h for h, _ in sortPower), 1),
            "sort_power_frame_ms": round(statistics.median(f for _, f in sortPower), 1),
            "idle_events_seconds": round(span, 1),
            "idle_script_ms_per_s": round((m1.get("ScriptDuration", 0) - m0.get("ScriptDuration", 0)) * 1000 / span, 1),
            "idle_task_ms_per_s": round((m1.get("TaskDuration", 0) - m0.get("TaskDuration", 0)) * 1000 / span, 1),
            "js_heap_used_after_idle_mb": round(m1.get("JSHeapUsedSize", 0) / 2**20, 1),
        }
    finally:
        driver.quit()


def run(plugs: int = 1000, *, speed: float = 5.0, idle: float = 10.0,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the daemon and the simulated plugs, measure the page, stop everything; the figures
    (C{{"skipped": why}} when no browser can run here)."""
    why = missing()
    if why:
        say(f"dashboard: skipped, {why}")
        return {"bench": "dashboard", "skipped": why}
    http = freePort()
    # The daemon's default power refresh (the other steps turn it off): a plug's power is read when
    # it comes online and every minute, as in an installation.
    srv = Server("vesyncd", extra=(f"--daemon-arg=--http=tcp:{http}:interface=127.0.0.1",
                                   "--daemon-arg=--refresh-interval=60"))
    sims: list[subprocess.Popen[bytes]] = []
    profile = tempfile.mkdtemp(prefix="bench-dashboard-chromium-")
    try:
        share = [plugs // len(LOADS) + (1 if i < plugs % len(LOADS) else 0) for i in range(len(LOADS))]
        start = 0
        for load, n in zip(LOADS, share):
            if n:
                sims.append(subprocess.Popen(
                    [sys.executable, "-m", "vesyncd.sim", "--server", f"127.0.0.1:{srv.port}", "--count", str(n),
                     "--speed", repr(speed), "--load", repr(load), "--seed", "dashboard",
                     "--start-index", str(start), "--spread", "2"],
                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                start += n
        token = ""
        deadline = time.monotonic() + 60
        tokenPath = os.path.join(srv.stateDir, "control.token")
        while time.monotonic() < deadline and not token:
            if os.path.exists(tokenPath):
                token = open(tokenPath).read().strip()
            time.sleep(0.1)
        online = waitOnline(f"http://127.0.0.1:{http}", token, plugs)
        say(f"dashboard: {online} of {plugs} simulated plugs online; chromium logs in")
        doc = measure(f"http://127.0.0.1:{http}", token, plugs, idle, profile)
    finally:
        for s in sims:
            s.terminate()
        for s in sims:
            try:
                s.wait(10)
            except subprocess.TimeoutExpired:
                s.kill()
        srv.stop()
        shutil.rmtree(profile, ignore_errors=True)
    say(f"time from login to all {plugs} plugs listed: {doc['load_to_all_listed_s']:.2f} s")
    say(f"cards in the page: {doc['cards_in_dom']} for {plugs} plugs ({doc['dom_elements']} DOM elements)")
    say(f"search for one plug: {doc['search_one_handler_ms']} ms handler, {doc['search_one_frame_ms']} ms to the "
        f"next frame; clearing it: {doc['search_clear_frame_ms']} ms")
    say(f"sort by power: {doc['sort_power_handler_ms']} ms handler, {doc['sort_power_frame_ms']} ms to the next frame")
    say(f"JS heap: {doc['js_heap_used_mb']} MB used after load, {doc['js_heap_used_after_idle_mb']} MB after "
        f"{doc['idle_events_seconds']} s of live events")
    say(f"idle with live events: script {doc['idle_script_ms_per_s']} ms/s, tasks {doc['idle_task_ms_per_s']} ms/s")
    return {"bench": "dashboard", "speed": speed, **doc}


#: What "usable" means in the table: the list within 3 s, one page of cards, answers within 100 ms.
USABLE_LOAD_S = 3.0
USABLE_RESPONSE_MS = 100.0


def rows(doc: dict[str, Any]) -> list[tuple[str, Any, str, bool | None, str]]:
    """Table rows for C{python -m bench}: (what, figure, target, verdict, note)."""
    if "skipped" in doc:
        return [("dashboard (headless Chromium)", None, "usable", None, doc["skipped"])]
    n = doc["plugs"]
    big = n >= 1000
    return [
        (f"dashboard: login to all {n} listed s", doc["load_to_all_listed_s"], f"<= {USABLE_LOAD_S:g} s (1,000)",
         doc["load_to_all_listed_s"] <= USABLE_LOAD_S if big else None,
         f"JS heap {doc['js_heap_used_mb']} MB"),
        (f"dashboard: cards in the page ({n} plugs)", doc["cards_in_dom"], "only visible cards",
         doc["cards_in_dom"] <= 60 if big else None, f"{doc['dom_elements']} DOM elements"),
        (f"dashboard: search ms to next frame ({n} plugs)", doc["search_one_frame_ms"],
         f"<= {USABLE_RESPONSE_MS:g} ms", doc["search_one_frame_ms"] <= USABLE_RESPONSE_MS if big else None,
         f"handler {doc['search_one_handler_ms']} ms; clearing {doc['search_clear_frame_ms']} ms"),
        (f"dashboard: sort by power ms to next frame ({n} plugs)", doc["sort_power_frame_ms"],
         f"<= {USABLE_RESPONSE_MS:g} ms", doc["sort_power_frame_ms"] <= USABLE_RESPONSE_MS if big else None,
         f"handler {doc['sort_power_handler_ms']} ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--plugs", type=int, default=1000)
    p.add_argument("--speed", type=float, default=5.0, help="the simulated plugs' cadence factor")
    p.add_argument("--idle", type=float, default=10.0, help="seconds the idle page is watched")
    args = p.parse_args(argv)
    doc = run(args.plugs, speed=args.speed, idle=args.idle)
    for what, figure, target, ok, note in rows(doc):
        verdict = {True: "MEETS", False: "MISSES", None: ""}[ok]
        print(f"{what[:52]:52s} {figure!s:>8s}  {target:22s} {verdict:6s} {note}")
    print(json.dumps(doc))
    return 0


def waitOnline(base: str, token: str, plugs: int, timeout: float = 120.0) -> int:
    """Wait until the daemon lists C{plugs} plugs online (GET /api/plugs with the token); how many are."""
    import urllib.request

    deadline = time.monotonic() + timeout
    online = 0
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{base}/api/plugs?limit=1000&offset=0",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                doc = json.load(r)
            online = sum(1 for x in doc.get("plugs", []) if x.get("online"))
            if online >= plugs:
                return online
        except OSError:
            pass
        time.sleep(0.5)
    return online


if __name__ == "__main__":
    sys.exit(main())
