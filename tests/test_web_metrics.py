"""Tests of /metrics: authentication and the Prometheus exposition read from the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.fakes import Turns
from tests.web_helpers import PLUG_A, PLUG_B, PLUG_C, Harness, login, runtime
from vesyncd.core.hub import Hub
from vesyncd.core.model import PlugState
from vesyncd.core.settings import Settings
from vesyncd.plugs import codec as m
from vesyncd.dns.answers import DNSCounters
from vesyncd.web.metrics import READ_PER_TURN, HubCollector, Metrics, plugSeries


def scrape(h: Harness, **kw) -> dict[str, list]:
    """Metric name -> samples, parsed with prometheus_client's parser."""
    r = h.request("GET", "/metrics", **kw)
    assert r.status == 200, r.body
    assert r.header("content-type").startswith("text/plain")
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: list, **labels) -> float:
    """The value of the one sample with these labels."""
    [match] = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return match


class MetricsTests(unittest.TestCase):
    """The exposition and who may read it."""

    def test_needsToken(self) -> None:
        """Without --metrics-public, /metrics needs the token."""
        self.assertEqual(Harness().request("GET", "/metrics", token=None).status, 401)

    def test_public(self) -> None:
        """With --metrics-public anyone may scrape."""
        self.assertIn("vesyncd_plug_up", scrape(Harness(metricsPublic=True), token=None))

    def test_plugSeries(self) -> None:
        """Per-plug gauges and the lifetime energy counter, labelled with id and alias."""
        h = Harness()
        runtime(h.sessionB, True, watts=1500.0, volts=121.5)
        h.sessionB.received(m.KeepAlive(rssi=-61))
        h.sessionB.received(m.Report(wattSeconds=36000, seconds=180))
        s = scrape(h)
        self.assertEqual(value(s["vesyncd_plug_up"], plug=PLUG_B, alias="Kettle"), 1.0)
        self.assertEqual(value(s["vesyncd_plug_up"], plug=PLUG_C), 0.0)
        self.assertEqual(value(s["vesyncd_plug_relay_on"], plug=PLUG_A), 0.0)
        self.assertEqual(value(s["vesyncd_plug_relay_on"], plug=PLUG_B), 1.0)
        self.assertEqual(value(s["vesyncd_plug_power_watts"], plug=PLUG_B), 1500.0)
        self.assertEqual(value(s["vesyncd_plug_voltage_volts"], plug=PLUG_B), 121.5)
        self.assertEqual(value(s["vesyncd_plug_rssi_dbm"], plug=PLUG_B), -61)
        self.assertAlmostEqual(value(s["vesyncd_plug_energy_watt_hours_total"], plug=PLUG_B), 10.0)
        self.assertEqual(value(s["vesyncd_plug_last_seen_timestamp_seconds"], plug=PLUG_B), h.clock.seconds())
        self.assertNotIn(PLUG_A, [x.labels["plug"] for x in s.get("vesyncd_plug_power_watts", [])])

    def test_daemonCounters(self) -> None:
        """Connected plugs, logins, reconnects, commands by result and rejected frames."""
        h = Harness()
        h.hub.stats["rejected_oversize"] += 2
        h.hub.stats["frames_rate_limited"] += 1
        h.request("POST", f"/api/plugs/{PLUG_C}/on")
        s = scrape(h)
        self.assertEqual(s["vesyncd_plugs_connected"][0].value, 2)
        self.assertEqual(s["vesyncd_plugs_known"][0].value, 3)
        self.assertEqual(s["vesyncd_logins_total"][0].value, 3)
        self.assertEqual(value(s["vesyncd_commands_total"], result="offline"), 1)
        self.assertEqual(value(s["vesyncd_commands_total"], result="ok"), 0)
        self.assertEqual(value(s["vesyncd_frames_rejected_total"], reason="oversize"), 2)
        self.assertEqual(value(s["vesyncd_frames_rejected_total"], reason="frames_rate_limited"), 1)

    def test_dns(self) -> None:
        """DNS counters appear when the DNS feature put them in the context."""
        counters = DNSCounters(answered=5, forwarded=3, refused=2, malformed=1, pending=1)
        dns = type("DNS", (), {"counters": counters})()
        s = scrape(Harness(dns=lambda: dns))
        self.assertEqual(value(s["vesyncd_dns_events_total"], event="answered"), 5)
        self.assertEqual(value(s["vesyncd_dns_events_total"], event="malformed"), 1)
        self.assertEqual(s["vesyncd_dns_pending"][0].value, 1)

    def test_noDNS(self) -> None:
        """Without the DNS feature there are no DNS series."""
        self.assertNotIn("vesyncd_dns_events_total", scrape(Harness()))

    def test_readsAtScrapeTime(self) -> None:
        """A change in the hub shows in the next scrape without any bookkeeping."""
        h = Harness()
        h.sessionA.lost("gone")
        self.assertEqual(value(scrape(h)["vesyncd_plug_up"], plug=PLUG_A), 0.0)


