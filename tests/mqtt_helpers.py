"""
Test fixtures for the MQTT bridge: a real mosquitto on a free loopback port, a watching client,
and the daemon built around C{tap.makeService} with the MQTT feature.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from typing import Any, Callable

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks

from tests.fakes import waitFor

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
SKIP_REASON = "mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)"


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TurnClock(task.Clock):
    """A Clock on which a call made with no delay waits for the next L{turn}, as on a real reactor
    (where calls made while timed calls run wait for the next iteration); C{advance(0)} would run
    a whole chain of them at once."""

    #: How far one turn moves the clock.
    TURN = 0.001

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Schedule a call; one with no delay runs at the next turn."""
        return super().callLater(delay if delay > 0 else self.TURN, callable, *args, **kw)

    def turn(self) -> None:
        """Run the calls due by the next turn (not the ones they schedule)."""
        self.advance(self.TURN)


class Broker:
    """A private mosquitto: C{listener PORT 127.0.0.1}, anonymous, no persistence."""

    def __init__(self, port: int | None = None, anonymous: bool = True) -> None:
        self.port = port or freePort()
        self.anonymous = anonymous
        self.dir = tempfile.mkdtemp(prefix="vesyncd-mqtt-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Deferred:
        """Start mosquitto; fires once it accepts connections."""
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous {str(self.anonymous).lower()}\n"
                    "persistence false\n"
                    "set_tcp_nodelay true\n"
                    "log_dest none\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "ab"))

        def accepting() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {open(os.path.join(self.dir, 'stderr')).read()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        return waitFor(accepting, what="mosquitto to listen")

    def stop(self) -> None:
        """Kill mosquitto and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Watcher:
    """A paho client (its own network thread) that records every message on C{topic} (all: C{#})."""

    def __init__(self, port: int, topic: str = "#") -> None:
        from paho.mqtt import client as pahoclient

        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.latest: dict[str, bytes] = {}
        self.subscribed = threading.Event()
        self.client = pahoclient.Client(pahoclient.CallbackAPIVersion.VERSION2, client_id=f"watch-{id(self)}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self.subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.latest[msg.topic] = bytes(msg.payload)

    def ready(self) -> Deferred:
        """Fires once the subscription is in place."""
        return waitFor(self.subscribed.is_set, what="the watcher's subscription")

    def get(self, topic: str) -> bytes | None:
        """The latest payload seen on C{topic}."""
        with self.lock:
            return self.latest.get(topic)

    def json(self, topic: str) -> Any:
        """The latest payload on C{topic} as JSON (None when absent or empty)."""
        raw = self.get(topic)
        return json.loads(raw) if raw else None

    def seenJSON(self, topic: str, check: Callable[[Any], bool]) -> Any:
        """The first JSON payload seen on C{topic} (since start or L{clear}) that C{check} accepts, even if a
        later one replaced it; None when there is none."""
        with self.lock:
            payloads = [payload for t, payload, _ in self.messages if t == topic and payload]
        for payload in payloads:
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            if check(doc):
                return doc
        return None

    def waitSeenJSON(self, topic: str, check: Callable[[Any], bool], timeout: float = 5.0) -> Deferred:
        """Fires with the first JSON payload on C{topic} that C{check} accepts, however briefly it was the
        latest (a short timer may have replaced it before a poll of the latest value would see it)."""
        return waitFor(lambda: self.seenJSON(topic, check), timeout, f"JSON on {topic} (now {self.get(topic)!r})")

    def waitValue(self, topic: str, value: bytes, timeout: float = 5.0) -> Deferred:
        """Fires once C{topic}'s latest payload is C{value}."""
        return waitFor(lambda: self.get(topic) == value, timeout, f"{topic} = {value!r} (now {self.get(topic)!r})")

    def waitJSON(self, topic: str, check: Callable[[Any], bool], timeout: float = 5.0) -> Deferred:
        """Fires with C{topic}'s latest JSON once C{check} accepts it."""
        def ok() -> Any:
            doc = self.json(topic)
            return doc if doc is not None and check(doc) else None
        return waitFor(ok, timeout, f"JSON on {topic} (now {self.get(topic)!r})")

    def clear(self) -> None:
        """Forget what was seen so far."""
        with self.lock:
            self.messages.clear()
            self.latest.clear()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        """Publish as another MQTT client would (e.g. Home Assistant)."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()



def seedPlugs(stateDir: str, ids: list[str]) -> None:
    """Store plugs in a state directory's database, so the daemon starts knowing them (offline)."""
    from pathlib import Path

    from vesyncd.core.model import PlugState
    from vesyncd.core.periods import hostZone
    from vesyncd.paths import DATABASE
    from vesyncd.storage.store import Store

    store = Store.open(Path(stateDir) / DATABASE, hostZone(), task.Clock())
    for plugId in ids:
        store.putPlug(PlugState(id=plugId))
    store.flush()
    store.detach()


class Daemon:
    """The daemon in-process, built by C{tap.makeService} with C{--mqtt}, plus simulated plugs."""

    def __init__(self, brokerPort: int, stateDir: str, extra: list[str] = ()) -> None:
        from vesyncd import tap

        self.config = tap.Options()
        # Other features must not bind fixed ports (DNS on 53) in this test.
        others = ["--no-dns", "--no-http"]
        self.config.parseOptions([*others, "--plugs", "tcp:0:interface=127.0.0.1", "--state-dir", stateDir,
                                  "--refresh-interval", "0", "--mqtt", f"mqtt://127.0.0.1:{brokerPort}",
                                  *extra])
        self.top = tap.makeService(self.config, reactor)
        self.hub = self.top.hub
        self.mqtt = self.top.context.mqtt
        self.mqtt.client.minDelay = 0.05
        self.mqtt.client.maxDelay = 0.3
        self.sim: Any = None

    @inlineCallbacks
    def start(self, plugs: int = 2) -> Any:
        """Start the services and connect C{plugs} simulated plugs; fires when they are online."""
        from vesyncd.sim.runner import Simulator

        self.top.startService()
        port = yield self.top.plugListener.listening
        if plugs:
            self.sim = Simulator(reactor, "127.0.0.1", port.getHost().port, plugs)
            self.sim.start()
            yield waitFor(lambda: len([p for p in self.hub.plugs() if p.online]) == plugs,
                          what="simulated plugs online")
        return self

    @inlineCallbacks
    def stop(self) -> Any:
        """Disconnect the simulated plugs and stop every service."""
        if self.sim is not None:
            self.sim.stop()
        if self.top.running:
            yield self.top.stopService()


@inlineCallbacks
def startBrokerAndWatcher(case: Any) -> Any:
    """Start a private broker, a fresh state directory and a watching client for the test C{case}, each
    removed by the case's cleanups; fires with C{(broker, stateDir, watcher)} once the watcher is subscribed."""
    broker = Broker()
    case.addCleanup(broker.cleanup)
    yield broker.start()
    stateDir = tempfile.mkdtemp(prefix="vesyncd-mqtt-state-")
    case.addCleanup(shutil.rmtree, stateDir, True)
    watcher = Watcher(broker.port)
    case.addCleanup(watcher.close)
    yield watcher.ready()
    return broker, stateDir, watcher
