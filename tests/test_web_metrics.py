"""Tests of /metrics: authentication and the Prometheus exposition read from the hub."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from tests.web_helpers import PLUG_A, PLUG_B, PLUG_C, Harness, runtime
from vesyncd.plugs import codec as m
from vesyncd.dns.answers import DNSCounters


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
