"""
Mutational fuzzing of vesyncd's DNS core, in process.

Valid seed packets (queries with and without EDNS, responses carrying A, TXT, CAA, SRV) are
mutated by bit flips, byte overwrites, truncation, splicing, inserted compression pointers
(including backward chains and loops) and header count changes, then fed to
L{vesyncd.dns.answers.DNSCore.handle} (from allowed and refused sources) and to the upstream-answer
check L{vesyncd.dns.forward.checkAnswer}.  Counts inputs, escapes (exceptions out of either,
or internal errors the core caught), outcomes, and the max / p99 handling time per packet.

    python -m bench.dns_fuzz            # 50,000 mutations
    python -m bench.dns_fuzz --full     # 1,000,000 mutations

Prints a report and one JSON line; exits non-zero if anything escaped.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from collections import Counter
from typing import Any

from dnslib import CAA, DNSRecord, EDNS0, QTYPE, RR, SRV, TXT, A
from twisted.internet import task

from vesyncd.dns.answers import DNSCore
from vesyncd.dns.wire import parseQuestion
from vesyncd.dns.forward import checkAnswer


def seeds() -> list[bytes]:
    """The valid packets mutations start from."""
    out = []
    for name, qtype in (("server2.vesync.com", "A"), ("SeRvEr2.VeSync.CoM", "AAAA"),
                        ("example.com", "TXT"), ("_x._tcp.example.org", "SRV"),
                        ("long." * 40 + "example", "CAA")):
        q = DNSRecord.question(name, qtype)
        out.append(bytes(q.pack()))
        q.add_ar(EDNS0(flags="do", udp_len=1232))
        out.append(bytes(q.pack()))
        r = q.reply()
        r.add_answer(RR(name, QTYPE.A, rdata=A("10.0.0.1")))
        r.add_answer(RR(name, QTYPE.TXT, rdata=TXT("x" * 50)))
        r.add_answer(RR(name, QTYPE.CAA, rdata=CAA(0, "issue", "ca.example")))
        r.add_answer(RR(name, QTYPE.SRV, rdata=SRV(0, 0, 1, "t.example.")))
        out.append(bytes(r.pack()))
    return out


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    """One mutated packet."""
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 8)):
        if not data:
            data = bytearray(rng.choice(pool[:15]))
        op = rng.randrange(8)
        i = rng.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i] = rng.choice((0, 1, 0x3F, 0x40, 0x80, 0xC0, 0xFF, rng.randrange(256)))
        elif op == 2:
            del data[rng.randrange(len(data) + 1):]
        elif op == 3:
            other = rng.choice(pool)
            data[i:] = other[rng.randrange(len(other) + 1):]
        elif op == 4:  # a pointer to anywhere (forward, self, backward)
            data[i:i + 2] = struct.pack("!H", 0xC000 | rng.randrange(len(data) + 16))
        elif op == 5:  # a backward chain of pointers ending in a loop or the root
            chain = bytearray()
            base = i
            for k in range(rng.randint(2, 200)):
                chain += struct.pack("!H", 0xC000 | max(0, base + 2 * k - 2))
            data[i:i] = chain
        elif op == 6 and len(data) >= 12:
            k = rng.choice((4, 6, 8, 10))
            data[k:k + 2] = struct.pack("!H", rng.choice((0, 1, 2, 0xFFFF, rng.randrange(65536))))
        elif op == 7:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(data)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the fuzzer; return (and print) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="1,000,000 mutations")
    parser.add_argument("-n", type=int, help="number of mutations")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = args.n or (1_000_000 if args.full else 50_000)
    rng = random.Random(args.seed)
    pool = seeds()
    core = DNSCore(intercept=["server2.vesync.com"], allow=None, clock=task.Clock(),
                   answerAddress=lambda peer, local: "192.168.1.2")
    question = parseQuestion(pool[0])
    peers = [("192.168.1.9", 5353), ("203.0.113.5", 53), ("::1", 5353)]
    times: list[int] = []
    outcomes: Counter[str] = Counter()
    escapes: list[str] = []
    clock = time.perf_counter_ns
    started = time.monotonic()
    for k in range(n):
        data = mutate(rng, pool)
        if k % 8 == 0 and data:
            pool.append(data)  # keep some mutants as seeds for deeper mutations
            if len(pool) > 500:
                del pool[15]
        t0 = clock()
        try:
            outcome = core.handle(data, peers[k % 3], None)
            checkAnswer(data, {data[0] << 8 | data[1]} if len(data) > 1 else set(), question)
        except BaseException as e:  # noqa: BLE001 - counting escapes is the point
            escapes.append(f"{type(e).__name__}: {e}; input {data.hex()}")
            continue
        times.append(clock() - t0)
        outcomes[outcome.action] += 1
    elapsed = time.monotonic() - started
    times.sort()
    result = {
        "bench": "dns_fuzz", "inputs": n, "escapes": len(escapes),
        "internal_errors": core.counters.errors, "outcomes": dict(outcomes),
        "malformed": core.counters.malformed, "refused": core.counters.refused,
        "p99_us": round(times[int(len(times) * 0.99)] / 1000, 1) if times else None,
        "max_us": round(times[-1] / 1000, 1) if times else None,
        "seconds": round(elapsed, 1),
    }
    print(f"dns_fuzz: {n} inputs in {elapsed:.1f} s; escapes {len(escapes)};"
          f" internal errors {core.counters.errors}")
    print(f"  outcomes {dict(outcomes)}; malformed {core.counters.malformed}")
    print(f"  per packet: p99 {result['p99_us']} us, max {result['max_us']} us")
    for line in escapes[:5]:
        print("  ESCAPE", line)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(1 if (r := main())["escapes"] or r["internal_errors"] else 0)
