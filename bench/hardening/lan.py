"""
Attacks from one hostile device on the LAN, against the real daemon with real victims.

C{python -m bench.hardening --only lan [--quick]} runs this part.  The daemon listens on 127.0.0.1
only, with every front end on (plugs, control port over TCP, HTTP, DNS with a loopback upstream, MQTT
when mosquitto is installed); twenty simulated plugs (the victims) keep alive at 60x speed and time
each C{/ka} -> C{/kr}; five of them are named.  A quiet baseline comes first, then each attack of the
C{attacks_*} modules in turn.  For each phase the report gives the attack's own count and outcome
(held / degraded / broke, judged by the attack), the victims' C{/ka} p99 and the share of switch
commands to victims that were confirmed, next to the quiet baseline.

An attack module defines C{ATTACKS = [(name, fn)]}; C{fn(target)} gets a L{Target}, runs for at
most about 30 s against loopback only, and returns C{{"count", "outcome", "detail"}}.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.hardening.common import LOOPBACK, freePort, percentile, readJSON, stopProcess, waitUntil

#: The attack modules, in the order their attacks run.  The core's come last: its id flood uses up the
#: daemon's budget of new plug ids for a minute, which would refuse the other attacks' new ids.
MODULES = ("bench.hardening.attacks_plugs", "bench.hardening.attacks_control", "bench.hardening.attacks_frontends",
           "bench.hardening.attacks_dns", "bench.hardening.attacks_core")
VICTIMS = 20
NAMED = 5
#: Seconds each attack's phase lasts at least (quick, full).
MIN_PHASE = {True: 5.0, False: 10.0}


@dataclass
class Target:
    """Where the daemon under attack listens, and who its victims are."""

    host: str
    plugPort: int
    controlPort: int
    httpPort: int
    dnsPort: int
    mqttPort: int | None
    stateDir: Path
    token: str
    victims: list[str]
    quick: bool
    work: Path
    names: dict[str, str] = field(default_factory=dict)


def attacks() -> list[tuple[str, Callable[[Target], dict[str, Any]]]]:
    """Every attack of every module that exists, in order."""
    found: list[tuple[str, Callable[[Target], dict[str, Any]]]] = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        found.extend(getattr(module, "ATTACKS", []))
    return found


class Mosquitto:
    """A mosquitto broker on a free loopback port, when it is installed."""

    def __init__(self, work: Path) -> None:
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            return
        self.port = freePort()
        conf = work / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(work / "mosquitto.err", "a"))

    def stop(self) -> None:
        if self.proc is not None:
            stopProcess(self.proc)


class Commander(threading.Thread):
    """Toggles one named victim through the daemon once a second, for the command success figures."""

    def __init__(self, daemon: Any, plug: str) -> None:
        super().__init__(daemon=True)
        self.daemon_, self.plug = daemon, plug
        self.stopping = threading.Event()

    def run(self) -> None:
        on = True
        while not self.stopping.wait(1.0):
            self.daemon_.command({"plug": self.plug, "on": on})
            on = not on


def _phase(samples: list[list[float]], commands: list[dict[str, Any]], lo: float, hi: float) -> dict[str, Any]:
    values = [s[1] * 1000 for s in samples if lo <= s[0] < hi]
    sent = [c for c in commands if lo <= c.get("at", 0) < hi]
    ok = [c for c in sent if c.get("outcome") == "PlugState"]
    return {"ka_n": len(values), "ka_p99_ms": _r(percentile(values, 99)),
            "commands": len(sent), "commands_ok": len(ok),
            "command_success": _r(len(ok) / len(sent)) if sent else None}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run(work: Path, quick: bool, daemonClass: Any, env: dict[str, str], root: Path, python: str) -> dict[str, Any]:
    """Start the daemon, victims and broker; run the baseline and every attack; return the figures."""
    chosen = attacks()
    broker = Mosquitto(work)
    plugPort, controlPort, httpPort, dnsPort = freePort(), freePort(), freePort(), freePort()
    # The DNS upstream is a loopback port nobody answers on: nothing leaves this machine.
    extra = ["--control", f"tcp:{controlPort}:interface={LOOPBACK}", "--control-insecure",
             "--http", f"tcp:{httpPort}:interface={LOOPBACK}", "--dns-port", str(dnsPort),
             "--dns-interface", LOOPBACK, "--dns-upstream", f"{LOOPBACK}:{freePort()}"]
    if broker.port is not None:
        extra += ["--mqtt", f"mqtt://{LOOPBACK}:{broker.port}"]
    d = daemonClass(work, plugPort, extra=extra, withFrontEnds=True)
    d.start()
    baseline = 10 if quick else 20
    budget = baseline + 45 * len(chosen) + 30
    victimsOut = work / "victims.json"
    victimsProc = subprocess.Popen(
        [python, "-m", "bench.hardening.plugs", "--port", str(plugPort), "--count", str(VICTIMS), "--speed", "60",
         "--seconds", str(budget), "--seed", "lan", "--out", str(victimsOut)],
        env=env, cwd=str(root), stderr=open(work / "victims.err", "a"))
    result: dict[str, Any] = {"victims": VICTIMS, "mqtt": broker.port is not None, "attacks": {}}
    marks: list[tuple[str, float]] = []
    commander: Commander | None = None
    try:
        if waitUntil(lambda: (d.stats() or {}).get("online") == VICTIMS, 30) is None:
            raise RuntimeError("the victims did not all log in")
        from vesyncd.sim.plug import plugId

        victims = [plugId("lan", i) for i in range(VICTIMS)]
        names = {victims[i]: f"Kettle{i + 1}" for i in range(NAMED)}
        ctl = [str(Path(python).parent / "vesyncctl"), "--state-dir", str(d.stateDir),
               "--connect", f"tcp:{LOOPBACK}:{controlPort}"]
        for plug, name in names.items():
            subprocess.run([*ctl, "rename", plug, name], check=True, capture_output=True, timeout=30)
        token = (d.stateDir / "control.token").read_text().strip()
        target = Target(LOOPBACK, plugPort, controlPort, httpPort, dnsPort, broker.port, d.stateDir, token,
                        victims, quick, work, names)
        commander = Commander(d, victims[0])
        commander.start()
        time.sleep(3)  # every victim has had its first /ka
        marks.append(("baseline", time.time()))
        time.sleep(baseline)
        for name, fn in chosen:
            marks.append((name, time.time()))
            t0 = time.monotonic()
            try:
                outcome = fn(target)
            except Exception as e:  # one broken attack must not hide the others' figures
                outcome = {"count": 0, "outcome": "error", "detail": f"{type(e).__name__}: {e}"}
            outcome["seconds"] = round(time.monotonic() - t0, 1)
            # A short attack's phase is held open so the victims' /ka and commands have figures in it.
            time.sleep(max(0.0, MIN_PHASE[quick] - (time.monotonic() - t0)))
            outcome["daemon_alive"] = d.alive()
            if not d.alive():
                outcome["outcome"] = "broke"
                result["attacks"][name] = outcome
                break
            result["attacks"][name] = outcome
        marks.append(("end", time.time()))
    finally:
        if commander is not None:
            commander.stopping.set()
        stopProcess(victimsProc, 30)
        stats = d.stats() or {}
        d.stop()
        broker.stop()
    victims = readJSON(victimsOut) or {}
    samples, commands = victims.get("samples", []), stats.get("commands", [])
    for i, (name, lo) in enumerate(marks[:-1]):
        figures = _phase(samples, commands, lo, marks[i + 1][1])
        if name == "baseline":
            result["baseline"] = figures
        else:
            result["attacks"][name].update(figures)
    result["daemon_counters"] = stats.get("stats")
    outcomes = [a.get("outcome") for a in result["attacks"].values()]
    result["ok"] = bool(outcomes) and all(o in ("held", "skipped") for o in outcomes)
    return result


def report(result: dict[str, Any]) -> list[str]:
    """The part's lines of the hardening report: one per attack, beside the quiet baseline."""
    b = result.get("baseline") or {}
    lines = [f"  {'attack':24} {'count':>7} {'outcome':9} {'/ka p99 ms':>10} {'commands ok':>12}  detail",
             f"  {'(quiet baseline)':24} {'':>7} {'':9} {_s(b.get('ka_p99_ms')):>10} "
             f"{_s(b.get('commands_ok'))}/{_s(b.get('commands')):<10}"]
    for name, a in (result.get("attacks") or {}).items():
        lines.append(f"  {name:24} {_s(a.get('count')):>7} {str(a.get('outcome')):9} {_s(a.get('ka_p99_ms')):>10} "
                     f"{_s(a.get('commands_ok'))}/{_s(a.get('commands')):<10}  {str(a.get('detail', ''))[:100]}")
    return lines


def _s(x: Any) -> str:
    return "-" if x is None else str(x)
