"""
Plug-server scenarios: vesyncd against the plain-Python baseline (L{bench.peer_websockets}).

Each server runs pinned to CPU 0 (``taskset -c 0``); the load generators (L{bench.loadgen},
several processes, each from its own 127.0.0.N source address) run pinned to CPU 1.  One
*session* starts a fresh server and, in order:

1. connects N plugs at once: time until all are logged in, logins per second, failures;
   server memory per plug (VmRSS after - before, / N);
2. reconnect storm: every plug drops, the server closes them all, then all N reconnect at once
   (failed attempts retried at once and counted; ``TcpExt ListenOverflows`` before/after);
3. the real cadence (every plug a /ka every 180 s at a random phase, a /report 3 s after each
   /kr) for a window: /ka->/kr latency, nothing lost, server CPU;
4. CPU at 5,000 plugs each sending a /report every 3 s (plus their /ka), after one 3 s period of
   reports, over C{report_window} seconds (the full profile: one whole minute, so the daemon's
   once-a-minute work, the rollups and the "last seen" rows, counts once, as in the long run; a
   shorter window counts it fully or not at all, depending on where it falls);
5. /ka->/kr latency of 1,000 plugs at 1,000 messages/s in total, with all N connected (and,
   before step 1, with only those 1,000 connected: the target's condition);
6. saturation: 1,000 plugs each keeping 4 /ka in flight; /kr per second.  vesyncd limits every
   plug to FRAME_RATE frames/s, so for this benchmark it runs with the limit lifted
   (``--frame-rate 1e9``; the bucket is still evaluated on every frame);
7. soak with reconnect churn: plugs dropped and reconnected continuously; VmRSS sampled.

Sessions alternate A B A B; the figures are the medians over rounds with their spread.
Only loopback addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CORE = "0"
LOAD_CORE = "1"
PLUGS_PER_PROCESS = 4000
#: vesyncd's listen backlog (L{vesyncd.service.withBacklog}), given to the peer as well.
PEER_BACKLOG = 4096


def pinned(core: str, cmd: list[str]) -> list[str]:
    """C{cmd} run on CPU C{core} when taskset exists."""
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") else cmd


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listenOverflows() -> dict[str, int]:
    """TcpExt ListenOverflows and ListenDrops (system-wide counters) from /proc/net/netstat."""
    try:
        lines = open("/proc/net/netstat").read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {"ListenOverflows": table.get("ListenOverflows", 0), "ListenDrops": table.get("ListenDrops", 0)}
    return {}


def coreTimes() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat; busy counts user, system, irq and softirq."""
    out = {}
    for line in open("/proc/stat"):
        if line.startswith("cpu") and line[3].isdigit():
            name, *values = line.split()
            v = [int(x) for x in values]
            total = sum(v[:8])
            out[name[3:]] = (total - v[3] - v[4], total)
    return out


def coreBusy(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Percent busy of each CPU between two L{coreTimes} readings."""
    return {cpu: round((after[cpu][0] - before[cpu][0]) * 100 / max(1, after[cpu][1] - before[cpu][1]), 1)
            for cpu in after if cpu in before}


class Server:
    """One plug server process pinned to the server core."""

    def __init__(self, kind: str, *, frameRate: float | None = 1e9, control: bool = False,
                 tracemalloc: bool = False, experiments: tuple[str, ...] = (), backlog: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.port = freePort()
        self.stateDir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        if kind == "vesyncd":
            cmd = [sys.executable, "-m", "bench.serve_vesyncd", "--port", str(self.port), "--state-dir", self.stateDir]
            if frameRate is not None:
                cmd += ["--frame-rate", repr(frameRate)]
            if control:
                cmd.append("--control")
            if tracemalloc:
                cmd.append("--tracemalloc")
            for e in experiments:
                cmd += ["--experiment", e]
            cmd += list(extra)
        else:
            cmd = [sys.executable, "-m", "bench.peer_websockets", "--port", str(self.port)]
        if backlog:
            cmd += ["--backlog", str(backlog)]
        self.log = open(os.path.join(self.stateDir, "stderr.txt"), "w")
        self.proc = subprocess.Popen(pinned(SERVER_CORE, cmd), cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited at start: see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{kind} did not listen on port {self.port}")
        time.sleep(0.3)

    def rssKiB(self) -> int:
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpuSeconds(self) -> float:
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def heap(self, timeout: float = 30.0) -> dict[str, Any]:
        """vesyncd's heap and cyclic-GC figures (SIGUSR2, see L{bench.serve_vesyncd}); {} for the peer."""
        if self.kind != "vesyncd":
            return {}
        path = os.path.join(self.stateDir, "heap.json")
        if os.path.exists(path):
            os.remove(path)
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.05)
        return {}

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def pauseMonitor(self, on: bool) -> None:
        """Start (resetting its figures) or stop vesyncd's reactor-pause monitor (L{bench.pausemon})."""
        if self.kind == "vesyncd":
            os.kill(self.pid, signal.SIGRTMIN if on else signal.SIGRTMIN + 1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.stateDir, ignore_errors=True)


