"""
The front ends at scale: vesyncd with N known plugs and their hourly history.

    python -m bench.frontends [--plugs 10000] [--days 365] [--cache DIR] [--no-mqtt] [--ha-plugs N] [--fill-only]

1. fills a state directory through L{vesyncd.storage.store.Store} (its public queue: C{putPlug},
   C{addReport}, C{flush}): N plugs (the ids the load generator uses, so they can connect later)
   and one report per plug and hour for C{--days} days (hourly history: the C{hours}, C{days} and
   C{months} rollups, and one raw row per hour).  Filling a year for 10,000 plugs is 87.6 million
   reports, so the filled directory is kept in C{--cache} (default
   C{/tmp/vesyncd-bench-frontends/N-plugs-Dd}) and reused by later runs;
2. database size: the filled database's bytes per plug and year of hourly history, and (measured on
   a small database filled at the real cadence, a report every 180 s) the bytes per plug-year of raw
   reports kept for the default 400-day retention;
3. daemon start-up to serving: from starting C{python -m bench.serve_vesyncd} (the service twistd
   builds) on that directory until C{GET /api/login} answers, against the same with an empty
   directory (the interpreter and imports alone);
4. C{vesyncctl list} wall time (the installed command, over the control socket) and its output lines;
5. C{GET /api/plugs} (first page, the default size) and C{?limit=1000}: time and bytes;
   C{GET /api/totals} (the dashboard's house figures), C{GET /api/cost} (the month's cost table)
   and C{GET /metrics} (every plug's series): time (and bytes), with, for each of these, the
   daemon's longest reactor pause meanwhile (L{bench.pausemon}; the plugs' answers wait that
   long); then the first C{/api/totals} and C{/api/cost} again in a daemon started with a
   time-of-use tariff (L{TOU_TARIFF}: every hour priced on its own);
6. MQTT against a loopback mosquitto: from the daemon's start, the time until its start-up publish
   (state and Home Assistant discovery for every known plug) stops growing, and the messages sent;
   then a Home Assistant restart (C{online} on C{homeassistant/status}) with C{--ha-plugs} of the
   plugs connected at the real cadence: time and messages of the republish, and the plugs' C{/ka}
   p99 during it against a quiet window of the same length.

Every figure is printed with its target; the last line is JSON.  Only loopback addresses; every
wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from bench.plugs import ROOT, SERVER_CORE, Load, freePort, pinned

TARGETS = {"startup_s": 3.0, "list_s": 1.0, "api_first_page_s": 1.0}
HOUR = 3600
#: The fill's "now": 2027-01-01T00:00Z; the history is the year (or C{days}) before it.
NOW = 1798761600.0


def dirBytes(path: Path) -> int:
    """Bytes of the database and its WAL / journal files."""
    return sum(f.stat().st_size for f in path.glob("vesyncd.sqlite3*"))


def fill(stateDir: Path, plugs: int, days: int, say: Callable[[str], None], reportEvery: int = HOUR) -> dict[str, Any]:
    """N plugs and C{days} of reports every C{reportEvery} s through the store's public queue."""
    from twisted.internet.task import Clock
    from zoneinfo import ZoneInfo

    from vesyncd.core.model import PlugState
    from vesyncd.paths import DATABASE
    from vesyncd.sim.plug import plugId
    from vesyncd.storage.store import Store
    from vesyncd.storage.runner import inlineRunner

    stateDir.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    clock.advance(NOW)
    store = Store.open(stateDir / DATABASE, ZoneInfo("UTC"), clock, run=inlineRunner)
    began = time.perf_counter()
    ids = [plugId("bench", i) for i in range(plugs)]
    start = NOW - days * 86400
    for i, pid in enumerate(ids):
        store.putPlug(PlugState(id=pid, alias=f"Plug {i:05d}", relay=i % 2 == 0, power_w=float(i % 2000),
                                voltage_v=120.0, firmware="1.89", device={"deviceName": "vesync_wifi_outlet"},
                                first_seen=start, last_seen=NOW - 60))
    store.flush()
    steps = days * 86400 // reportEvery
    rows = 0
    # Plug by plug: a batch then holds few days and months per plug, so the rollup upserts are few.
    for i, pid in enumerate(ids):
        for step in range(steps):
            store.addReport(pid, start + step * reportEvery + i % reportEvery, 600 * reportEvery // HOUR + step % 97,
                            reportEvery)
        rows += steps
        if plugs >= 100 and i % (plugs // 100) == 0:
            # Roll up as the daemon does (every minute, a slice of the raw rows): one rollup of a year
            # of 10,000 plugs (87.6 million rows, one GROUP BY) took over half an hour.
            store.flush()
        if plugs >= 10 and i % (plugs // 10) == 0:
            say(f"  fill: {i * 100 // plugs} % ({rows:,} reports, {time.perf_counter() - began:.0f} s)")
    store.flush()
    store.stop()
    took = time.perf_counter() - began
    size = dirBytes(stateDir)
    return {"plugs": plugs, "days": days, "report_every_s": reportEvery, "reports": rows,
            "fill_s": round(took, 1), "db_bytes": size,
            "db_bytes_per_plug_year": round(size / plugs * 365 / max(days, 1))}


def rawReportBytesPerPlugYear(say: Callable[[str], None]) -> dict[str, Any]:
    """Bytes per plug-year at the real cadence (a report every 180 s), from 20 plugs over 14 days."""
    with tempfile.TemporaryDirectory(prefix="vesyncd-dbsize-") as d:
        hourly = fill(Path(d) / "hourly", 20, 14, lambda s: None)
        real = fill(Path(d) / "real", 20, 14, lambda s: None, reportEvery=180)
    out = {"hourly_bytes_per_plug_year": hourly["db_bytes_per_plug_year"],
           "real_cadence_bytes_per_plug_year": real["db_bytes_per_plug_year"]}
    say(f"database per plug-year: {out['hourly_bytes_per_plug_year'] / 1e6:.2f} MB with one report an hour, "
        f"{out['real_cadence_bytes_per_plug_year'] / 1e6:.2f} MB at the real cadence (raw reports kept 400 days)")
    return out


class Daemon:
    """C{python -m bench.serve_vesyncd} on a state directory, with HTTP (and optionally MQTT) on loopback."""

    def __init__(self, stateDir: Path, mqttPort: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.stateDir = stateDir
        self.port, self.http = freePort(), freePort()
        #: The daemon's figures at the end of the last L{longestPause} window.
        self.lastFigures: dict[str, Any] = {}
        cmd = [sys.executable, "-m", "bench.serve_vesyncd", "--port", str(self.port), "--state-dir", str(stateDir),
               f"--daemon-arg=--http=tcp:{self.http}:interface=127.0.0.1", "--daemon-arg=--timezone=UTC",
               *(f"--daemon-arg={arg}" for arg in extra)]
        if mqttPort:
            cmd.append(f"--daemon-arg=--mqtt=mqtt://127.0.0.1:{mqttPort}")
        self.log = open(stateDir / "bench-stderr.txt", "w")
        self.began = time.monotonic()
        self.proc = subprocess.Popen(pinned(SERVER_CORE, cmd), cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.serving = self._waitServing()

    def _waitServing(self, timeout: float = 180.0) -> float:
        """Seconds from start until C{/api/login} answers (the reactor runs and serves)."""
        deadline = self.began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vesyncd exited at start: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/api/login", timeout=1) as r:
                    r.read()
                    return time.monotonic() - self.began
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("vesyncd did not serve HTTP in time")

    def get(self, path: str) -> tuple[float, bytes]:
        """Seconds and body of an authenticated GET."""
        token = (self.stateDir / "control.token").read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", headers={"Authorization": f"Bearer {token}"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:  # the old per-plug reads of a year took minutes
            body = r.read()
        return time.perf_counter() - t0, body

    def rssMB(self) -> float:
        """The daemon's resident memory (VmRSS) in MB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def longestPause(self, during: Callable[[], Any]) -> tuple[Any, float | None]:
        """C{during()}'s result and the daemon's longest reactor pause in ms while it ran (SIGRTMIN
        starts the monitor, SIGUSR2 writes its figures to C{heap.json}; see L{bench.serve_vesyncd})."""
        heap = self.stateDir / "heap.json"
        os.kill(self.proc.pid, signal.SIGRTMIN)
        time.sleep(0.3)
        result = during()
        heap.unlink(missing_ok=True)
        os.kill(self.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                figures = json.loads(heap.read_text())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        else:
            figures = {}
        os.kill(self.proc.pid, signal.SIGRTMIN + 1)
        # Let the stop be handled before anything starts the monitor again: Python runs pending signal
        # handlers in signal-number order, so a start (SIGRTMIN) sent right after this stop and found
        # pending with it would run first and the stop would switch the new window's monitor off.
        time.sleep(0.3)
        self.lastFigures = figures
        return result, figures.get("pause_longest_ms")

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 60 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def vesyncctlList(stateDir: Path, runs: int = 3) -> dict[str, Any]:
    """Median wall time of C{vesyncctl list} (a new process each time, as a user runs it) and its lines."""
    exe = shutil.which("vesyncctl", path=os.path.dirname(sys.executable)) or "vesyncctl"
    times, lines = [], 0
    for _ in range(runs):
        t0 = time.monotonic()
        try:
            out = subprocess.run([exe, "--state-dir", str(stateDir), "list"], capture_output=True, text=True,
                                 timeout=300)
        except subprocess.TimeoutExpired:
            return {"failed": "no answer within 300 s"}
        times.append(time.monotonic() - t0)
        if out.returncode != 0:
            return {"failed": out.stderr.strip()[-300:]}
        lines = out.stdout.count("\n")
    t0 = time.monotonic()
    subprocess.run([exe, "--version"], capture_output=True, timeout=60)
    return {"seconds": round(statistics.median(times), 3), "runs": [round(t, 3) for t in times], "lines": lines,
            "process_start_s": round(time.monotonic() - t0, 3)}


def apiPlugs(daemon: Daemon, runs: int = 5) -> dict[str, Any]:
    """First page (default size) and a 1,000-plug page of C{/api/plugs}: median time, bytes, plugs."""
    out: dict[str, Any] = {}
    for name, path in (("first_page", "/api/plugs"), ("page_1000", "/api/plugs?limit=1000"),
                       ("filtered", "/api/plugs?q=plug%20001&state=on")):
        times, body = [], b""
        for _ in range(runs):
            took, body = daemon.get(path)
            times.append(took)
        doc = json.loads(body)
        items = doc.get("plugs", doc) if isinstance(doc, dict) else doc
        out[name] = {"seconds": round(statistics.median(times), 4), "bytes": len(body), "plugs": len(items),
                     "total": doc.get("total") if isinstance(doc, dict) else None}
    return out


class Broker:
    """A private loopback mosquitto (no persistence) and a paho watcher counting messages by prefix."""

    def __init__(self) -> None:
        self.port = freePort()
        self.dir = tempfile.mkdtemp(prefix="vesyncd-bench-mqtt-")
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
                    "max_queued_messages 0\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.05)
        from paho.mqtt import client as pahoclient

        self.lock = threading.Lock()
        self.count = {"discovery": 0, "state": 0}
        self.last = self.lastDiscovery = time.monotonic()
        ready = threading.Event()
        self.client = pahoclient.Client(pahoclient.CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([("homeassistant/#", 0), ("vesyncd/#", 0)])
        self.client.on_subscribe = lambda c, u, mid, rc, p: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        ready.wait(10)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            discovery = msg.topic.startswith("homeassistant/")
            self.count["discovery" if discovery else "state"] += 1
            self.last = time.monotonic()
            if discovery:
                self.lastDiscovery = self.last

    def total(self) -> int:
        """Messages seen so far."""
        with self.lock:
            return sum(self.count.values())

    def settle(self, since: float, quiet: float = 2.0, timeout: float = 300.0, discovery: bool = False) -> float:
        """Wait until no message (with C{discovery}: no discovery message) came for C{quiet} s; seconds
        from C{since} to the last such message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                last = self.lastDiscovery if discovery else self.last
            if time.monotonic() - last >= quiet and last >= since:
                return last - since
            time.sleep(0.1)
        return float("nan")

    def close(self) -> None:
        """Stop the watcher and the broker."""
        self.client.loop_stop()
        self.client.disconnect()
        self.proc.kill()
        self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def mqtt(stateDir: Path, plugs: int, haPlugs: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Start-up publish and a Home Assistant restart against a loopback mosquitto."""
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        return {"skipped": "mosquitto is not installed"}
    broker = Broker()
    daemon = load = None
    try:
        t0 = time.monotonic()
        daemon = Daemon(stateDir, mqttPort=broker.port)
        startup = broker.settle(t0)
        res: dict[str, Any] = {"startup_publish_s": round(startup, 2), "startup_messages": dict(broker.count),
                               "rss_after_startup_publish_mb": daemon.rssMB()}
        say(f"  mqtt: start-up publish of {plugs} known plugs: {broker.total()} messages, last at {startup:.2f} s "
            f"after start; the daemon's RSS then {res['rss_after_startup_publish_mb']} MB")
        if haPlugs:
            load = Load(daemon.port, haPlugs)
            online = sum(x["online"] for x in load.all("connect", timeout=120))
            broker.settle(time.monotonic())
            quiet, quietPause = daemon.longestPause(lambda: load.all("cadence", seconds=10.0, ka=10.0, report=0.0))
            before = daemon.lastFigures
            n0, t1 = broker.total(), time.monotonic()
            broker.client.publish("homeassistant/status", "online")
            during, pause = daemon.longestPause(lambda: load.all("cadence", seconds=10.0, ka=10.0, report=0.0))
            # Full collector passes in the window, so that a long pause can be told from one.
            fullPasses = daemon.lastFigures.get("gc2_passes", 0) - before.get("gc2_passes", 0)
            took = broker.settle(t1, discovery=True)
            q = max(x["latency"].get("p99_ms", 0) for x in quiet)
            d = max(x["latency"].get("p99_ms", 0) for x in during)
            res["ha_restart"] = {"plugs_connected": online, "seconds": round(took, 2), "messages": broker.total() - n0,
                                 "ka_p99_quiet_ms": q, "ka_p99_during_ms": d,
                                 "longest_pause_quiet_ms": quietPause, "longest_pause_during_ms": pause,
                                 "full_collector_passes_during": fullPasses,
                                 "unanswered": sum(x["unanswered"] for x in during)}
            say(f"  mqtt: Home Assistant restart with {online} plugs connected: {res['ha_restart']['messages']} "
                f"messages, discovery done in {took:.2f} s; /ka p99 {d} ms (quiet {q} ms; target <= 2x quiet); "
                f"the daemon's longest reactor pause {pause} ms (quiet {quietPause} ms), "
                f"full collector passes meanwhile {fullPasses}")
        return res
    finally:
        if load is not None:
            load.close()
        if daemon is not None:
            daemon.stop()
        broker.close()


#: A tariff with three prices on weekdays and one at weekends, for the priced reads.
TOU_TARIFF = """currency = "EUR"

[[tariff]]
daily-charge = 0.35
  [[tariff.window]]
  days = "mon-fri"
  from = "07:00"
  to = "22:00"
  price-kwh = 0.34
  [[tariff.window]]
  days = "mon-fri"
  from = "22:00"
  to = "07:00"
  price-kwh = 0.22
  [[tariff.window]]
  days = "sat,sun"
  from = "07:00"
  to = "07:00"
  price-kwh = 0.25
"""


def houseCost(daemon: Daemon, label: str, say: Callable[[str], None]) -> dict[str, Any]:
    """C{GET /api/cost} (this month's energy and cost of every plug), its time and the longest reactor
    pause meanwhile."""
    (took, body), pause = daemon.longestPause(lambda: daemon.get("/api/cost"))
    lines = len(json.loads(body).get("plugs", []))
    say(f"  {label}: GET /api/cost (this month, every plug): {took * 1000:.0f} ms, {lines} plugs; longest reactor "
        f"pause meanwhile {pause} ms")
    return {"seconds": round(took, 3), "plugs": lines, "longest_pause_ms": pause}


def metrics(daemon: Daemon, runs: int = 3) -> dict[str, Any]:
    """C{GET /metrics} C{runs} times: median time, bytes, series, and the longest reactor pause meanwhile."""
    def scrapes() -> tuple[list[float], bytes]:
        times, body = [], b""
        for _ in range(runs):
            took, body = daemon.get("/metrics")
            times.append(took)
        return times, body

    (times, body), pause = daemon.longestPause(scrapes)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {"seconds": round(statistics.median(times), 3), "bytes": len(body), "series": series,
            "longest_pause_ms": pause}


def measure(plugs: int, days: int, say: Callable[[str], None] = print, cache: str | None = None,
            withMqtt: bool = True, haPlugs: int | None = None, fillOnly: bool = False) -> dict[str, Any]:
    """Every front-end figure for C{plugs} known plugs with C{days} of hourly history."""
    stateDir = Path(cache or tempfile.gettempdir()) / ("vesyncd-bench-frontends" if not cache else "") / \
        f"{plugs}-plugs-{days}d"
    res: dict[str, Any] = {"plugs": plugs, "days": days, "targets": TARGETS, "state_dir": str(stateDir)}
    marker = stateDir / "filled.json"
    if marker.exists():
        res["fill"] = json.loads(marker.read_text())
        say(f"frontends: reusing {stateDir} ({res['fill']['reports']:,} reports)")
    else:
        shutil.rmtree(stateDir, ignore_errors=True)
        say(f"frontends: filling {stateDir}: {plugs} plugs, {days} days of hourly reports")
        res["fill"] = fill(stateDir, plugs, days, say)
        marker.write_text(json.dumps(res["fill"]))
    say(f"  database: {res['fill']['db_bytes'] / 1e6:.1f} MB, {res['fill']['db_bytes_per_plug_year'] / 1e3:.0f} kB "
        f"per plug-year of hourly history")
    if fillOnly:
        return res
    res["db_size"] = rawReportBytesPerPlugYear(say)
    with tempfile.TemporaryDirectory(prefix="vesyncd-bench-empty-") as empty:
        base = Daemon(Path(empty))
        base.stop()
    daemon = Daemon(stateDir)
    try:
        res["startup"] = {"seconds": round(daemon.serving, 3), "empty_state_s": round(base.serving, 3),
                          "target_s": TARGETS["startup_s"]}
        say(f"  start-up to serving with {plugs} plugs: {daemon.serving:.2f} s (empty state {base.serving:.2f} s; "
            f"target <= {TARGETS['startup_s']:g} s)")
        res["list"] = vesyncctlList(stateDir)
        say(f"  vesyncctl list: {res['list'].get('seconds')} s, {res['list'].get('lines')} lines "
            f"(the bare process start {res['list'].get('process_start_s')} s; target <= {TARGETS['list_s']:g} s)")
        res["api"], pause = daemon.longestPause(lambda: apiPlugs(daemon))
        res["api_longest_pause_ms"] = pause
        say(f"  GET /api/plugs: longest reactor pause over the {len(res['api'])} x 5 requests {pause} ms")
        for name, fig in res["api"].items():
            say(f"  GET /api/plugs {name}: {fig['seconds'] * 1000:.1f} ms, {fig['bytes']:,} B, {fig['plugs']} plugs "
                f"of {fig['total']} (target <= {TARGETS['api_first_page_s']:g} s)")
        (took, body), pause = daemon.longestPause(lambda: daemon.get("/api/totals"))
        res["totals"] = {"seconds": round(took, 3), "longest_pause_ms": pause}
        say(f"  GET /api/totals (the dashboard's house figures, every plug's periods): {took * 1000:.0f} ms; "
            f"longest reactor pause meanwhile {pause} ms")
        res["cost"] = houseCost(daemon, "no tariff", say)
        res["metrics"] = fig = metrics(daemon)
        say(f"  GET /metrics: {fig['seconds'] * 1000:.0f} ms, {fig['bytes']:,} B, {fig['series']:,} series; longest "
            f"reactor pause meanwhile {fig['longest_pause_ms']} ms")
    finally:
        daemon.stop()
    # The same reads priced by a time-of-use tariff: every hour of the year has its own price.
    with tempfile.TemporaryDirectory(prefix="vesyncd-bench-tariff-") as tmp:
        config = Path(tmp) / "tariff.toml"
        config.write_text(TOU_TARIFF)
        daemon = Daemon(stateDir, extra=(f"--config={config}",))
        try:
            (took, body), pause = daemon.longestPause(lambda: daemon.get("/api/totals"))
            res["tou_totals"] = {"seconds": round(took, 3), "longest_pause_ms": pause}
            say(f"  time-of-use tariff: first GET /api/totals {took * 1000:.0f} ms; longest reactor pause meanwhile "
                f"{pause} ms")
            res["tou_cost"] = houseCost(daemon, "time-of-use tariff", say)
        finally:
            daemon.stop()
    if withMqtt:
        res["mqtt"] = mqtt(stateDir, plugs, min(plugs, haPlugs if haPlugs is not None else plugs), say)
    return res


def main(argv: list[str] | None = None) -> int:
    """Command line: the figures, then one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.frontends", description=__doc__.split("\n\n")[0])
    p.add_argument("--plugs", type=int, default=10_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--cache", help="directory for the filled state (kept between runs)")
    p.add_argument("--no-mqtt", action="store_true")
    p.add_argument("--fill-only", action="store_true", help="fill (or check) the cached state directory and stop")
    p.add_argument("--ha-plugs", type=int, default=None, help="plugs connected during the HA restart (default: all)")
    args = p.parse_args(argv)
    res = measure(args.plugs, args.days, cache=args.cache, withMqtt=not args.no_mqtt, haPlugs=args.ha_plugs,
                  fillOnly=args.fill_only)
    print(json.dumps({"bench": "frontends", **res}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
