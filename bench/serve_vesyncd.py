"""
Run vesyncd for a benchmark: the daemon built by L{vesyncd.tap.makeService} (exactly what
C{twistd vesyncd} runs), on the epoll reactor, logging to a file as C{twistd -n --logfile} does.

    python -m bench.serve_vesyncd --port P --state-dir D [--frame-rate R] [--tracemalloc]

C{--frame-rate} lifts the per-plug frame limit (L{vesyncd.plugs.server.FRAME_RATE}) for the saturation
test (the control port is always there, as in the daemon; C{--control} is accepted for older
callers); C{--tracemalloc} writes the top allocation sites to C{STATE_DIR/tracemalloc.txt}
on SIGUSR1.  On SIGUSR2 it writes C{STATE_DIR/heap.json}: glibc's, SQLite's and pymalloc's heap
figures (cheap; no tracemalloc needed), the cyclic collector's passes and pauses (measured here
and as L{vesyncd.gcpolicy} counts them) and the reactor-pause monitor's figures.  SIGRTMIN starts
(or restarts) the reactor-pause monitor (L{bench.pausemon}: a 1 ms timer whose lateness is the
reactor's pause), SIGRTMIN+1 stops it.  C{--gc-policy off} runs without vesyncd's collector policy
(CPython's defaults), to measure what it changes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys


def nativeHeap() -> dict[str, int]:
    """Memory outside Python's object allocator: glibc's heap (C{mallinfo2}: bytes in use, free
    but held, mmapped) and SQLite's own allocations (C{sqlite3_memory_used}, page caches included)."""
    import ctypes

    out: dict[str, int] = {}
    try:
        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
        out.update(malloc_arena=info.arena, malloc_in_use=info.uordblks, malloc_free=info.fordblks,
                   malloc_mmapped=info.hblkhd)
    except (OSError, AttributeError):
        pass
    try:
        sqlite = ctypes.CDLL("libsqlite3.so.0")
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite_memory_used"] = sqlite.sqlite3_memory_used()
    except (OSError, AttributeError):
        pass
    return out


def pymallocStats() -> dict[str, int]:
    """pymalloc's summary from C{sys._debugmallocstats} (which writes to file descriptor 2):
    arenas in use, bytes in allocated and in free blocks, and the total it holds."""
    import os
    import tempfile

    wanted = {"# arenas allocated current": "pymalloc_arenas", "# bytes in allocated blocks": "pymalloc_allocated",
              "# bytes in available blocks": "pymalloc_available", "# bytes lost to pool headers": "pymalloc_headers",
              "Total": "pymalloc_total"}
    out: dict[str, int] = {}
    with tempfile.TemporaryFile("w+") as f:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        for line in f:
            head, _, value = line.rpartition("=")
            key = wanted.get(head.strip())
            if key and key not in out and value.strip().replace(",", "").isdigit():
                out[key] = int(value.strip().replace(",", ""))
    return out


