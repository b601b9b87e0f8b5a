"""
The plug-server hardening suite: C{python -m bench.hardening [--quick] [--only NAME,...] [--json FILE]}.

Parts (each on 127.0.0.1 only, bounded in count and time, stopping by itself):

 - conformance: Autobahn|Testsuite fuzzingclient, cases 1-7 and 10, against the echo endpoint
   built with the production factory options (L{bench.hardening.conformance});
 - attack: the real daemon with 100 simulated plugs; a quiet baseline, then 1,000 slow-drip
   handshakes, 1,000 oversized handshakes and a flood of garbage connections, then a plug
   flooding frames, then quiet again; C{/ka}->C{/kr} p99 per phase, plugs that went offline, RSS
   before/after, the daemon's counters by reason;
 - kill9: C{kill -9} of the daemon with 1,000 simulated plugs (C{vesyncd-sim --count 1000
   --speed 30 --spread 2}); time until all are online again after the restart;
 - vanish: a plug process frozen with SIGSTOP is marked offline within C{--offline-after}; a
   command to it fails promptly (CommandTimeout while still online, PlugOffline after);
 - lan: one hostile device on the LAN against 20 victim plugs with every front end on: energy
   poisoning, name squatting, takeovers, id floods, control characters, HTTP and control floods,
   MQTT republish storms, DNS amplification (L{bench.hardening.lan}).

It prints a report at the end (inputs tried, crashes, connections refused, data lost, time to
recover) and one JSON line; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.hardening import conformance, lan
from bench.hardening.common import freePort, stopProcess, percentile, raiseFileLimit, readJSON, waitUntil, writeJSON

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


class Daemon:
    """The real daemon in a subprocess (L{bench.hardening.daemon}), with its stats file."""

    def __init__(self, work: Path, port: int, extra: list[str] = (), maxSeconds: float = 600,
                 withFrontEnds: bool = False) -> None:
        self.work, self.port, self.extra, self.maxSeconds = work, port, list(extra), maxSeconds
        self.frontEnds = [] if withFrontEnds else ["--no-dns", "--no-http"]
        self.stateDir = work / "state"
        self.statsPath = work / "daemon.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.statsPath.exists():
            self.statsPath.unlink()
        self.proc = subprocess.Popen(
            [PY, "-m", "bench.hardening.daemon", "--stats", str(self.statsPath), "--log", str(self.work / "daemon.log"),
             "--max-seconds", str(self.maxSeconds), "--", "--plugs", f"tcp:{self.port}:interface=127.0.0.1",
             "--state-dir", str(self.stateDir), *self.frontEnds, "--refresh-interval", "0", *self.extra],
            env=ENV, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=open(self.work / "daemon.err", "a"))
        if waitUntil(lambda: (self.stats() or {}).get("port") == self.port, 20) is None:
            raise RuntimeError(f"daemon did not start: {(self.work / 'daemon.err').read_text()[-2000:]}")

    def stats(self) -> dict[str, Any] | None:
        s = readJSON(self.statsPath)
        return s if s and self.proc and s.get("pid") == self.proc.pid else None

    def command(self, obj: dict[str, Any]) -> None:
        writeJSON(self.statsPath.with_suffix(".cmd"), obj)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stopProcess(self.proc)


def _online(d: Daemon) -> int:
    return (d.stats() or {}).get("online", -1)


def _stop(proc: subprocess.Popen) -> None:
    stopProcess(proc)


# -- parts ---------------------------------------------------------------------------------------


def partConformance(quick: bool) -> dict[str, Any]:
    result = conformance.run("production")
    if "skipped" in result:
        return {"skipped": result["skipped"], "ok": None}
    out = {"cases": result["cases"], "bad": result["bad"], "counts": result["counts"], "seconds": result["seconds"],
           "ok": not result["bad"] and result["cases"] > 0}
    if not quick:
        alt = conformance.run("no")
        out["failByDrop_false"] = {"cases": alt.get("cases"), "bad": alt.get("bad"), "counts": alt.get("counts")}
    return out


#: These parts start hundreds of plugs never seen before at once; the new-id limit is not under test.
MANY_NEW = ["--max-new-plugs-per-minute", "1000000"]


def partAttack(work: Path, quick: bool) -> dict[str, Any]:
    base, attack, flood, recover = (15, 25, 10, 10) if quick else (30, 40, 12, 15)
    count = 100
    garbage = 2000 if quick else 5000
    d = Daemon(work, freePort(), MANY_NEW)
    d.start()
    plugsOut = work / "plugs.json"
    total = base + attack + flood + recover + 25
    plugs = subprocess.Popen([PY, "-m", "bench.hardening.plugs", "--port", str(d.port), "--count", str(count),
                              "--speed", "60", "--seconds", str(total), "--out", str(plugsOut)],
                             env=ENV, cwd=str(ROOT), stderr=open(work / "plugs.err", "a"))
    result: dict[str, Any] = {"plugs": count}
    try:
        result["login_all_s"] = waitUntil(lambda: _online(d) == count, 30)
        time.sleep(5)  # every plug has had time for its first /ka
        marks = {"baseline": time.time()}
        time.sleep(base)
        rssBefore, cpuBefore = d.stats()["rss_kib"], d.stats()["cpu_s"]
        marks["attack"] = time.time()
        att = subprocess.run([PY, "-m", "bench.hardening.attacker", "--port", str(d.port), "--slow", "1000",
                              "--oversize", "1000", "--garbage", str(garbage), "--seconds", str(attack),
                              "--out", str(work / "attack.json")], env=ENV, cwd=str(ROOT), timeout=attack + 60)
        marks["flood"] = time.time()
        result["daemon_cpu_s_during_attack"] = round(d.stats()["cpu_s"] - cpuBefore, 2)
        recoverT0 = time.monotonic()
        subprocess.run([PY, "-m", "bench.hardening.attacker", "--port", str(d.port), "--slow", "0",
                             "--oversize", "0", "--garbage", "0", "--flood", "2000", "--seconds", str(flood),
                             "--out", str(work / "flood.json")], env=ENV, cwd=str(ROOT), timeout=flood + 60)
        marks["recovery"] = time.time()
        time.sleep(recover)
        marks["end"] = time.time()
        stats = d.stats()
        result["rss_kib_before"], result["rss_kib_after"] = rssBefore, stats["rss_kib"]
        result["rss_growth_kib"] = stats["rss_kib"] - rssBefore
        result["daemon_counters"] = stats["stats"]
        result["online_at_end"] = stats["online"]
        result["attacker"] = readJSON(work / "attack.json")
        result["attacker_rc"] = att.returncode
        result["flood"] = (readJSON(work / "flood.json") or {}).get("flood")
        del recoverT0
    finally:
        plugs.wait(total + 60)
        daemonAlive = d.alive()
        d.stop()
    sim = readJSON(plugsOut) or {}
    samples = sim.get("samples", [])
    phases = ["baseline", "attack", "flood", "recovery"]
    lat: dict[str, Any] = {}
    for i, phase in enumerate(phases):
        lo, hi = marks[phase], marks[phases[i + 1]] if i + 1 < len(phases) else marks["end"]
        values = [s[1] * 1000 for s in samples if lo <= s[0] < hi]
        lat[phase] = {"n": len(values), "p50_ms": _r(percentile(values, 50)), "p99_ms": _r(percentile(values, 99)),
                      "max_ms": _r(max(values) if values else None)}
    result["latency"] = lat
    disconnects = [e for e in sim.get("events", []) if e[1] == "disconnected" and marks["baseline"] <= e[0] < marks["end"]]
    result["plugs_disconnected"] = len(disconnects)
    result["sim_online_at_end"] = sim.get("online_at_end")
    result["daemon_survived"] = daemonAlive
    b, a = lat["baseline"]["p99_ms"], lat["attack"]["p99_ms"]
    result["p99_ratio"] = _r(a / b) if a and b else None
    # Targets: no plug offline, daemon alive, RSS bounded (32 MiB), no 101 to a hostile handshake.
    result["ok"] = bool(daemonAlive and result["plugs_disconnected"] == 0 and result["online_at_end"] == count
                        and result["rss_growth_kib"] < 32 * 1024
                        and all(result["attacker"][k]["got_101"] == 0 for k in ("slow", "oversize")))
    result["p99_within_2x"] = bool(result["p99_ratio"] is not None and result["p99_ratio"] <= 2.0)
    return result


def partKill9(work: Path, quick: bool) -> dict[str, Any]:
    count = 1000
    d = Daemon(work, freePort(), MANY_NEW)
    d.start()
    simProc = subprocess.Popen([str(Path(PY).parent / "vesyncd-sim"), "--server", f"127.0.0.1:{d.port}",
                                "--count", str(count), "--speed", "30", "--spread", "2", "--seed", "kill9"],
                               env=ENV, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=open(work / "sim.err", "a"))
    result: dict[str, Any] = {"plugs": count}
    try:
        result["first_login_all_s"] = _r(waitUntil(lambda: _online(d) == count, 60))
        time.sleep(3)  # reports in flight
        before = d.stats()
        result["reports_before_kill"] = before["stats"].get("reports", 0)
        tKill = time.monotonic()
        d.kill9()
        result.update(_countLoss(d, before))
        d.start()
        tStarted = time.monotonic()
        allBack = waitUntil(lambda: _online(d) == count, 30, 0.02)
        result["daemon_restart_s"] = _r(tStarted - tKill)
        result["all_online_after_restart_s"] = _r(allBack)
        result["all_online_after_kill_s"] = _r(allBack + (tStarted - tKill)) if allBack is not None else None
        result["online_at_deadline"] = _online(d)
        result["ok"] = allBack is not None and allBack <= 10.0 and result.get("data_loss_ok", False)
    finally:
        _stop(simProc)
        d.stop()
    return result


def _countLoss(d: Daemon, before: dict[str, Any]) -> dict[str, Any]:
    """Reports the killed daemon had received (at its last stats snapshot, <= 0.25 s before the
    kill) against the reports in its database, read before the restart; the store flushes every
    second, so up to about one second of reports is "in flight"."""
    import sqlite3

    db = d.stateDir / "vesyncd.sqlite3"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        stored = conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
    finally:
        conn.close()
    received = before["stats"].get("reports", 0)
    rate = received / max(before.get("uptime", 1.0), 1.0)
    lost = max(0, received - stored)
    return {"db_integrity": integrity, "reports_received_at_snapshot": received, "reports_stored": stored,
            "reports_lost": lost, "reports_per_s": round(rate, 1),
            "data_loss": f"{lost} of {received} reports lost (one flush interval at this rate is "
                         f"~{rate:.0f} reports); database integrity {integrity}",
            "data_loss_ok": integrity == "ok" and lost <= rate * 1.5 + 1}


def partVanish(work: Path, quick: bool) -> dict[str, Any]:
    offlineAfter, commandTimeout = 5.0, 2.0
    d = Daemon(work, freePort(), ["--keepalive-idle", "2", "--probe-interval", "1", "--offline-after", str(offlineAfter),
                                  "--command-timeout", str(commandTimeout)])
    d.start()
    simProc = subprocess.Popen([str(Path(PY).parent / "vesyncd-sim"), "--server", f"127.0.0.1:{d.port}",
                                "--count", "1", "--seed", "vanish"], env=ENV, cwd=str(ROOT),
                               stdout=subprocess.DEVNULL, stderr=open(work / "vanish.err", "a"))
    from vesyncd.sim.plug import plugId

    ident = plugId("vanish", 0)
    result: dict[str, Any] = {"offline_after": offlineAfter, "command_timeout": commandTimeout}
    try:
        if waitUntil(lambda: _online(d) == 1, 20) is None:
            raise RuntimeError("plug never came online")
        time.sleep(3)  # the plug has answered probes: it is alive while running
        result["online_before_stop"] = _online(d)
        simProc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        d.command({"op": "switch", "plug": ident, "on": False})
        result["offline_s"] = _r(waitUntil(lambda: _online(d) == 0, offlineAfter + 10, 0.02))
        waitUntil(lambda: len(d.stats()["commands"]) == 1 and "outcome" in d.stats()["commands"][0], 10)
        result["command_while_vanishing"] = {k: d.stats()["commands"][0].get(k) for k in ("outcome", "seconds")}
        d.command({"op": "switch", "plug": ident, "on": False})
        waitUntil(lambda: len(d.stats()["commands"]) == 2 and "outcome" in d.stats()["commands"][1], 10)
        result["command_after_offline"] = {k: d.stats()["commands"][1].get(k) for k in ("outcome", "seconds")}
        result["liveness_timeouts"] = d.stats()["stats"].get("liveness_timeouts", 0)
        del t0
        result["ok"] = bool(result["offline_s"] is not None and result["offline_s"] <= offlineAfter + 1.5
                            and result["command_while_vanishing"]["outcome"] in ("CommandTimeout", "PlugOffline")
                            and _le(result["command_while_vanishing"]["seconds"], commandTimeout + 1)
                            and result["command_after_offline"]["outcome"] == "PlugOffline"
                            and _le(result["command_after_offline"]["seconds"], 0.5))
    finally:
        _stop(simProc)
        d.stop()
    return result


def _le(x: float | None, bound: float) -> bool:
    return x is not None and x <= bound


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def partLAN(work: Path, quick: bool) -> dict[str, Any]:
    """Attacks from a hostile device on the LAN (L{bench.hardening.lan})."""
    return lan.run(work, quick, Daemon, ENV, ROOT, PY)


PARTS = {"conformance": lambda w, q: partConformance(q), "attack": partAttack, "kill9": partKill9,
         "vanish": partVanish, "lan": partLAN}


def report(results: dict[str, Any]) -> str:
    """The human summary: inputs tried, crashes, connections refused, data lost, time to recover."""
    lines = ["", "== vesyncd plug-server hardening =="]
    c = results.get("conformance")
    if c:
        if c.get("skipped"):
            lines.append(f"conformance: SKIPPED ({c['skipped']})")
        else:
            lines.append(f"conformance: {c['cases']} Autobahn cases (1-7, 10), {len(c['bad'])} FAILED/UNCLEAN/WRONG CODE;"
                         f" {c['counts']}")
    a = results.get("attack")
    if a and "error" not in a:
        at = a["attacker"]
        tried = sum(at[k]["opened"] + at[k]["refused"] for k in ("slow", "oversize", "garbage"))
        refused = sum(at[k]["refused"] for k in ("slow", "oversize", "garbage"))
        lines.append(f"attack: inputs tried {tried} hostile connections (slow {at['slow']['opened']}, "
                     f"oversize {at['oversize']['opened']}, garbage {at['garbage']['opened']}); refused at connect "
                     f"{refused}; 101 to hostile handshakes {at['slow']['got_101'] + at['oversize']['got_101']}; "
                     f"slow drips closed after p50 {at['slow']['close_p50_s']} s, max {at['slow']['close_max_s']} s")
        lines.append(f"attack: daemon crashed: {not a['daemon_survived']}; plugs that went offline: "
                     f"{a['plugs_disconnected']} of {a['plugs']}; RSS {a['rss_kib_before']} -> {a['rss_kib_after']} KiB")
        for phase, v in a["latency"].items():
            lines.append(f"  /ka->/kr {phase:9s} n={v['n']:5d} p50={v['p50_ms']} ms p99={v['p99_ms']} ms max={v['max_ms']} ms")
        lines.append(f"  p99 attack/baseline = {a['p99_ratio']} (target <= 2); daemon CPU during the attack "
                     f"{a.get('daemon_cpu_s_during_attack')} s")
        f = a.get("flood") or {}
        lines.append(f"flood: sent {f.get('sent')} /ka at once, answered {f.get('answers')}, closed by server: "
                     f"{bool(f.get('closed_by_server'))}")
        counters = {k: v for k, v in a["daemon_counters"].items() if k.startswith(("rejected_", "frames_", "connections"))}
        lines.append(f"daemon counters: {counters}")
    k = results.get("kill9")
    if k and "error" not in k:
        lines.append(f"kill -9: {k['plugs']} plugs; all online again {k['all_online_after_restart_s']} s after restart "
                     f"({k['all_online_after_kill_s']} s after the kill; target <= 10 s); data lost: {k['data_loss']}")
    v = results.get("vanish")
    if v and "error" not in v:
        lines.append(f"vanish (SIGSTOP): offline after {v['offline_s']} s (deadline {v['offline_after']} s); command "
                     f"while vanishing: {v['command_while_vanishing']}; after offline: {v['command_after_offline']}")
    h = results.get("lan")
    if h and "error" not in h:
        lines.append(f"lan: {h['victims']} victims, MQTT {'on' if h['mqtt'] else 'off (no mosquitto)'}; each attack "
                     f"with the victims' /ka p99 and switch commands confirmed during it")
        lines.extend(lan.report(h))
    for name, r in results.items():
        if isinstance(r, dict) and "error" in r:
            lines.append(f"{name}: ERROR {r['error']}")
    lines.append("targets: " + ", ".join(f"{n}={'ok' if r.get('ok') else ('skipped' if r.get('ok') is None else 'MISSED')}"
                                         for n, r in results.items() if isinstance(r, dict)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hardening")
    p.add_argument("--quick", action="store_true", help="shorter phases (about 2 minutes)")
    p.add_argument("--only", default="", help="comma-separated parts: " + ",".join(PARTS))
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    raiseFileLimit()
    names = [n for n in (args.only.split(",") if args.only else PARTS) if n]
    results: dict[str, Any] = {}
    started = time.monotonic()
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"vesyncd-hardening-{name}-"))
        t0 = time.monotonic()
        try:
            results[name] = PARTS[name](work, args.quick)
        except Exception as e:  # report and go on with the next part
            results[name] = {"error": f"{type(e).__name__}: {e}", "ok": False, "work": str(work)}
        results[name]["part_seconds"] = round(time.monotonic() - t0, 1)
        print(f"[{name}] done in {results[name]['part_seconds']} s", file=sys.stderr, flush=True)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    print(report(results))
    line = json.dumps(results, default=str)
    print(line)
    if args.json:
        Path(args.json).write_text(line)
    return 0 if all(r.get("ok") is not False for r in results.values() if isinstance(r, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
