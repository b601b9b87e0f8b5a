"""
A cluster on loopback for the scale-out tests and C{bench/scaleout.py}: real C{twistd -n vesyncd} nodes
sharing a real PostgreSQL and a real mosquitto, and simulated plugs that find their node as a real plug
does, through the nodes' DNS responders.

Every node listens for plugs on its own loopback address (127.0.0.2, .3, .4, ...) on one shared port and
advertises that address, so the DNS answers (addresses only, no port) lead a plug to a node.  A
L{SeekingPlug} is a L{vesyncd.sim.plug.SimPlug} whose every (re)connection first asks the nodes' DNS
responders, in order, for C{server2.vesync.com} from the plug's own source address (127.1.x.y: each plug
looks like another host, so rendezvous hashing spreads them), then connects to the answered addresses in
order until one accepts.  That is what a plug does after losing its server: resolve again and reconnect.

Everything waits on conditions with deadlines (L{tests.fakes.waitFor}); nothing sleeps and hopes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dnslib import QTYPE, DNSRecord
from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol, Factory

from tests.twistd_helpers import BIN, START_TIMEOUT, followLines
from vesyncd.auth import readToken
from vesyncd.control.client import ControlClient, connect
from vesyncd.paths import CONTROL_SOCKET, TOKEN_FILE
from vesyncd.sim.plug import SimPlug, SimPlugProtocol, plugId

VESYNC_NAME = "server2.vesync.com"
#: Seconds one DNS server may take to answer before the next is asked.
DNS_TIMEOUT = 0.5
#: Seconds one TCP connection attempt may take.
CONNECT_TIMEOUT = 2.0
#: The longest wait between a plug's reconnection attempts (speed 1).
MAX_BACKOFF = 4.0


def nodeAddress(index: int) -> str:
    """The loopback address of node C{index} (0 -> 127.0.0.2)."""
    return f"127.0.0.{index + 2}"


def plugSource(index: int) -> str:
    """The loopback source address plug C{index} asks DNS from (127.1.x.y, never .0 or .255)."""
    return f"127.1.{index // 200}.{index % 200 + 1}"


def freeSharedPort(tries: int = 50) -> int:
    """A port number free for TCP and UDP on every address right now (bound on the wildcard address)."""
    import socket

    for _ in range(tries):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("0.0.0.0", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def clusterSupported() -> str | None:
    """None when this vesyncd takes C{--node} and C{--database}; else why not (the reason of a skip)."""
    from vesyncd.tap import Options

    names = {p[0] for p in getattr(Options, "optParameters", [])}
    for base in Options.__mro__:
        names |= {p[0] for p in getattr(base, "optParameters", []) or []}
    missing = [o for o in ("node", "database", "mqtt") if o not in names]
    return None if not missing else f"vesyncd.tap.Options has no --{', --'.join(missing)} yet"


# -- nodes ------------------------------------------------------------------------------------------


class NodeProcess:
    """One C{twistd -n vesyncd --node NAME} on its own loopback address, with its log read by a thread."""

    def __init__(self, root: Path, name: str, ip: str, *, plugPort: int, dnsPort: int, database: str,
                 mqttPort: int, heartbeat: float = 1.0, lease: float = 3.0, extra: tuple[str, ...] = ()) -> None:
        self.name, self.ip, self.plugPort, self.dnsPort = name, ip, plugPort, dnsPort
        self.stateDir = (root / name).resolve()
        self.stateDir.mkdir(parents=True, exist_ok=True)
        self.command = [
            str(BIN / "twistd"), "-n", "--pidfile=", "vesyncd", "--node", name, "--database", database,
            "--mqtt", f"mqtt://127.0.0.1:{mqttPort}", "--plugs", f"tcp:{plugPort}:interface={ip}",
            "--address", ip, "--dns-interface", ip, "--dns-port", str(dnsPort), "--dns-rate-limit", "0",
            "--dns-upstream", "127.0.0.1:9", "--state-dir", str(self.stateDir), "--no-http", "--timezone", "UTC",
            "--node-heartbeat", str(heartbeat), "--node-lease", str(lease),
            "--max-new-plugs-per-minute", "100000", *extra]
        self.seen: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.client: ControlClient | None = None

    def start(self) -> None:
        """Start the process (see L{ready})."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env = {k: v for k, v in env.items() if not k.startswith("VESYNCD_")}
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, env=env, cwd=self.stateDir)
        self.lines = followLines(self.process)

    def drain(self) -> None:
        """Move the log lines read so far into C{seen}."""
        while True:
            try:
                line = self.lines.get_nowait()
            except Exception:
                return
            if line is None:
                return
            self.seen.append(line)

    def logged(self, text: str) -> bool:
        """Whether a log line so far contains C{text} (fails when the process has ended)."""
        self.drain()
        if any(text in line for line in self.seen):
            return True
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"node {self.name} exited ({self.process.returncode}):\n" + "\n".join(self.seen[-40:]))
        return False

    @inlineCallbacks
    def ready(self) -> Any:
        """Wait until the control port listens, then connect a control client (C{self.client})."""
        from tests.fakes import waitFor

        yield waitFor(lambda: self.logged("control port listening on"), timeout=START_TIMEOUT,
                      what=f"node {self.name}'s control port")
        token = readToken(self.stateDir / TOKEN_FILE)
        self.client = yield connect(reactor, f"unix:{self.stateDir / CONTROL_SOCKET}", token)
        return self.client

    def kill9(self) -> float:
        """SIGKILL the node now; returns the time it was sent."""
        assert self.process is not None
        if self.client is not None:
            self.client.close()
            self.client = None
        at = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return at

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bound; the client is closed first."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.drain()
        keep = os.environ.get("SCALEOUT_KEEP_LOGS")  # a directory: each node's log is copied there
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / f"{self.name}.log").write_text("\n".join(self.seen) + "\n")


