"""
vesyncd's benchmarks: ``python -m bench`` (= ``make bench``).

    python -m bench            short profile (~5 minutes): 2,000 plugs, 2 rounds
    python -m bench --full     full profile: 10,000 plugs, 3 rounds, 10-minute soak
    python -m bench --smoke    does the harness run? (~30 s, tiny N; the figures mean nothing)
    python -m bench --only pauses --only frontends    the reactor's longest pause; the front ends at scale
    python -m bench --only scaleout    three nodes on PostgreSQL: routed commands, failover, write load
    python -m bench --only dashboard   the dashboard with 1,000 plugs in headless Chromium

Servers run pinned to CPU 0, load generators to CPU 1 (see L{bench.plugs}).  Prints one line
per step, a table of figures against the targets, and ONE JSON line of results (with the
machine: cores, Python, library versions) as the last line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from typing import Any, Callable

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"plugs": 300, "rounds": 1, "timeout": 30, "window": 2.0, "report_plugs": 5000, "ka_rate": 1000,
              "soak": 0, "churn_rate": 20,
              "control": {"plugs": 200, "latencyOps": 100, "seconds": 2.0, "rounds": 1},
              "dns": ["--rounds", "1", "--seconds", "2"], "long_soak": 0,
              "pauses": {"plugs": 300, "seconds": 5}, "frontends": {"plugs": 300, "days": 7},
              "dashboard": {"plugs": 100, "idle": 3}},
    "short": {"plugs": 2000, "rounds": 2, "timeout": 30, "window": 3.0, "report_plugs": 5000, "ka_rate": 1000,
              "soak": 6, "churn_rate": 20,
              "control": {"plugs": 2000, "latencyOps": 500, "seconds": 3.0, "rounds": 1},
              "dns": ["--rounds", "2", "--seconds", "3"], "long_soak": 0,
              "pauses": {"plugs": 2000, "seconds": 30}, "frontends": {"plugs": 2000, "days": 30},
              "dashboard": {"plugs": 1000, "idle": 10}},
    "full": {"plugs": 10000, "rounds": 3, "timeout": 60, "window": 15.0, "report_window": 60.0, "report_plugs": 5000,
             "ka_rate": 1000,
             "soak": 0, "churn_rate": 50,
             "control": {"plugs": 10000, "latencyOps": 2000, "seconds": 10.0, "rounds": 3},
             "dns": ["--full"], "long_soak": 600,
             "pauses": {"plugs": 10000, "seconds": 600}, "frontends": {"plugs": 10000, "days": 365},
             "dashboard": {"plugs": 1000, "idle": 30}},
}

KIB14 = 14 * 1024


def machine() -> dict[str, Any]:
    """Cores, CPU model, kernel, Python and library versions."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "implementation": platform.python_implementation(), "kernel": platform.release()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("vesyncd", "Twisted", "autobahn", "txaio", "websockets", "cryptography"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    from twisted.internet import epollreactor  # noqa: F401 - the reactor the servers use

    info["reactor"] = "epoll"
    try:
        info["load_avg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def med(summary: dict[str, Any], key: str) -> Any:
    entry = summary.get(key)
    return entry["median"] if entry else None


def spread(summary: dict[str, Any], key: str) -> Any:
    entry = summary.get(key)
    return entry["spread_pct"] if entry else None


def table(plugs: dict[str, Any] | None, control: dict[str, Any] | None, dns: dict[str, Any] | None,
          soak: dict[str, Any] | None, pauses: dict[str, Any] | None = None,
          frontends: dict[str, Any] | None = None, dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows: what, vesyncd, peer, ratio, target, verdict."""
    rows: list[dict[str, Any]] = []

    def row(what: str, ours: Any, peer: Any = None, target: str = "", ok: bool | None = None,
            ratio: Any = None, note: str = "") -> None:
        rows.append({"what": what, "vesyncd": ours, "peer": peer, "ratio": ratio, "target": target,
                     "ok": ok, "note": note})

    if plugs:
        v, w = plugs["summary"]["vesyncd"], plugs["summary"]["websockets"]
        n = plugs["params"]["plugs"]
        big = n >= 10000

        def both(key: str) -> tuple[Any, Any]:
            return med(v, key), med(w, key)

        a, b = both("login.per_s")
        row(f"logins/s ({n} plugs at once)", a, b, "ahead of peer (10,000)",
            (a is not None and b is not None and a >= b) if big else None,
            round(a / b, 2) if a and b else None, f"spread {spread(v, 'login.per_s')}% / {spread(w, 'login.per_s')}%")
        a, b = both("login.seconds")
        row(f"time to {n} logged in (s)", a, b, "", None, None,
            f"cores busy: server {med(v, 'login.server_core_busy_pct')} / {med(w, 'login.server_core_busy_pct')} %,"
            f" load {med(v, 'login.load_core_busy_pct')} / {med(w, 'login.load_core_busy_pct')} %")
        a, b = both("storm.cpu_us_per_login")
        row("server cpu per login, storm (us)", a, b, "", None, round(a / b, 2) if a and b else None,
            f"first connect {med(v, 'login.cpu_us_per_login')} / {med(w, 'login.cpu_us_per_login')} us")
        a, b = both("storm.seconds")
        fails = med(v, "storm.failures")
        row(f"reconnect storm {n} plugs (s)", a, b, "<= 5 s, 0 failures (10,000)",
            (a is not None and a <= 5 and fails == 0) if big else None, None,
            f"failures {fails} / {med(w, 'storm.failures')}; listen overflows {med(v, 'storm.listen_overflows')}"
            f" / {med(w, 'storm.listen_overflows')}")
        a, b = both("cadence.online")
        un = med(v, "cadence.unanswered"), med(v, "cadence.lost")
        row("plugs held at real cadence", a, b, ">= 10,000, none lost",
            (a is not None and a >= 10000 and un == (0, 0)) if big else None, None,
            f"unanswered {un[0]}, lost {un[1]}; server cpu {med(v, 'cadence.cpu_pct')} % / {med(w, 'cadence.cpu_pct')} %")
        a, b = both("memory.bytes_per_plug")
        row("memory per connected plug (B)", a, b, "<= 14 KiB", a is not None and a <= KIB14,
            round(a / b, 2) if a and b else None, f"spread {spread(v, 'memory.bytes_per_plug')}%")
        kr, kp = plugs["params"]["ka_rate"], med(v, "ka_latency_1k.plugs") or 0
        a, b = both("ka_latency_1k.p50_ms")
        row(f"/ka->/kr p50 ms ({kp:,.0f} plugs, {kr}/s)", a, b)
        a, b = both("ka_latency_1k.p99_ms")
        row(f"/ka->/kr p99 ms ({kp:,.0f} plugs, {kr}/s)", a, b, "<= 1.0x peer (was <= 1 ms)",
            (a <= b) if a is not None and b and kp >= 1000 else None,
            round(a / b, 2) if a and b else None, f"spread {spread(v, 'ka_latency_1k.p99_ms')}% / {spread(w, 'ka_latency_1k.p99_ms')}%")
        a, b = both("ka_latency_1k.p999_ms")
        if a is not None:
            row(f"/ka->/kr p99.9 ms ({kp:,.0f} plugs, {kr}/s)", a, b, "<= 1.0x peer",
                (a <= b) if b and kp >= 1000 else None, round(a / b, 2) if a and b else None)
        if n > 1000:
            a, b = both("ka_latency.p50_ms")
            row(f"/ka->/kr p50 ms (1,000 of {n} plugs, {kr}/s)", a, b)
            a, b = both("ka_latency.p99_ms")
            row(f"/ka->/kr p99 ms (1,000 of {n} plugs, {kr}/s)", a, b, "<= 1.0x peer", (a <= b) if a and b else None,
                round(a / b, 2) if a and b else None,
                f"spread {spread(v, 'ka_latency.p99_ms')}% / {spread(w, 'ka_latency.p99_ms')}%")
            a, b = both("ka_latency.p999_ms")
            if a is not None:
                row(f"/ka->/kr p99.9 ms (1,000 of {n} plugs, {kr}/s)", a, b, "<= 1.0x peer",
                    (a <= b) if b else None, round(a / b, 2) if a and b else None)
        k = med(v, "report_cpu.plugs")
        a, b = both("report_cpu.cpu_pct")
        row(f"cpu, {k} plugs reporting every 3 s (% core)", a, b, "<= 1.2x peer at 5,000",
            (a is not None and b is not None and a <= 1.2 * b) if k and k >= 5000 else None,
            round(a / b, 2) if a and b else None,
            f"{med(v, 'report_cpu.cpu_us_per_report')} / {med(w, 'report_cpu.cpu_us_per_report')} us per report"
            " (vesyncd persists to SQLite)")
        a, b = both("saturation.replies_per_s")
        ca, cb = both("saturation.cpu_pct")
        row(f"saturation /kr per s ({med(v, 'saturation.plugs'):.0f} plugs)", a, b, "", None, round(a / b, 2) if a and b else None,
            f"server cpu {ca} % / {cb} % (the one-core generator limits both)")
        if a and b and ca and cb:
            pa, pb = a / (ca / 100), b / (cb / 100)
            row("saturation /kr per server cpu-second", round(pa), round(pb), ">= 1.0x peer", pa >= pb,
                round(pa / pb, 2))
        if med(v, "soak.growth_kib") is not None:
            row("short soak RSS growth (KiB)", med(v, "soak.growth_kib"), med(w, "soak.growth_kib"))
    if soak:
        row(f"soak {soak['seconds']:.0f} s, churn {soak['churn_per_s']}/s: RSS growth (KiB)",
            soak["growth_after_warmup_kib"], None, "no growth (< 1 %)", soak["growth_after_warmup_pct"] < 1.0, None,
            f"{soak['growth_after_warmup_pct']} % after {soak['warmup_s']:.0f} s warm-up; first vs last third "
            f"{soak['growth_kib']} KiB ({soak['growth_pct']} %)")
        if soak.get("longest_pause_ms") is not None:
            row(f"soak: longest reactor pause ms (churn {soak['churn_per_s']}/s)", soak["longest_pause_ms"], None, "",
                None, None, f"{soak['pauses_over_10ms']} over 10 ms; gc passes {soak['gc_passes']}, longest "
                f"{soak['gc_longest_ms']} ms; frozen {soak['gc_frozen']}")
    if pauses:
        big = pauses["plugs"] >= 10000
        a = pauses["longest_pause_ms"]
        row(f"longest reactor pause ms ({pauses['online']} plugs, {pauses['seconds']} s)", a, None,
            "<= 10 ms (10,000, 10 min)", (a is not None and a <= 10) if big and pauses["seconds"] >= 600 else None, None,
            f"{pauses['over_10ms']} over 10 ms; gc passes {pauses['gc_passes_in_run']}; lost {pauses['lost']}")
    if frontends:
        rowsFrontends(frontends, row)
    if dashboard:
        from . import dashboard as dashBench

        for what, value, target, ok, note in dashBench.rows(dashboard):
            row(what, value, None, target, ok, None, note)
    if control and not control.get("skipped"):
        runs = control["runs"]
        p99 = sorted(r.get("latency", {}).get("p99_ms", 0) for r in runs)
        p50 = sorted(r.get("latency", {}).get("p50_ms", 0) for r in runs)
        rate = sorted(r.get("throughput", {}).get("per_s", 0) for r in runs)
        mid = lambda xs: xs[len(xs) // 2]  # noqa: E731
        row(f"control switch->confirmed p50 ms ({control['online']} plugs)", mid(p50))
        row(f"control switch->confirmed p99 ms ({control['online']} plugs)", mid(p99), None,
            "<= 10 ms at 10,000", (mid(p99) <= 10) if control["plugs"] >= 10000 else None, None, f"runs {p99}")
        row("control commands/s", mid(rate), None, ">= 2,000", mid(rate) >= 2000, None, f"runs {rate}")
    elif control:
        row("control", None, None, "", None, None, control["skipped"])
    if dns and not dns.get("skipped"):
        row("DNS queries/s (vs dnsmasq)", dns["vesyncd"]["median_qps"], dns["dnsmasq"]["median_qps"],
            ">= 0.3x dnsmasq", dns["ratio_of_medians"] >= 0.3, dns["ratio_of_medians"],
            f"spread {dns['vesyncd']['spread_pct']}% / {dns['dnsmasq']['spread_pct']}%")
    elif dns:
        row("DNS", None, None, "", None, None, dns.get("skipped", ""))
    return rows


def rowsFrontends(fe: dict[str, Any], row: Callable[..., None]) -> None:
    """The front-end rows (L{bench.frontends}): targets apply at 10,000 plugs with a year of history."""
    n, days = fe["plugs"], fe["days"]
    big = n >= 10000 and days >= 365
    st = fe.get("startup", {})
    if st:
        row(f"start-up to serving s ({n} plugs, {days} d hourly)", st["seconds"], None, "<= 3 s (10,000, a year)",
            st["seconds"] <= 3.0 if big else None, None, f"empty state {st['empty_state_s']} s")
    ls = fe.get("list", {})
    if "failed" in ls:
        row(f"vesyncctl list s ({n} plugs)", None, None, "<= 1 s at 10,000", False if n >= 10000 else None, None,
            f"failed: {ls['failed']}")
    if "seconds" in ls:
        row(f"vesyncctl list s ({n} plugs)", ls["seconds"], None, "<= 1 s at 10,000",
            ls["seconds"] <= 1.0 if n >= 10000 else None, None,
            f"{ls['lines']} lines; a bare vesyncctl process {ls['process_start_s']} s")
    api = fe.get("api", {})
    if api:
        first = api["first_page"]
        row(f"/api/plugs first page ms ({n} plugs)", round(first["seconds"] * 1000, 1), None, "<= 1 s, paginated",
            first["seconds"] <= 1.0 and first["plugs"] < n if n >= 10000 else None, None,
            f"{first['bytes']:,} B, {first['plugs']} of {first['total']}; 1,000: {api['page_1000']['seconds'] * 1000:.0f} ms "
            f"{api['page_1000']['bytes']:,} B")
    mq = fe.get("mqtt", {})
    if mq.get("skipped"):
        row("MQTT", None, None, "", None, None, mq["skipped"])
    elif mq:
        msgs = mq["startup_messages"]
        row(f"MQTT start-up publish s ({n} known plugs)", mq["startup_publish_s"], None, "", None, None,
            f"{msgs['discovery']:,} discovery + {msgs['state']:,} state messages")
        ha = mq.get("ha_restart")
        if ha:
            q, d = ha["ka_p99_quiet_ms"], ha["ka_p99_during_ms"]
            row(f"HA restart: /ka p99 ms ({ha['plugs_connected']} plugs)", d, None, "<= 2x quiet (10,000)",
                (d <= 2 * q) if n >= 10000 and q else None, None,
                f"quiet {q} ms; republish {ha['messages']:,} messages in {ha['seconds']} s; unanswered {ha['unanswered']}")
    db = fe.get("db_size")
    if db:
        row("database MB per plug-year (hourly / real cadence)", round(db["hourly_bytes_per_plug_year"] / 1e6, 2),
            None, "", None, None, f"real cadence (a report every 180 s, raw kept 400 d): "
            f"{db['real_cadence_bytes_per_plug_year'] / 1e6:.1f} MB")


def printTable(rows: list[dict[str, Any]]) -> None:
    verdict = {True: "MEETS", False: "MISSES", None: ""}
    print()
    print(f"{'measure':48s} {'vesyncd':>11s} {'peer':>11s} {'ratio':>6s}  {'target':28s} {'':6s} note")
    for r in rows:
        def fmt(x: Any) -> str:
            if x is None:
                return ""
            if isinstance(x, float):
                return str(int(x)) if x.is_integer() else (f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}")
            return str(x)

        print(f"{r['what'][:48]:48s} {fmt(r['vesyncd']):>11s} {fmt(r['peer']):>11s} {fmt(r['ratio']):>6s}  "
              f"{r['target'][:28]:28s} {verdict[r['ok']]:6s} {r['note']}")
    print()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--full", action="store_true", help="the full profile (10,000 plugs, 10-minute soak)")
    g.add_argument("--smoke", action="store_true", help="check that the harness runs (~30 s)")
    p.add_argument("--plugs", type=int, help="plugs per session (overrides the profile)")
    p.add_argument("--rounds", type=int, help="rounds of A B (overrides the profile)")
    p.add_argument("--only", action="append", choices=["plugs", "control", "dns", "store", "soak", "pauses", "frontends",
                                                       "dashboard", "scaleout"],
                   help="run only these parts (repeatable; scaleout, three nodes on PostgreSQL, runs only when named)")
    args = p.parse_args(argv)
    name = "full" if args.full else "smoke" if args.smoke else "short"
    prof = dict(PROFILES[name])
    if args.plugs:
        prof["plugs"] = args.plugs
    if args.rounds:
        prof["rounds"] = args.rounds
    parts = set(args.only or ["plugs", "control", "dns", "store", "soak", "pauses", "frontends", "dashboard"])
    if not args.only and not prof["long_soak"]:
        parts.discard("soak")
    t0 = time.monotonic()
    say = lambda s: print(s, flush=True)  # noqa: E731
    result: dict[str, Any] = {"bench": "vesyncd", "profile": name, "machine": machine()}
    say(f"bench profile {name}: {json.dumps(result['machine'])}")

    from . import control as controlBench
    from . import plugs as plugBench

    plugRes = controlRes = dnsRes = soakRes = pauseRes = frontRes = None
    if "plugs" in parts:
        say("== plug servers: vesyncd vs websockets peer (A B A B)")
        plugRes = plugBench.run({k: prof[k] for k in ("plugs", "rounds", "timeout", "window", "report_window",
                                                       "report_plugs", "ka_rate", "soak", "churn_rate") if k in prof}, say)
        result["plugs"] = {"params": plugRes["params"], "summary": plugRes["summary"], "runs": plugRes["runs"]}
    if "control" in parts:
        say("== control round trip")
        c = prof["control"]
        try:
            controlRes = controlBench.measure(c["plugs"], rounds=c["rounds"], latencyOps=c["latencyOps"],
                                              seconds=c["seconds"], say=say)
        except Exception as e:  # noqa: BLE001 - report and go on with the other parts
            controlRes = {"bench": "control", "skipped": f"failed: {e}"}
            say(f"control: failed: {e}")
        result["control"] = controlRes
    if "soak" in parts and (prof["long_soak"] or args.only):
        seconds = prof["long_soak"] or 60
        say(f"== soak: vesyncd, {prof['plugs']} plugs, {seconds} s of reconnect churn")
        soakRes = plugBench.soak(seconds, prof["plugs"], prof["churn_rate"], say)
        result["soak"] = soakRes
    if "pauses" in parts:
        pp = dict(prof["pauses"], plugs=args.plugs or prof["pauses"]["plugs"])
        say(f"== reactor pauses: vesyncd, {pp['plugs']} plugs, {pp['seconds']} s at the real cadence")
        from . import pauses as pauseBench

        try:
            pauseRes = pauseBench.measure(pp["plugs"], pp["seconds"], say)
        except Exception as e:  # noqa: BLE001 - report and go on with the other parts
            say(f"pauses: failed: {e}")
        result["pauses"] = pauseRes
    if "frontends" in parts:
        fp = dict(prof["frontends"], plugs=args.plugs or prof["frontends"]["plugs"])
        say(f"== front ends: {fp['plugs']} known plugs, {fp['days']} days of hourly history")
        from . import frontends as frontBench

        try:
            frontRes = frontBench.measure(fp["plugs"], fp["days"], say)
        except Exception as e:  # noqa: BLE001
            say(f"frontends: failed: {e}")
        result["frontends"] = frontRes
    if "dashboard" in parts:
        say(f"== dashboard: {prof['dashboard']['plugs']} plugs in headless Chromium (bench.dashboard)")
        from . import dashboard as dashBench

        try:
            dashRes = dashBench.run(prof["dashboard"]["plugs"], idle=prof["dashboard"]["idle"], say=say)
        except Exception as e:  # noqa: BLE001 - report and go on with the other parts
            dashRes = {"bench": "dashboard", "skipped": f"failed: {e}"}
            say(f"dashboard: failed: {e}")
        result["dashboard"] = dashRes
    if "scaleout" in parts:
        say("== scale-out: three nodes on PostgreSQL and mosquitto (bench.scaleout)")
        import subprocess

        # Its own process: it runs (and so ends) a reactor of its own.
        proc = subprocess.run([sys.executable, "-m", "bench.scaleout", *(["--full"] if name == "full" else [])],
                              capture_output=True, text=True, timeout=1800)
        lines = proc.stdout.strip().splitlines()
        for line in lines[:-1]:
            say(line)
        try:
            result["scaleout"] = json.loads(lines[-1])
        except (IndexError, ValueError):
            result["scaleout"] = {"bench": "scaleout", "skipped": f"failed: {proc.stderr.strip()[-300:]}"}
            say(f"scaleout: failed: {proc.stderr.strip()[-300:]}")
    if "dns" in parts:
        say("== DNS: vesyncd vs dnsmasq (bench.dns_bench)")
        from . import dns_bench

        try:
            dnsRes = dns_bench.main(prof["dns"])
        except Exception as e:  # noqa: BLE001
            dnsRes = {"bench": "dns", "skipped": f"failed: {e}"}
        result["dns"] = dnsRes
    if "store" in parts:
        try:
            store = importlib.import_module("bench.store_bench")
        except ImportError:
            store = None
        if store is not None and hasattr(store, "main"):
            say("== storage (bench.store_bench)")
            import contextlib
            import io

            buf = io.StringIO()
            try:
                with contextlib.redirect_stdout(buf):
                    store.main([] if name == "full" else ["--quick"])
                print(buf.getvalue(), end="")
                lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("{")]
                result["store"] = json.loads(lines[-1]) if lines else {"skipped": "store_bench printed no JSON"}
            except SystemExit:
                result["store"] = {"skipped": "store_bench exited"}
            except Exception as e:  # noqa: BLE001
                result["store"] = {"skipped": f"failed: {e}"}
    rows = table(plugRes, controlRes, dnsRes, soakRes, pauseRes, frontRes, result.get("dashboard"))
    result["table"] = rows
    result["seconds"] = round(time.monotonic() - t0, 1)
    printTable(rows)
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
