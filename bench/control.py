"""
Control round trip: AMP C{Switch} -> vesyncd -> C{/relay} to the plug -> C{/runtimeInfo} ->
confirmed answer, with N plugs connected.

vesyncd runs pinned to CPU 0 with its control port (the UNIX socket C{control.sock} and the token
in C{control.token} of its state directory); N plugs from L{bench.loadgen} and the control
client (this module's C{client} command, built on L{vesyncd.control.client}) run on CPU 1.

* latency: one command at a time, each to another plug (alternating on/off so every command
  really switches the relay): p50/p99/max;
* throughput: C{connections} control connections each keeping 16 commands in flight (the
  server's L{vesyncd.control.amp.MAX_IN_FLIGHT}), every command to a different plug: commands/s.

    python -m bench.control --plugs 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

from . import plugs as P


def client(argv: list[str]) -> int:
    """The client process: connects, logs in, measures, prints one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--plugs", type=int, required=True)
    p.add_argument("--seed", default="bench")
    p.add_argument("--latency-ops", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--in-flight", type=int, default=16)
    a = p.parse_args(argv)

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList, inlineCallbacks

    from vesyncd.control.client import connect
    from vesyncd.sim.plug import plugId

    token = open(a.token_file).read().strip()
    ids = [plugId(a.seed, i) for i in range(a.plugs)]
    relay = [i % 2 == 0 for i in range(a.plugs)]  # as bench.loadgen starts them
    result: dict[str, Any] = {}

    def nextTarget(i: int) -> tuple[str, str]:
        k = i % len(ids)
        relay[k] = not relay[k]
        return ids[k], "on" if relay[k] else "off"

    @inlineCallbacks
    def run() -> Any:
        clients = []
        for _ in range(a.connections):
            clients.append((yield connect(reactor, f"unix:{a.socket}", token)))
        # latency: sequential
        lat, errors = [], 0
        for i in range(a.latency_ops):
            ref, state = nextTarget(i * 7919)
            t = time.perf_counter()
            try:
                yield clients[0].switch(ref, state)
                lat.append(time.perf_counter() - t)
            except Exception:
                errors += 1
        result["latency"] = P.pct(lat)
        result["latency_errors"] = errors
        # throughput: pipelined over several connections
        counter = {"i": 10 ** 6, "ok": 0, "err": 0, "errors": {}}
        deadline = time.perf_counter() + a.seconds

        @inlineCallbacks
        def worker(cl: Any) -> Any:
            while time.perf_counter() < deadline:
                counter["i"] += 1
                ref, state = nextTarget(counter["i"])
                try:
                    yield cl.switch(ref, state)
                    counter["ok"] += 1
                except Exception as e:  # noqa: BLE001 - counted and reported
                    counter["err"] += 1
                    name = type(e).__name__
                    counter["errors"][name] = counter["errors"].get(name, 0) + 1

        t0 = time.perf_counter()
        yield DeferredList([worker(cl) for cl in clients for _ in range(a.in_flight)])
        took = time.perf_counter() - t0
        result["throughput"] = {"ok": counter["ok"], "errors": counter["err"], "error_kinds": counter["errors"],
                                "seconds": round(took, 3), "per_s": round(counter["ok"] / took, 1),
                                "connections": a.connections, "in_flight": a.in_flight}
        for cl in clients:
            cl.close()

    def done(_: Any) -> None:
        print(json.dumps(result), flush=True)
        reactor.stop()

    def failed(f: Any) -> None:
        result["error"] = str(f.value)
        done(None)

    reactor.callWhenRunning(lambda: run().addCallbacks(done, failed))
    reactor.callLater(a.seconds + 300, reactor.stop)  # bounded whatever happens
    reactor.run()
    return 0


def measure(plugs: int, *, rounds: int = 1, latencyOps: int = 1000, seconds: float = 5.0,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start vesyncd with its control port and C{plugs} plugs; run the client C{rounds} times."""
    try:
        import vesyncd.control.client  # noqa: F401
        import vesyncd.control.tap  # noqa: F401
    except ImportError as e:
        say(f"control: skipped, the control modules are not importable ({e})")
        return {"bench": "control", "skipped": str(e)}
    srv = P.Server("vesyncd", frameRate=None, control=True)
    load = None
    runs = []
    try:
        load = P.Load(srv.port, plugs)
        r = load.all("connect", timeout=120)
        online = sum(x["online"] for x in r)
        sock = os.path.join(srv.stateDir, "control.sock")
        tokenFile = os.path.join(srv.stateDir, "control.token")
        for i in range(rounds):
            cmd = [sys.executable, "-m", "bench.control", "client", "--socket", sock, "--token-file", tokenFile,
                   "--plugs", str(online and plugs), "--latency-ops", str(latencyOps), "--seconds", str(seconds)]
            out = subprocess.run(P.pinned(P.LOAD_CORE, cmd), cwd=P.ROOT, capture_output=True, text=True,
                                 timeout=seconds + 400)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if not lines:
                raise RuntimeError("control client printed nothing:\n" + out.stderr[-2000:])
            doc = json.loads(lines[-1])
            runs.append(doc)
            lat, thr = doc.get("latency", {}), doc.get("throughput", {})
            say(f"  control round {i + 1}: {online} plugs online; switch p50 {lat.get('p50_ms')} ms "
                f"p99 {lat.get('p99_ms')} ms; {thr.get('per_s')} commands/s "
                f"({thr.get('errors')} errors {thr.get('error_kinds')})")
        status = load.all("status")
    finally:
        if load is not None:
            load.close()
        srv.stop()
    return {"bench": "control", "plugs": plugs, "online": online, "runs": runs,
            "relays_seen_by_plugs": sum(x["relays"] for x in status)}


def main(argv: list[str] | None = None) -> dict[str, Any] | int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        return client(argv[1:])
    p = argparse.ArgumentParser(description="control round trip benchmark")
    p.add_argument("--plugs", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--latency-ops", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args(argv)
    res = measure(a.plugs, rounds=a.rounds, latencyOps=a.latency_ops, seconds=a.seconds)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    r = main()
    sys.exit(r if isinstance(r, int) else 0)