# -- plugs ------------------------------------------------------------------------------------------


class _Answer(DatagramProtocol):
    """Waits for the one answer to a query with id C{qid}."""

    def __init__(self, qid: int, answered: Deferred) -> None:
        self.qid = qid
        self.answered = answered

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not self.answered.called and len(data) >= 2 and int.from_bytes(data[:2], "big") == self.qid:
            self.answered.callback(data)


def resolve(source: str, server: tuple[str, int], timeout: float = DNS_TIMEOUT) -> Deferred:
    """The A records for L{VESYNC_NAME} from C{server}, asked from C{source}; fails after C{timeout}."""
    query = DNSRecord.question(VESYNC_NAME, "A")
    qid = random.randrange(1, 65535)
    query.header.id = qid
    answered: Deferred = Deferred()
    port = reactor.listenUDP(0, _Answer(qid, answered), interface=source)
    port.write(bytes(query.pack()), server)
    timer = reactor.callLater(timeout, lambda: answered.called or answered.errback(TimeoutError(f"no answer from {server}")))

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        port.stopListening()
        return result

    answered.addBoth(done)
    answered.addCallback(lambda data: [str(rr.rdata) for rr in DNSRecord.parse(data).rr if rr.rtype == QTYPE.A])
    return answered


class RecordingPlug(SimPlug):
    """A simulated plug that notes every energy report it sends: (monotonic time, node address, ws)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.reports: list[tuple[float, str | None, int]] = []
        self.node: str | None = None

    def send(self, obj: dict[str, Any]) -> None:
        """Send, noting a report."""
        if obj.get("uri") == "/report" and self.protocol is not None:
            self.reports.append((time.monotonic(), self.node, int(obj["e"], 16)))
        super().send(obj)


class _SeekingProtocol(SimPlugProtocol):
    def __init__(self, seeker: "SeekingPlug", host: str) -> None:
        super().__init__(seeker.plug, host, seeker.port)
        self.seeker = seeker
        self.address = host

    def upgraded(self) -> None:
        self.seeker.attempts = 0
        self.seeker.plug.node = self.address
        super().upgraded()

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.seeker.plug.node = None
        self.seeker.ended()


class SeekingPlug:
    """Keeps one plug connected to a live node, found through the nodes' DNS responders at every attempt."""

    def __init__(self, plug: RecordingPlug, source: str, dnsServers: Callable[[], list[tuple[str, int]]],
                 port: int) -> None:
        self.plug = plug
        self.source = source
        self.dnsServers = dnsServers
        self.port = port
        self.attempts = 0
        self.running = False
        self.retry: Any = None
        #: How many times this plug connected (logged in or not).
        self.connections = 0

    def start(self, delay: float = 0.0) -> None:
        self.running = True
        self.retry = reactor.callLater(delay, self.attempt)

    def stop(self) -> None:
        self.running = False
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        if self.plug.protocol is not None and self.plug.protocol.transport is not None:
            self.plug.protocol.transport.abortConnection()

    @inlineCallbacks
    def attempt(self) -> Any:
        self.retry = None
        if not self.running:
            return
        addresses: list[str] = []
        for server in self.dnsServers():
            try:
                addresses = yield resolve(self.source, server)
            except Exception:
                continue
            if addresses:
                break
        for address in addresses:
            if not self.running:
                return
            endpoint = endpoints.TCP4ClientEndpoint(reactor, address, self.port, timeout=CONNECT_TIMEOUT)
            try:
                yield endpoint.connect(Factory.forProtocol(lambda a=address: _SeekingProtocol(self, a)))
            except Exception:
                continue
            self.connections += 1
            return
        self.ended()

    def ended(self) -> None:
        if not self.running or (self.retry is not None and self.retry.active()):
            return
        self.attempts += 1
        delay = min(MAX_BACKOFF, 0.2 * 2 ** min(self.attempts, 6))
        self.retry = reactor.callLater(random.uniform(0.5, 1.0) * delay, self.attempt)