class Load:
    """Load generator processes pinned to the load core, N plugs split between them."""

    def __init__(self, port: int, total: int, seed: str = "bench", perProcess: int = PLUGS_PER_PROCESS,
                 loop: str = "asyncio") -> None:
        self.total = total
        n = max(1, math.ceil(total / perProcess))
        self.procs: list[subprocess.Popen] = []
        start = 0
        for i in range(n):
            count = total // n + (1 if i < total % n else 0)
            cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--count", str(count),
                   "--start", str(start), "--seed", seed, "--source", f"127.0.0.{2 + i}", "--lifetime", "1800", "--loop", loop]
            self.procs.append(subprocess.Popen(pinned(LOAD_CORE, cmd), cwd=ROOT, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, text=True))
            start += count
        for p in self.procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("a load generator did not start")

    def cpuSeconds(self) -> float:
        """CPU time of every generator process so far."""
        total = 0
        for p in self.procs:
            try:
                fields = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / TICKS

    def all(self, cmd: str, **kw: Any) -> list[dict[str, Any]]:
        """Send one command to every generator at once; their answers."""
        n = len(self.procs)
        for key in ("rate", "limit"):
            if key in kw and kw[key] is not None:
                kw[key] = kw[key] / n if key == "rate" else math.ceil(kw[key] / n)
        line = json.dumps({"cmd": cmd, **kw}) + "\n"
        for p in self.procs:
            p.stdin.write(line)
            p.stdin.flush()
        out = []
        for p in self.procs:
            text = p.stdout.readline()
            if not text:
                raise RuntimeError(f"a load generator died during {cmd}")
            out.append(json.loads(text))
        return out

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write('{"cmd": "quit"}\n')
                p.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def pct(samples: list[float]) -> dict[str, Any]:
    """p50/p99/p99.9/max in ms of latencies in seconds."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3)  # noqa: E731
    return {"n": len(s), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "p999_ms": pick(0.999),
            "max_ms": round(s[-1] * 1000, 3)}


def _overall(results: list[dict[str, Any]]) -> float:
    return max(r["t_end"] for r in results) - min(r["t0"] for r in results)


def waitForClose(srv: Server, fds0: int) -> None:
    """Until the server has closed the dropped connections (at most 30 s)."""
    deadline = time.monotonic() + 30
    while srv.fds() > fds0 + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


def connectAll(srv: Server, load: Load, p: dict[str, Any]) -> dict[str, Any]:
    """Every plug of C{load} connects at once: time, logins/s, failures, the server's and the
    generators' CPU per login, and how busy each core was meanwhile."""
    c0, l0, k0 = srv.cpuSeconds(), load.cpuSeconds(), coreTimes()
    r = load.all("connect", timeout=p["timeout"])
    cpu, lcpu, busy = srv.cpuSeconds() - c0, load.cpuSeconds() - l0, coreBusy(k0, coreTimes())
    took = _overall(r)
    online = sum(x["online"] for x in r)
    return {"seconds": round(took, 3), "per_s": round(online / took, 1), "online": online,
            "failures": sum(x["failures"] for x in r),
            "cpu_us_per_login": round(cpu * 1e6 / max(online, 1)),
            "load_cpu_us_per_login": round(lcpu * 1e6 / max(online, 1)),
            "server_core_busy_pct": busy.get(SERVER_CORE, 0.0),
            "load_core_busy_pct": busy.get(LOAD_CORE, 0.0)}