def libraryText(rows: list[tuple[Any, ...]]) -> str:
    """The per-plug families of L{Hub.readings} rows as prometheus_client's own families write them."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import generate_latest

    labels = ["plug", "alias"]
    families = [GaugeMetricFamily("vesyncd_plug_up", "1 while the plug is connected.", labels=labels),
                GaugeMetricFamily("vesyncd_plug_relay_on", "1 when the relay is on, 0 when off.", labels=labels),
                GaugeMetricFamily("vesyncd_plug_power_watts", "Power drawn at the last reading.", labels=labels),
                GaugeMetricFamily("vesyncd_plug_voltage_volts", "Mains voltage at the last reading.", labels=labels),
                CounterMetricFamily("vesyncd_plug_energy_watt_hours", "Energy used over the plug's life.",
                                    labels=labels),
                GaugeMetricFamily("vesyncd_plug_rssi_dbm", "Wi-Fi signal strength reported by the plug.",
                                  labels=labels),
                GaugeMetricFamily("vesyncd_plug_last_seen_timestamp_seconds",
                                  "POSIX time the plug was last heard from.", labels=labels)]
    for row in rows:
        key = [row[0], row[1] or ""]
        for family, value in zip(families, row[2:]):
            if value is not None:
                family.add_metric(key, float(value))
    registry = type("Families", (), {"collect": lambda self: families})()
    return generate_latest(registry).decode("utf-8")


class PlugSeriesTextTests(unittest.TestCase):
    """The per-plug series are written as text by vesyncd; prometheus_client writes the same."""

    def test_sameTextAsTheLibrary(self) -> None:
        """Hostile aliases and ids (quotes, backslashes, newlines, braces, non-ASCII), missing values,
        booleans, odd floats: byte for byte what prometheus_client's families give, and parseable."""
        rows = [("plug-1", None, True, True, 12.5, 120.25, 1234.5678, -61, 1_700_000_000.123),
                ("plug-2", 'Kettle "big" \\ one\nline two', False, False, None, None, 0.0, None, None),
                ('id"}\\x', "Küche {öl} =,", True, None, 1e-7, 1e21, 3.0, 0, 1.0),
                ("plug-4", "", False, True, float("inf"), float("nan"), 2**53 + 1.0, -128, 0.5)]
        text = plugSeries(rows)
        self.assertEqual(text, libraryText(rows))
        parsed = {(s.name, s.labels["plug"]): s.labels["alias"]
                  for f in text_string_to_metric_families(text) for s in f.samples}
        self.assertEqual(parsed[("vesyncd_plug_up", "plug-2")], 'Kettle "big" \\ one\nline two')
        self.assertEqual(parsed[("vesyncd_plug_up", 'id"}\\x')], "Küche {öl} =,")

    def test_noPlugs(self) -> None:
        """Without plugs each family still says what it is, as the library writes it."""
        self.assertEqual(plugSeries([]), libraryText([]))