@dataclass
class Fleet:
    """C{count} seeking plugs (firmware 1.89, ids from C{seed}); C{speed} shortens their timers."""

    count: int
    dnsServers: Callable[[], list[tuple[str, int]]]
    port: int
    speed: float = 20.0
    seed: str = "scaleout"
    seekers: list[SeekingPlug] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.count):
            plug = RecordingPlug(reactor, plugId(self.seed, i), speed=self.speed, load_w=20.0 + i % 7,
                                 relay=i % 2 == 0)
            self.seekers.append(SeekingPlug(plug, plugSource(i), self.dnsServers, self.port))

    @property
    def plugs(self) -> list[RecordingPlug]:
        return [s.plug for s in self.seekers]

    def start(self, spread: float = 2.0) -> None:
        for i, seeker in enumerate(self.seekers):
            seeker.start(spread * i / max(1, self.count))

    def stop(self) -> None:
        for seeker in self.seekers:
            seeker.stop()

    def online(self) -> list[RecordingPlug]:
        return [p for p in self.plugs if p.loggedIn and p.node is not None]

    def on(self, address: str) -> list[RecordingPlug]:
        """The plugs logged in to the node at C{address} now."""
        return [p for p in self.plugs if p.loggedIn and p.node == address]


def dbQuery(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on the shared database (a short connection of its own)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


class Cluster:
    """C{count} nodes (named a, b, c, ...) on 127.0.0.2, .3, ... sharing one plug port and one DNS port."""

    def __init__(self, root: Path, database: str, mqttPort: int, count: int = 3, **kw: Any) -> None:
        self.database = database
        self.plugPort = freeSharedPort()
        self.dnsPort = freeSharedPort()
        self.nodes = [NodeProcess(root, chr(ord("a") + i), nodeAddress(i), plugPort=self.plugPort,
                                  dnsPort=self.dnsPort, database=database, mqttPort=mqttPort, **kw)
                      for i in range(count)]

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.nodes if n.name == name)

    def byAddress(self, address: str | None) -> NodeProcess | None:
        return next((n for n in self.nodes if n.ip == address), None)

    def dnsServers(self) -> list[tuple[str, int]]:
        """Every node's DNS responder, as a plug's DHCP lease would list them (dead ones included)."""
        return [(n.ip, self.dnsPort) for n in self.nodes]

    @inlineCallbacks
    def start(self, timeout: float = START_TIMEOUT) -> Any:
        """Start every node; fires once each answers its control port and the first sees them all alive."""
        from tests.fakes import waitFor

        for n in self.nodes:
            n.start()
        for n in self.nodes:
            yield n.ready()
        first = self.nodes[0]
        seen: list[dict[str, Any]] = []

        def ask() -> None:
            first.client.nodes().addCallbacks(seen.append, lambda f: None)  # type: ignore[union-attr]

        def allAlive() -> bool:
            if seen and seen[-1].get("alive") == len(self.nodes):
                return True
            ask()
            return False

        ask()
        yield waitFor(allAlive, timeout=timeout, what="every node alive in `nodes`")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@inlineCallbacks
def eventually(call: Callable[[], Deferred], check: Callable[[Any], bool], timeout: float, what: str,
               every: float = 0.1) -> Any:
    """Call C{call()} until its result passes C{check} (failures count as not yet); the passing result.
    Fails after C{timeout} seconds with the last result or error in the message."""
    from twisted.internet import task

    deadline = reactor.seconds() + timeout
    last: Any = None
    while True:
        try:
            last = yield call()
            if check(last):
                return last
        except Exception as e:
            last = e
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {str(last)[:3000]}")
        yield task.deferLater(reactor, every, lambda: None)


def sentReports(plug: RecordingPlug, uncertain: Callable[[float, str | None], bool] = lambda at, node: False
                ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((count, watt-seconds) of the reports that must have been stored, (count, watt-seconds) of all sent).

    A report is uncertain (C{uncertain(at, node)}) when it may have been lost without anyone having been told
    it was taken: sent to a node in the moments before it died, or just before the plug was stopped."""
    sure = [ws for at, node, ws in plug.reports if not uncertain(at, node)]
    every = [ws for _, _, ws in plug.reports]
    return (len(sure), sum(sure)), (len(every), sum(every))