def kaLatency(srv: Server, load: Load, p: dict[str, Any], k: int) -> tuple[dict[str, Any], float, int]:
    """/ka->/kr latency of C{k} plugs at C{p['ka_rate']} msgs/s in total: (percentiles and, for
    vesyncd, the full cyclic-GC passes during the window and their longest pause; server CPU %;
    unanswered)."""
    h0 = srv.heap()
    c0, t0 = srv.cpuSeconds(), time.monotonic()
    r = load.all("ka", rate=float(p["ka_rate"]), seconds=p["window"], limit=k)
    cpu = (srv.cpuSeconds() - c0) / (time.monotonic() - t0) * 100
    lat = pct([s for x in r for s in x["samples"]])
    h1 = srv.heap()
    if h0 and h1:
        lat["gc_full_passes"] = h1["gc2_passes"] - h0["gc2_passes"]
        if lat["gc_full_passes"]:
            lat["gc_full_longest_ms"] = h1["gc2_longest_ms"]
        lat["gc_passes"] = sum(h1[f"gc{g}_passes"] - h0[f"gc{g}_passes"] for g in range(3))
    return lat, cpu, sum(x["unanswered"] for x in r)


def session(kind: str, p: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """One fresh server of C{kind} through every scenario; the figures of this run."""
    n = p["plugs"]
    res: dict[str, Any] = {"server": kind, "plugs": n}
    # The peer gets vesyncd's listen backlog, so both servers have the same kernel queue.
    srv = Server(kind, backlog=None if kind == "vesyncd" else PEER_BACKLOG)
    load = logins = None
    try:
        rss0 = srv.rssKiB()
        fds0 = srv.fds()
        # Two sets of generators: asyncio's loop for latency and throughput (its timers and
        # wake-ups are sub-millisecond; uvloop's are not, which showed as 8 ms /ka p99s against
        # both servers), uvloop for the login steps (half the client CPU per connection, so the
        # server core, not the client, sets the pace).
        load = Load(srv.port, n, loop="asyncio")
        # 0. /ka latency as the target states it: 1,000 plugs connected, 1,000 msgs/s in total
        k = min(n, 1000)
        if n > k:
            load.all("connect", timeout=p["timeout"], limit=k)
            lat, cpu, unanswered = kaLatency(srv, load, p, k)
            res["ka_latency_1k"] = {"plugs": k, "connected": k, "rate": p["ka_rate"], **lat,
                                    "cpu_pct": round(cpu, 2), "unanswered": unanswered}
            say(f"  {kind}: /ka->/kr with {k} plugs connected at {p['ka_rate']}/s: p50 {lat.get('p50_ms')} ms, "
                f"p99 {lat.get('p99_ms')} ms")
            load.all("drop")
            waitForClose(srv, fds0)
        # 1. connect all
        logins = Load(srv.port, n, loop="uvloop")
        login = res["login"] = connectAll(srv, logins, p)
        online, took = login["online"], login["seconds"]
        time.sleep(1.0)
        rss1 = srv.rssKiB()
        res["memory"] = {"rss_idle_kib": rss0, "rss_connected_kib": rss1,
                         "bytes_per_plug": round((rss1 - rss0) * 1024 / max(online, 1))}
        say(f"  {kind}: {online}/{n} logged in in {took:.2f} s ({online / took:.0f}/s), "
            f"{res['memory']['bytes_per_plug']} B/plug; cores busy: server {login['server_core_busy_pct']} %, "
            f"load {login['load_core_busy_pct']} %")
        # 2. reconnect storm
        logins.all("drop")
        waitForClose(srv, fds0)
        ovf0 = listenOverflows()
        storm = res["storm"] = connectAll(srv, logins, p)
        ovf1 = listenOverflows()
        storm["listen_overflows"] = ovf1.get("ListenOverflows", 0) - ovf0.get("ListenOverflows", 0)
        storm["listen_drops"] = ovf1.get("ListenDrops", 0) - ovf0.get("ListenDrops", 0)
        say(f"  {kind}: storm {storm['online']}/{n} back in {storm['seconds']:.2f} s, failures {storm['failures']}, "
            f"listen overflows {storm['listen_overflows']}")
        # the same N plugs again, from the asyncio generators
        logins.all("drop")
        waitForClose(srv, fds0)
        logins.close()
        logins = None
        r = load.all("connect", timeout=p["timeout"])
        if sum(x["online"] for x in r) < n:
            say(f"  {kind}: only {sum(x['online'] for x in r)}/{n} reconnected for the traffic steps")
        time.sleep(0.5)
        # 3. the real cadence
        c0, t0 = srv.cpuSeconds(), time.monotonic()
        r = load.all("cadence", seconds=p["window"], ka=180.0, report=0.0)
        cpu = (srv.cpuSeconds() - c0) / (time.monotonic() - t0) * 100
        res["cadence"] = {"cpu_pct": round(cpu, 2), "sent_ka": sum(x["sent_ka"] for x in r),
                          "unanswered": sum(x["unanswered"] for x in r), "lost": sum(x["lost"] for x in r),
                          "online": sum(x["online"] for x in r),
                          "p99_ms": max((x["latency"].get("p99_ms", 0) for x in r), default=0)}
        say(f"  {kind}: real cadence, {res['cadence']['online']} online, cpu {cpu:.1f} %, "
            f"unanswered {res['cadence']['unanswered']}, lost {res['cadence']['lost']}")
        # 4. CPU at 5,000 plugs reporting every 3 s, in the steady state: one period first, so a
        # plug's first report (which sets up what it keeps, once per plug) is not counted as the rest
        k = min(n, p["report_plugs"])
        load.all("cadence", seconds=3.0, ka=180.0, report=3.0, limit=k)
        c0, t0 = srv.cpuSeconds(), time.monotonic()
        r = load.all("cadence", seconds=p.get("report_window", p["window"]), ka=180.0, report=3.0, limit=k)
        cpu = (srv.cpuSeconds() - c0) / (time.monotonic() - t0) * 100
        reports = sum(x["sent_report"] for x in r)
        res["report_cpu"] = {"plugs": k, "cpu_pct": round(cpu, 2), "reports": reports,
                             "cpu_us_per_report": round(cpu / 100 * (time.monotonic() - t0) * 1e6 / max(reports, 1))}
        say(f"  {kind}: {k} plugs reporting every 3 s: cpu {cpu:.1f} % of one core over "
            f"{p.get('report_window', p['window']):g} s")
        # 5. /ka latency, 1,000 of the N plugs at 1,000 msgs/s
        k = min(n, 1000)
        lat, cpu, unanswered = kaLatency(srv, load, p, k)
        res["ka_latency"] = {"plugs": k, "connected": n, "rate": p["ka_rate"], **lat, "cpu_pct": round(cpu, 2),
                             "unanswered": unanswered}
        if "ka_latency_1k" not in res:
            res["ka_latency_1k"] = dict(res["ka_latency"])
        say(f"  {kind}: /ka->/kr {k} of {n} plugs at {p['ka_rate']}/s: p50 {lat.get('p50_ms')} ms, "
            f"p99 {lat.get('p99_ms')} ms")
        # 6. saturation
        c0, t0 = srv.cpuSeconds(), time.monotonic()
        r = load.all("flood", seconds=p["window"], window=4, limit=k)
        cpu = (srv.cpuSeconds() - c0) / (time.monotonic() - t0) * 100
        rate = sum(x["rate"] for x in r)
        res["saturation"] = {"plugs": k, "replies_per_s": round(rate), "cpu_pct": round(cpu, 1)}
        say(f"  {kind}: saturation {rate:.0f} replies/s (server cpu {cpu:.0f} %)")
        # 7. soak with churn
        if p["soak"] > 0:
            samples = []
            step = min(10.0, p["soak"])
            t0 = time.monotonic()
            while time.monotonic() - t0 < p["soak"]:
                load.all("churn", seconds=step, rate=p["churn_rate"])
                samples.append(srv.rssKiB())
            base = samples[0]
            res["soak"] = {"seconds": round(time.monotonic() - t0), "churn_per_s": p["churn_rate"],
                           "rss_kib": samples, "growth_kib": samples[-1] - base,
                           "growth_after_first_kib": samples[-1] - samples[min(1, len(samples) - 1)]}
            say(f"  {kind}: soak {res['soak']['seconds']} s churn {p['churn_rate']}/s: RSS {samples[0]} -> "
                f"{samples[-1]} KiB")
    finally:
        for generators in (logins, load):
            if generators is not None:
                generators.close()
        srv.stop()
    return res


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min, max and spread (%) of every numeric leaf over the runs of one server."""
    out: dict[str, Any] = {}

    def walk(prefix: str, docs: list[dict[str, Any]]) -> None:
        for key, value in docs[0].items():
            vals = [d.get(key) for d in docs]
            if isinstance(value, dict):
                walk(prefix + key + ".", [v for v in vals if isinstance(v, dict)])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                nums = [v for v in vals if isinstance(v, (int, float))]
                med = statistics.median(nums)
                out[prefix + key] = {"median": round(med, 3), "min": min(nums), "max": max(nums),
                                     "spread_pct": round((max(nums) - min(nums)) / med * 100, 1) if med else 0.0}

    walk("", runs)
    return out


def run(p: dict[str, Any], say: Callable[[str], None] = print) -> dict[str, Any]:
    """Alternate sessions of vesyncd and the websockets peer for C{p['rounds']} rounds."""
    runs: dict[str, list[dict[str, Any]]] = {"vesyncd": [], "websockets": []}
    for r in range(p["rounds"]):
        for kind in ("vesyncd", "websockets"):
            say(f"round {r + 1}/{p['rounds']} {kind} ({p['plugs']} plugs)")
            runs[kind].append(session(kind, p, say))
    return {"params": p, "runs": runs, "summary": {k: summarize(v) for k, v in runs.items()}}


#: Seconds of soak before the RSS is compared: the hub's liveness timers (60 s idle, offline
#: after 110 s) and the cancelled timers of dropped sessions reach their steady state by then.
SOAK_WARMUP = 120.0


def soak(seconds: float, plugs: int, churn: float, say: Callable[[str], None] = print,
         experiments: tuple[str, ...] = ()) -> dict[str, Any]:
    """vesyncd alone: N plugs, reconnect churn for C{seconds}, VmRSS every 10 s."""
    srv = Server("vesyncd", experiments=experiments)
    load = None
    try:
        rss0 = srv.rssKiB()
        load = Load(srv.port, plugs)
        load.all("connect", timeout=60)
        srv.pauseMonitor(True)  # the soak measures no CPU: the reactor's longest pause under churn
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        dropped = 0
        while time.monotonic() - t0 < seconds:
            dropped += sum(x["dropped"] for x in load.all("churn", seconds=min(10.0, seconds), rate=churn))
            samples.append((round(time.monotonic() - t0), srv.rssKiB()))
        third = max(1, len(samples) // 3)
        early = statistics.median(s for _, s in samples[:third])
        late = statistics.median(s for _, s in samples[-third:])
        warm = [s for t, s in samples if t >= min(SOAK_WARMUP, seconds / 3)] or [samples[-1][1]]
        result = {"plugs": plugs, "seconds": seconds, "churn_per_s": churn,
                  "reconnects": dropped, "reconnects_per_s": round(dropped / (time.monotonic() - t0), 1),
                  "rss_idle_kib": rss0,
                  "rss_samples": samples, "growth_kib": late - early,
                  "growth_pct": round((late - early) / early * 100, 2),
                  "warmup_s": min(SOAK_WARMUP, seconds / 3), "growth_after_warmup_kib": warm[-1] - warm[0],
                  "growth_after_warmup_pct": round((warm[-1] - warm[0]) / warm[0] * 100, 2),
                  "experiments": list(experiments)}
        h = srv.heap()
        result.update({"longest_pause_ms": h.get("pause_longest_ms"), "pauses_over_10ms": h.get("pause_over_10ms"),
                       "gc_passes": [h.get(f"gc{g}_passes") for g in range(3)],
                       "gc_longest_ms": [h.get(f"gc{g}_longest_ms") for g in range(3)], "gc_frozen": h.get("gc_frozen")})
        say(f"soak: {plugs} plugs, {seconds:.0f} s, churn {churn}/s ({dropped} reconnects): RSS first third {early} KiB, "
            f"last third {late} KiB ({result['growth_pct']:+.2f} %); after {result['warmup_s']:.0f} s of warm-up "
            f"{warm[0]} -> {warm[-1]} KiB ({result['growth_after_warmup_pct']:+.2f} %); longest reactor pause "
            f"{result['longest_pause_ms']} ms, gc passes {result['gc_passes']}")
        return result
    finally:
        if load is not None:
            load.close()
        srv.stop()
