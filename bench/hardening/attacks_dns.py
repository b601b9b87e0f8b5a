"""
DNS attacks for the LAN part of the hardening run (L{bench.hardening.lan}).

 - dns-amplification: small UDP queries that draw big forwarded answers, as a reflector for a
   forged source would use them.  The attack brings its own loopback world: a misbehaving upstream
   resolver on 127.0.0.1 that answers every UDP query with about 3,200 bytes whatever the query
   says (and the same over TCP), and a daemon of its own (L{bench.hardening.daemon}, built as
   C{twistd vesyncd} builds it, with the default DNS options) forwarding to it.  It measures:
     1. a query without EDNS, and one advertising 4,096 bytes: the answer must fit 512 bytes and
        1,232 bytes (the cap) with TC set; the ratio is answer bytes over query bytes;
     2. the same query over TCP, as a client told to retry does it: the full answer must come back;
     3. a flood of queries from 127.0.0.1 for a 1,100-byte answer (the biggest that fits the cap,
        so the worst ratio a client can get legitimately): how many got a full answer, an empty
        TC reply or nothing; meanwhile a query from another /24 (127.0.1.1) must get its answer.
   Held when every UDP answer fit its size with TC set when cut, TCP gave the full answer, the
   flood was limited (at most the rate plus its burst got full answers) and the other network was
   answered.  Degraded when sizes held but the flood was not limited; broke when an answer was too
   big or came without TC.

Synchronous, loopback only, done in about 10 s (quick) to 15 s.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dnslib import EDNS0, QTYPE, RR, TXT, A, DNSRecord

from bench.hardening.common import LOOPBACK, readJSON, stopProcess, waitUntil

ROOT = Path(__file__).resolve().parents[2]
#: A source in another /24 of the loopback network: a neighbour the flood must not starve.
NEIGHBOUR = "127.0.1.1"
#: The daemon's default answers per second per source network, and its burst (one second's worth).
DEFAULT_RATE = 100
#: Answer sizes of the fake upstream, by the first label of the name asked.
SIZES = {"big": 3233, "mid": 1100}


def _answer(query: bytes) -> bytes:
    """The fake upstream's answer: TXT records up to the size its first label asks for."""
    request = DNSRecord.parse(query)
    reply = request.reply()
    name = str(request.q.qname)
    size = SIZES.get(name.split(".", 1)[0], 200)
    while len(reply.pack()) + 63 <= size:
        reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT("x" * 50), ttl=30))
    if len(reply.pack()) < size:  # pad the rest with one A record if it fits, for a near-exact size
        reply.add_answer(RR(name, QTYPE.A, rdata=A("192.0.2.1"), ttl=30))
    return bytes(reply.pack())


class FakeUpstream:
    """A misbehaving resolver on one loopback port (UDP and TCP): big answers, EDNS ignored."""

    def __init__(self) -> None:
        self.udp, self.tcp, self.port = _bindBoth()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._serveUDP, daemon=True),
                        threading.Thread(target=self._serveTCP, daemon=True)]
        for t in self.threads:
            t.start()

    def _serveUDP(self) -> None:
        while not self.stopping.is_set():
            if not select.select([self.udp], [], [], 0.2)[0]:
                continue
            try:
                data, addr = self.udp.recvfrom(4096)
                self.udp.sendto(_answer(data), addr)
            except Exception:
                continue  # a bad packet or a vanished client: keep serving

    def _serveTCP(self) -> None:
        while not self.stopping.is_set():
            if not select.select([self.tcp], [], [], 0.2)[0]:
                continue
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    query = _readFramed(conn)
                    answer = _answer(query)
                    conn.sendall(struct.pack("!H", len(answer)) + answer)
                except Exception:
                    continue

    def stop(self) -> None:
        """Stop serving and close both sockets."""
        self.stopping.set()
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


