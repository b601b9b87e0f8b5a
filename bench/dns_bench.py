"""
Throughput of vesyncd's DNS responder for the intercepted name, against dnsmasq.

Both servers run as separate processes pinned to CPU 0 (``taskset -c 0``) on 127.0.0.1 and
are loaded alternately (A B A B ...) by ``dnsperf`` pinned to CPU 1, always querying
``server2.vesync.com A``.  Prints the queries per second of every run, the median and spread
per server, the ratio vesyncd/dnsmasq, and one JSON line.

    python -m bench.dns_bench            # 3 rounds of 5 s each
    python -m bench.dns_bench --full     # 7 rounds of 10 s each

Exits 0 with a message when dnsperf, dnsmasq or taskset is missing
(``apt-get install dnsperf dnsmasq-base``).  Only loopback is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

NAME = "server2.vesync.com"

_SERVE = """
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor
from vesyncd.dns.server import makeDNSService
# dnsperf is one source: a rate limit it never reaches keeps the limiter's cost in the figures.
svc = makeDNSService(reactor, port=int(sys.argv[1]), interface="127.0.0.1", upstreams=[],
                     rateLimit=10**9)
svc.startService()
reactor.run()
"""


def freePort() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (as far as can be told)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def waitReady(port: int, timeout: float = 10.0) -> bool:
    """Whether a DNS server answers on 127.0.0.1:C{port} within C{timeout} seconds."""
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
        bytes([len(p)]) + p.encode() for p in NAME.split(".")) + b"\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                s.sendto(query, ("127.0.0.1", port))
                if s.recv(512)[:2] == b"\x12\x34":
                    return True
            except OSError:
                time.sleep(0.1)
    return False


def startServer(kind: str, port: int) -> subprocess.Popen:
    """Start C{kind} ("vesyncd" or "dnsmasq") pinned to CPU 0 on C{port}."""
    if kind == "vesyncd":
        cmd = [sys.executable, "-c", _SERVE, str(port)]
    else:
        cmd = [shutil.which("dnsmasq") or "dnsmasq", "--no-daemon", f"--port={port}",
               "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
               f"--address=/{NAME}/127.0.0.1", "--no-hosts", "--cache-size=1000",
               "--log-facility=/dev/null", "--pid-file="]
    return subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def runDnsperf(port: int, seconds: float, datafile: str) -> float:
    """Run dnsperf pinned to CPU 1 for C{seconds}; return its queries per second."""
    out = subprocess.run(
        ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", datafile,
         "-l", str(seconds), "-c", "4", "-q", "200", "-t", "2"],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("dnsperf printed no rate:\n" + out[-2000:])
    return float(m.group(1))


def missingTools() -> list[str]:
    """Which of dnsperf, dnsmasq, taskset are not installed."""
    return [t for t in ("dnsperf", "dnsmasq", "taskset") if shutil.which(t) is None]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison and return its results (also printed, with a JSON line last)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="7 rounds of 10 s")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    rounds = args.rounds or (7 if args.full else 3)
    seconds = args.seconds or (10.0 if args.full else 5.0)
    missing = missingTools()
    if missing:
        print(f"dns_bench: skipped, not installed: {', '.join(missing)}"
              " (apt-get install dnsperf dnsmasq-base util-linux)")
        result: dict[str, Any] = {"bench": "dns", "skipped": "missing " + " ".join(missing)}
        print(json.dumps(result))
        return result
    qps: dict[str, list[float]] = {"vesyncd": [], "dnsmasq": []}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(f"{NAME} A\n")
        datafile = f.name
    try:
        for r in range(rounds):
            for kind in ("vesyncd", "dnsmasq"):
                port = freePort()
                proc = startServer(kind, port)
                try:
                    if not waitReady(port):
                        raise RuntimeError(f"{kind} did not answer on port {port}")
                    rate = runDnsperf(port, seconds, datafile)
                finally:
                    proc.terminate()
                    proc.wait(10)
                qps[kind].append(rate)
                print(f"round {r + 1}/{rounds} {kind:8s} {rate:10.0f} qps", flush=True)
    finally:
        os.unlink(datafile)
    summary: dict[str, Any] = {"bench": "dns", "rounds": rounds, "seconds": seconds}
    for kind, rates in qps.items():
        med = statistics.median(rates)
        spread = (max(rates) - min(rates)) / med * 100 if med else 0.0
        summary[kind] = {"median_qps": round(med), "min_qps": round(min(rates)),
                         "max_qps": round(max(rates)), "spread_pct": round(spread, 1)}
        print(f"{kind:8s} median {med:10.0f} qps  min {min(rates):.0f}  max {max(rates):.0f}"
              f"  spread {spread:.1f}%")
    ratios = [v / d for v, d in zip(qps["vesyncd"], qps["dnsmasq"]) if d]
    summary["ratio_median"] = round(statistics.median(ratios), 3)
    summary["ratio_of_medians"] = round(summary["vesyncd"]["median_qps"]
                                        / summary["dnsmasq"]["median_qps"], 3)
    summary["target"] = 0.3
    print(f"ratio vesyncd/dnsmasq: {summary['ratio_of_medians']:.3f}"
          f" (per-round median {summary['ratio_median']:.3f}; target >= 0.3)")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