class PoolThreads:
    """A reactor's thread pool that runs its jobs only when told (L{runAll}); results come back at once."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def getThreadPool(self) -> "PoolThreads":
        return self

    def callInThreadWithCallback(self, onResult: Any, f: Any, *args: Any, **kw: Any) -> None:
        self.jobs.append((onResult, f, args, kw))

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def runAll(self) -> int:
        jobs, self.jobs = self.jobs, []
        for onResult, f, args, kw in jobs:
            try:
                onResult(True, f(*args, **kw))
            except Exception:
                onResult(False, Failure())
        return len(jobs)


class RenderInPoolTests(unittest.TestCase):
    """With a thread pool the text is made there, from figures read when the scrape arrived."""

    def families(self, body: bytes) -> dict[str, list]:
        out: dict[str, list] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out.setdefault(sample.name, []).append(sample)
        return out

    def test_figuresAreThoseOfTheScrapeTime(self) -> None:
        """The scrape waits for the pool; what changed in the hub meanwhile is not in it."""
        threads = PoolThreads()
        h = Harness(threads=threads)
        runtime(h.sessionB, True, watts=50.0)
        exchange = h.send("GET", "/metrics")
        self.assertIsNone(exchange.response())  # the text is not made on the reactor thread
        h.hub.rename(PLUG_B, "Toaster")
        runtime(h.sessionB, True, watts=900.0)
        self.assertEqual(threads.runAll(), 1)
        r = exchange.response()
        assert r is not None and r.complete
        self.assertEqual(r.status, 200)
        s = self.families(r.body)
        self.assertEqual(value(s["vesyncd_plug_power_watts"], plug=PLUG_B, alias="Kettle"), 50.0)
        self.assertEqual(threads.runAll(), 0)

    def test_scrapesWhileOneIsMadeShareIt(self) -> None:
        """Scrapes arriving while the text is being made get that text: one render at a time."""
        threads = PoolThreads()
        h = Harness(threads=threads)
        first, second = h.send("GET", "/metrics"), h.send("GET", "/metrics")
        self.assertEqual(len(threads.jobs), 1)
        threads.runAll()
        a, b = first.response(), second.response()
        assert a is not None and b is not None
        self.assertEqual((a.status, b.status), (200, 200))
        self.assertEqual(a.body, b.body)
        third = h.send("GET", "/metrics")  # the next scrape makes its own
        self.assertEqual(threads.runAll(), 1)
        self.assertEqual(third.response().status, 200)

    def test_aFailedRenderAnswersEveryWaitingScrape(self) -> None:
        """A render that raises answers each waiting scrape with a 500, and the next scrape renders again."""
        threads = PoolThreads()
        h = Harness(threads=threads)
        broken = [True]

        def render() -> bytes:
            if broken[0]:
                raise RuntimeError("broken collector")
            return b""

        h.app.registry.register(type("Later", (), {"read": lambda self: render})())
        first, second = h.send("GET", "/metrics"), h.send("GET", "/metrics")
        self.assertEqual(threads.runAll(), 1)
        self.assertEqual((first.response().status, second.response().status), (500, 500))
        self.flushLoggedErrors(RuntimeError)
        broken[0] = False
        third = h.send("GET", "/metrics")
        self.assertEqual(threads.runAll(), 1)
        self.assertEqual(third.response().status, 200)


class ReadInTurnsTests(unittest.TestCase):
    """The plugs' figures are read READ_PER_TURN plugs per reactor turn, into the same text."""

    def manyPlugs(self, count: int) -> tuple[Hub, task.Clock]:
        clock = task.Clock()
        clock.advance(1_700_000_000)
        known = [PlugState(id=f"p{i:05d}", alias=f"Plug {i}", relay=i % 2 == 0, power_w=float(i), voltage_v=120.0,
                           rssi_dbm=-40, last_seen=1_699_999_000.0 + i) for i in range(count)]
        return Hub(clock, known=known), clock

    def test_sameTextOverTurns(self) -> None:
        """2,500 plugs at 1,000 a turn: done on the third turn, with the very bytes of one read."""
        hub, _ = self.manyPlugs(2_500)
        metrics = Metrics(HubCollector(hub))
        clock = Turns()
        reading = metrics.readInTurns(clock)  # type: ignore[arg-type]
        turns = 0
        while not reading.called:
            clock.turn()
            turns += 1
        self.assertEqual(turns, 2)
        render = self.successResultOf(reading)
        self.assertEqual(render(), metrics.read()())
        self.assertEqual(render().count(b"vesyncd_plug_up{"), 2_500)

    def test_fewPlugsAtOnce(self) -> None:
        """Up to READ_PER_TURN plugs are read in the scrape's own turn."""
        hub, clock = self.manyPlugs(READ_PER_TURN)
        self.assertTrue(Metrics(HubCollector(hub)).readInTurns(clock).called)

    def test_aPlugForgottenMeanwhileIsLeftOut(self) -> None:
        """A plug forgotten between two turns, before its figures were read, is not in the text."""
        hub, _ = self.manyPlugs(2_500)
        clock = Turns()
        reading = Metrics(HubCollector(hub)).readInTurns(clock)  # type: ignore[arg-type]
        clock.turn()
        last = hub.plugsInPlace()[-1].id  # in the third turn's thousand
        hub.forget(last)
        clock.turn()
        text = self.successResultOf(reading)()
        self.assertNotIn(f'plug="{last}"'.encode(), text)
        self.assertEqual(text.count(b"vesyncd_plug_up{"), 2_499)

    def test_aCollectorFailingToReadFailsTheReading(self) -> None:
        """Another collector raising while it is read fails the whole reading."""
        hub, clock = self.manyPlugs(1_500)

        class Broken:
            def collect(self) -> Any:
                raise RuntimeError("broken collector")

        reading = Metrics(HubCollector(hub), Broken()).readInTurns(clock)
        clock.advance(0)
        self.failureResultOf(reading, RuntimeError)

    def test_aScrapeOverTurnsThroughTheWebApp(self) -> None:
        """GET /metrics with 2,503 plugs: nothing goes to the pool until the last turn has read its
        plugs, and the answer holds every plug."""
        threads = PoolThreads()
        h = Harness(threads=threads, settings=Settings(max_new_plugs_per_minute=5_000))
        for i in range(2_500):
            login(h.hub, f"wave-{i:04d}")
        exchange = h.send("GET", "/metrics")
        self.assertEqual(threads.jobs, [])  # 1,000 plugs read in the scrape's turn, the rest to come
        h.clock.advance(0)
        self.assertEqual(threads.runAll(), 1)
        r = exchange.response()
        assert r is not None and r.complete
        self.assertEqual(r.status, 200)
        self.assertEqual(len(self.families(r.body)["vesyncd_plug_up"]), 2_503)

    families = RenderInPoolTests.families