def _bindBoth(tries: int = 50) -> tuple[socket.socket, socket.socket, int]:
    """A TCP listener and a UDP socket on one free loopback port (TCP first, then UDP, retried)."""
    for _ in range(tries):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind((LOOPBACK, 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((LOOPBACK, port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp, port
    raise RuntimeError("no loopback port free for both TCP and UDP")


def _readFramed(conn: socket.socket) -> bytes:
    """One length-prefixed DNS message from a TCP connection."""
    data = b""
    while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole message")
        data += chunk
    return data[2:2 + struct.unpack("!H", data[:2])[0]]


def _query(name: str, qid: int, payload: int | None = None) -> bytes:
    """A TXT query for C{name}; with C{payload}, an EDNS record advertising that UDP size."""
    q = DNSRecord.question(name, "TXT")
    q.header.id = qid
    if payload is not None:
        q.add_ar(EDNS0(udp_len=payload))
    return bytes(q.pack())


def _ask(port: int, data: bytes, source: str = LOOPBACK, timeout: float = 3.0) -> bytes | None:
    """One UDP query from C{source}; the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(data, (LOOPBACK, port))
        try:
            return s.recv(65536)
        except OSError:
            return None


def _askTCP(port: int, data: bytes) -> bytes | None:
    """One query over TCP; the answer, or None."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as s:
            s.sendall(struct.pack("!H", len(data)) + data)
            return _readFramed(s)
    except OSError:
        return None


def _tc(answer: bytes) -> bool:
    return len(answer) >= 4 and bool(answer[2] & 0x02)


class Daemon:
    """vesyncd with its default DNS options, forwarding to the fake upstream, in a subprocess."""

    def __init__(self, work: Path, upstream: int) -> None:
        _, _, self.dnsPort = _closeAll(_bindBoth())
        _, _, plugPort = _closeAll(_bindBoth())
        self.stats = work / "dns-daemon.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.hardening.daemon", "--stats", str(self.stats),
             "--log", str(work / "dns-daemon.log"), "--max-seconds", "60", "--",
             "--plugs", f"tcp:{plugPort}:interface={LOOPBACK}", "--state-dir", str(work / "state"),
             "--no-http", "--refresh-interval", "0", "--dns-port", str(self.dnsPort),
             "--dns-interface", LOOPBACK, "--dns-upstream", f"{LOOPBACK}:{upstream}"],
            env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=open(work / "dns-daemon.err", "a"))

    def ready(self) -> bool:
        """Whether the daemon is up and its responder answers."""
        if (readJSON(self.stats) or {}).get("pid") != self.proc.pid:
            return False
        return _ask(self.dnsPort, _query("server2.vesync.com", 1), timeout=0.5) is not None

    def stop(self) -> None:
        """Terminate the daemon (kill it if it does not go)."""
        stopProcess(self.proc)


def _closeAll(bound: tuple[socket.socket, socket.socket, int]) -> tuple[None, None, int]:
    """Close a pair from L{_bindBoth} and keep its port number (for a subprocess to bind)."""
    bound[0].close()
    bound[1].close()
    return None, None, bound[2]


def _flood(port: int, count: int, seconds: float) -> dict[str, Any]:
    """C{count} EDNS queries for the 1,100-byte answer from 127.0.0.1, spread over C{seconds},
    with a neighbour's query in the middle; what came back."""
    got: dict[str, Any] = {"sent": 0, "bytes_in": 0, "full": 0, "tc": 0, "bytes_out": 0,
                           "neighbour": 0}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setblocking(False)

        def drain(wait: float) -> None:
            deadline = time.monotonic() + wait
            while True:
                left = deadline - time.monotonic()
                if not select.select([s], [], [], max(0.0, left))[0]:
                    if left <= 0:
                        return
                    continue
                data = s.recv(65536)
                got["bytes_out"] += len(data)
                got["tc" if _tc(data) else "full"] += 1

        start = time.monotonic()
        for i in range(count):
            data = _query("mid.flood.example", i & 0xFFFF, payload=4096)
            s.sendto(data, (LOOPBACK, port))
            got["sent"] += 1
            got["bytes_in"] += len(data)
            if i == count // 2:
                answer = _ask(port, _query("mid.neighbour.example", 7, payload=4096), NEIGHBOUR)
                got["neighbour"] = len(answer or b"")
            if i % 25 == 24:
                drain(0.0)
                pause = start + seconds * (i + 1) / count - time.monotonic()
                if pause > 0:
                    drain(pause)
        drain(1.5)
        got["elapsed"] = time.monotonic() - start
    return got


def dnsAmplification(target: Any) -> dict[str, Any]:
    """Small queries for big forwarded answers; see the module docstring for what is judged."""
    quick = bool(getattr(target, "quick", False))
    with tempfile.TemporaryDirectory(prefix="vesyncd-dns-attack-") as tmp:
        work = Path(tmp)
        upstream = FakeUpstream()
        daemon = Daemon(work, upstream.port)
        try:
            if waitUntil(daemon.ready, 20) is None:
                return {"count": 0, "outcome": "error",
                        "detail": f"daemon did not start: {(work / 'dns-daemon.err').read_text()[-500:]}"}
            problems: list[str] = []
            ratios: list[float] = []
            for payload, limit in ((None, 512), (4096, 1232)):
                q = _query("big.example.org", 0x2000 + (payload or 0) % 1000, payload)
                a = _ask(daemon.dnsPort, q)
                if a is None:
                    problems.append(f"no answer (EDNS {payload})")
                    continue
                ratios.append(len(a) / len(q))
                if len(a) > limit or not _tc(a):
                    problems.append(f"{len(a)}-byte answer to a {len(q)}-byte query "
                                    f"(EDNS {payload}), TC {_tc(a)}")
            plain = len(_query("big.example.org", 1))
            full = _askTCP(daemon.dnsPort, _query("big.example.org", 0x3000))
            tcpOK = full is not None and len(full) >= SIZES["big"] - 63 and not _tc(full)
            if not tcpOK:
                problems.append(f"TCP retry got {len(full or b'')} bytes")
            time.sleep(1.1)  # the probes' share of the rate is back before the flood
            seconds = 2.0 if quick else 4.0
            count = 1000 if quick else 3000
            flood = _flood(daemon.dnsPort, count, seconds)
        finally:
            daemon.stop()
            upstream.stop()
    answered = flood["full"]
    # The rate over the time the flood really took (a busy machine stretches it), plus one burst.
    allowed = 1.1 * (DEFAULT_RATE * flood["elapsed"] + DEFAULT_RATE)
    limitedShare = 1 - answered / flood["sent"]
    floodRatio = flood["bytes_out"] / max(1, flood["bytes_in"])
    worst = max(ratios or [0.0])
    if flood["neighbour"] == 0:
        problems.append("the neighbour network got no answer during the flood")
    if problems and any("answer to a" in p or "TCP" in p for p in problems):
        outcome = "broke"
    elif problems or answered > allowed:
        outcome = "degraded"
    else:
        outcome = "held"
    detail = (f"max amplification {worst:.1f}x on the {SIZES['big']}-byte upstream answer (was ~111x: "
              f"{plain}-byte query, answers cut to 512 / 1232 bytes with TC); TCP retry "
              f"{'got the full answer' if tcpOK else 'failed'}; flood of {flood['sent']} queries in "
              f"{flood['elapsed']:.1f} s for a 1,100-byte answer: {answered} answered in full, {flood['tc']} "
              f"empty TC, {flood['sent'] - answered - flood['tc']} dropped, limited share "
              f"{limitedShare:.0%}, bytes out/in {floodRatio:.1f}x; neighbour /24 "
              f"{'answered' if flood['neighbour'] else 'NOT answered'}")
    if problems:
        detail += "; problems: " + "; ".join(problems)
    return {"count": flood["sent"] + 3, "outcome": outcome, "detail": detail,
            "max_ratio": round(worst, 2), "limited_share": round(limitedShare, 3),
            "flood_ratio": round(floodRatio, 2)}


ATTACKS = [("dns-amplification", dnsAmplification)]