class GCPauses:
    """Counts the cyclic collector's passes per generation and their longest and total pause."""

    def __init__(self, trace: bool = False) -> None:
        import gc
        import threading
        import time

        self._clock = time.perf_counter
        self._cpu = time.thread_time
        self._thread = threading.get_ident
        self._counts = gc.get_count
        self._mainThread = threading.get_ident()
        self._start = 0.0
        self._startCpu = 0.0
        self._startCounts: tuple[int, ...] = (0, 0, 0)
        self.count = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        #: The slowest passes (over 5 ms), at most 20: what each found and where its time went.
        self.slow: list[dict[str, object]] = []
        #: With C{trace}: at the start of every pass, the largest containers among the objects it will
        #: walk (costly: diagnosis only), kept for the slow ones.
        self.trace = trace
        self._objects = gc.get_objects
        self._biggest: dict[str, object] = {}
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = self._clock()
            self._startCpu = self._cpu()
            self._startCounts = self._counts()
            if self.trace:
                self._biggest = self.biggest(info["generation"])
                self._start = self._clock()  # the survey is not the pass
                self._startCpu = self._cpu()
            return
        took, gen = self._clock() - self._start, info["generation"]
        self.count[gen] += 1
        self.total[gen] += took
        self.longest[gen] = max(self.longest[gen], took)
        if took > 0.005:
            # Wall time against the collecting thread's CPU time tells a pass that computed for
            # long from one that was descheduled (or waited) half way.
            self.slow.append({"gen": gen, "ms": round(took * 1000, 2),
                              "cpu_ms": round((self._cpu() - self._startCpu) * 1000, 2),
                              "thread": "reactor" if self._thread() == self._mainThread else "other",
                              "counts_before": list(self._startCounts), "collected": info["collected"],
                              **({"biggest": self._biggest} if self.trace else {})})
            self.slow.sort(key=lambda row: -row["ms"])
            del self.slow[20:]

    def biggest(self, generation: int) -> dict[str, object]:
        """What a pass of C{generation} will walk: objects per generation up to it, the most common
        types among them and the largest containers (length, type)."""
        import collections

        sizes: list[int] = []
        types: collections.Counter[str] = collections.Counter()
        sized: list[tuple[int, str]] = []
        for g in range(generation + 1):
            objects = self._objects(g)
            sizes.append(len(objects))
            for obj in objects:
                name = f"{type(obj).__module__}.{type(obj).__qualname__}"
                types[name] += 1
                try:
                    if isinstance(obj, (dict, list, set, tuple, frozenset)) or hasattr(obj, "maxlen"):
                        n = len(obj)
                    else:
                        n = len(getattr(obj, "__dict__", ()))
                except Exception:
                    continue
                if n > 1000:
                    sized.append((n, name))
        return {"objects": sizes, "types": types.most_common(6), "largest": sorted(sized, reverse=True)[:3]}

    def figures(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for gen in range(3):
            out[f"gc{gen}_passes"] = self.count[gen]
            out[f"gc{gen}_longest_ms"] = round(self.longest[gen] * 1000, 3)
            out[f"gc{gen}_total_ms"] = round(self.total[gen] * 1000, 1)
        out["gc_slow_passes"] = list(self.slow)
        return out


class StallSampler:
    """While the reactor-pause monitor's timer is overdue by more than C{after} seconds, a thread
    samples the reactor thread's stack (every C{every} seconds: it needs the interpreter lock, which
    Python code gives up every few ms, a collector pass only at its end) and counts each stack's
    innermost frames: what the reactor was doing during its long pauses."""

    def __init__(self, monitor: object, after: float = 0.006, every: float = 0.002, depth: int = 10) -> None:
        import collections
        import threading

        self.monitor = monitor
        self.after = after
        self.every = every
        self.depth = depth
        self.stacks: collections.Counter[str] = collections.Counter()
        self.main = threading.get_ident()
        self.thread = threading.Thread(target=self.run, name="stall-sampler", daemon=True)
        self.thread.start()

    def run(self) -> None:
        import time
        import traceback

        while True:
            time.sleep(self.every)
            monitor = self.monitor
            if not monitor.running or monitor.timer() - monitor.due < self.after:
                continue
            frame = sys._current_frames().get(self.main)
            if frame is None:
                continue
            frames = traceback.extract_stack(frame)[-self.depth:]
            key = " <- ".join(f"{f.name} ({'/'.join(f.filename.split('/')[-2:])}:{f.lineno})" for f in reversed(frames))
            self.stacks[key] += 1

    def figures(self) -> dict[str, object]:
        return {"stall_stacks": self.stacks.most_common(8)}


def main(argv: list[str] | None = None) -> int:
    from bench.pausemon import ReactorPauses, addDiagnosisFlags

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--frame-rate", type=float, default=None)
    p.add_argument("--control", action="store_true", help="accepted for older callers: the control port is always on")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--logfile", default=None)
    p.add_argument("--backlog", type=int, default=None, help="listen backlog (default: vesyncd's own)")
    p.add_argument("--experiment", action="append", default=[],
                   help="try a tuning not (yet) in vesyncd: no-utf8-validate, gc-freeze, gc-threshold, lazy-pformat, class-config, drop-handshake, no-store")
    p.add_argument("--daemon-arg", action="append", default=[],
                   help="one more vesyncd option (repeatable; e.g. --daemon-arg=--http=tcp:PORT:interface=127.0.0.1)")
    addDiagnosisFlags(p)
    p.add_argument("--gc-policy", choices=["on", "off"], default="on",
                   help="off: stop vesyncd's GC policy (vesyncd.gcpolicy) after start-up, CPython's defaults")
    args = p.parse_args(argv)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from vesyncd import tap

    logfile = open(args.logfile or f"{args.state_dir}/vesyncd.log", "a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(logfile)], redirectStandardIO=False)
    config = tap.Options()
    plugs = f"tcp:{args.port}:interface=127.0.0.1" + (f":backlog={args.backlog}" if args.backlog else "")
    # Thousands of plugs never seen before log in at once: the new-id limit is not what is measured.
    base = ["--plugs", plugs, "--state-dir", args.state_dir, "--max-new-plugs-per-minute", "10000000",
            "--no-dns", "--refresh-interval", "0"]
    if not any(a.startswith("--http") for a in args.daemon_arg):
        base.append("--no-http")
    config.parseOptions(base + args.daemon_arg)
    # no-store: the in-memory ledger instead of SQLite.
    top = tap.makeService(config, reactor, persistent="no-store" not in args.experiment)
    if args.frame_rate is not None:
        top.plugListener.factory.frameRate = args.frame_rate
    factory = top.plugListener.factory
    if "no-utf8-validate" in args.experiment:
        # vesyncd.plugs.codec.parseObject decodes (and so validates) UTF-8 itself.
        factory.setProtocolOptions(utf8validateIncoming=False)
    if "lazy-pformat" in args.experiment:
        # Autobahn pformats its ~40 options for a debug line on every connection, logged or not.
        import autobahn.websocket.protocol as abp

        realPformat = abp.pformat

        class Lazy:
            __slots__ = ("value",)

            def __init__(self, value: object) -> None:
                self.value = value

            def __str__(self) -> str:
                return realPformat(self.value)

            __repr__ = __str__

        abp.pformat = Lazy
    if "class-config" in args.experiment:
        # Options as class attributes of a per-factory subclass: Autobahn then copies none of
        # them into every connection's __dict__.
        from autobahn.websocket.protocol import WebSocketServerProtocol

        attrs = {a: getattr(factory, a) for a in WebSocketServerProtocol.CONFIG_ATTRS if hasattr(factory, a)}
        factory.protocol = type("TunedPlugServerProtocol", (factory.protocol,), attrs)
    if "drop-handshake" in args.experiment:
        # Forget the parsed opening handshake once the connection is open.
        base = factory.protocol
        original = base.onOpen

        def onOpen(self: object) -> None:
            original(self)
            for name in ("http_request_data", "http_headers", "http_status_line", "http_request_uri",
                         "http_request_path", "http_request_params", "http_response_data",
                         "http_request_host", "websocket_extensions", "websocket_protocols",
                         "websocket_origin"):
                if name in self.__dict__:
                    setattr(self, name, None)

        factory.protocol = type("HandshakeDroppingProtocol", (base,), {"onOpen": onOpen})
    for name in args.experiment:
        if name.startswith("switch-interval="):
            sys.setswitchinterval(float(name.split("=", 1)[1]))
    if "gc-threshold" in args.experiment:
        import gc

        gc.set_threshold(50_000, 50, 100)
    top.privilegedStartService()
    top.startService()
    gcFacts = top.context.info.facts.get("gc")
    if args.gc_policy == "off":
        from vesyncd.gcpolicy import GCPolicy

        for part in list(top):
            if isinstance(part, GCPolicy):
                part.disownServiceParent()
        gcFacts = None
    if args.tracemalloc:
        def dump(*_: object) -> None:
            import gc
            import tracemalloc

            gc.collect()
            snap = tracemalloc.take_snapshot()
            with open(f"{args.state_dir}/tracemalloc.txt", "w") as f:
                total = sum(s.size for s in snap.statistics("filename"))
                f.write(f"total traced {total} bytes\n")
                for key, value in nativeHeap().items():
                    f.write(f"native {key} {value}\n")
                for stat in snap.statistics("lineno")[:60]:
                    f.write(f"{stat.size:>12} {stat.count:>8}  {stat.traceback}\n")
            snap.dump(f"{args.state_dir}/tracemalloc-{int(reactor.seconds())}.snap")
            sys._debugmallocstats()  # pymalloc's arenas and pools, to stderr

        signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(dump))

    pauses = GCPauses(trace=args.gc_trace)

    monitor = ReactorPauses(reactor, attribute=args.split_pauses)
    sampler = StallSampler(monitor) if args.trace_stalls else None

    def heap(*_: object) -> None:
        import gc

        doc = {**nativeHeap(), **pymallocStats(), **pauses.figures(), **monitor.figures(),
               "gc_frozen": gc.get_freeze_count(), "gc_threshold": list(gc.get_threshold())}
        if gcFacts is not None:
            doc["gcpolicy"] = gcFacts()
        if sampler is not None:
            doc.update(sampler.figures())
        with open(f"{args.state_dir}/heap.json.tmp", "w") as f:
            json.dump(doc, f)
        os.replace(f"{args.state_dir}/heap.json.tmp", f"{args.state_dir}/heap.json")

    signal.signal(signal.SIGUSR2, lambda *a: reactor.callFromThread(heap))
    signal.signal(signal.SIGRTMIN, lambda *a: reactor.callFromThread(monitor.start))
    signal.signal(signal.SIGRTMIN + 1, lambda *a: reactor.callFromThread(monitor.stop))
    if "gc-freeze" in args.experiment:
        import gc

        gc.collect()
        gc.freeze()  # the objects of start-up are never collected: keep them out of every GC pass
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