class ReadFailureTests(unittest.TestCase):
    """A collector that fails while the figures are read answers that scrape alone with an error."""

    def test_laterScrapesAreNotHeldUp(self) -> None:
        """The failing scrape gets a 500 at once; once the collector is gone the next scrape renders."""
        threads = PoolThreads()
        h = Harness(threads=threads)

        class Broken:
            def collect(self) -> Any:
                raise RuntimeError("broken collector")

        broken = Broken()
        h.app.registry.register(broken)
        self.assertEqual(h.request("GET", "/metrics").status, 500)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(threads.jobs, [])
        h.app.registry.collectors.remove(broken)
        exchange = h.send("GET", "/metrics")
        self.assertEqual(threads.runAll(), 1)
        self.assertEqual(exchange.response().status, 200)


class DaemonScrapeTests(unittest.TestCase):
    """The daemon as twistd builds it, on the real reactor: /metrics is made in its thread pool."""

    @defer.inlineCallbacks
    def test_scrapeOverHTTP(self) -> Any:
        """Three simulated plugs online; urllib with the token reads them as up."""
        import urllib.request

        from twisted.internet import reactor, threads

        from vesyncd import tap
        from vesyncd.paths import TOKEN_FILE
        from vesyncd.sim.runner import Simulator
        from tests.fakes import waitFor

        state = Path(self.mktemp())
        options = tap.Options()
        options.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--http", "tcp:0:interface=127.0.0.1",
                              "--state-dir", str(state), "--refresh-interval", "0", "--no-dns"])
        top = tap.makeService(options, reactor)
        top.startService()
        self.addCleanup(top.stopService)
        sim = Simulator(reactor, "127.0.0.1", top.plugListener.port.getHost().port, 3, firmware="1.89",
                        seed="metrics", speed=1.0)
        sim.start()
        self.addCleanup(sim.stop)
        yield defer.ensureDeferred(waitFor(lambda: all(top.hub.isOnline(p.id) for p in sim.plugs), what="logins"))
        port = top.context.info.listeners["http"].port.getHost().port
        token = (state / TOKEN_FILE).read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})

        def fetch() -> tuple[int, bytes]:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()

        status, body = yield threads.deferToThread(fetch)  # a blocking client while the reactor serves
        self.assertEqual(status, 200)
        up = {s.labels["plug"]: s.value for f in text_string_to_metric_families(body.decode())
              for s in f.samples if s.name == "vesyncd_plug_up"}
        self.assertEqual(up, {p.id: 1.0 for p in sim.plugs})
