"""The MQTT bridge under a hostile or busy broker side (issue 17 #7): republishes are coalesced and
drained in slices, the outbox towards the broker is bounded, live changes overtake a republish;
plug strings in discovery payloads are cleaned; each hub event goes out on the plug's C{event}
topic in the one event shape."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.fakes import FakeConnection
from tests.mqtt_helpers import MOSQUITTO, SKIP_REASON, Broker, Daemon, TurnClock, Watcher, seedPlugs, waitFor
from vesyncd.core import hub as h
from vesyncd.core.events import eventJSON
from vesyncd.core.model import PlugState
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt.bridge import MQTTBridge
from vesyncd.mqtt.outbox import Outbox
from vesyncd.plugs import codec as m

PLUGS = 3000
PLUG = "2b8e1f5c-0000-4000-8000-000000000001"


def plugId(i: int) -> str:
    """A valid, distinct plug id."""
    return f"{i:08x}-0000-4000-8000-{i:012x}"


class CountingPublisher:
    """Counts what the bridge publishes; can claim to be congested."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes, bool, bool]] = []
        self.retained: dict[str, bytes] = {}
        self.busy = False

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0,
                bulk: bool = False) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.log.append((topic, data, retain, bulk))
        if retain:
            self.retained[topic] = data

    def congested(self) -> bool:
        return self.busy


def bigBridge(plugs: int = PLUGS, **kw: Any) -> tuple[h.Hub, MQTTBridge, CountingPublisher, TurnClock]:
    """A bridge over a hub that knows C{plugs} (offline) plugs, started and fully published once."""
    clock = TurnClock()
    clock.advance(1_700_000_000)
    hub = h.Hub(clock, known=[PlugState(id=plugId(i)) for i in range(plugs)])
    publisher = CountingPublisher()
    bridge = MQTTBridge(hub, publisher, clock=clock, **kw)
    bridge.start()
    bridge.publishAll()
    drain(bridge, clock)
    return hub, bridge, publisher, clock


def drain(bridge: MQTTBridge, clock: TurnClock, turns: int = 10000) -> int:
    """Run reactor turns until no republish is running or queued; returns how many it took."""
    for turn in range(turns):
        if not bridge.republisher.busy:
            return turn
        clock.turn()
        if not (bridge.republisher.running or bridge.republisher.pending):
            clock.advance(1.0)  # a spaced request waits for its time
    raise AssertionError("the republish never finished")


def test_onlineStormPublishesAtMostTwoSets() -> None:
    """Ten 'online's from Home Assistant, one per reactor turn, with 3,000 plugs send at most two full sets."""
    hub, bridge, pub, clock = bigBridge()
    fullSet = len(pub.log)
    assert fullSet >= PLUGS * 9  # 7 discovery configs, availability and state per plug
    pub.log.clear()
    for _ in range(10):
        bridge.message("homeassistant/status", b"online")
        clock.turn()
    drain(bridge, clock)
    assert fullSet <= len(pub.log) <= 2 * fullSet
    assert bridge.republisher.runs == 3 and bridge.republisher.absorbed == 8


def test_onlinesFarApartEachRepublish() -> None:
    """'online's further apart than the spacing each bring a republish: a restarted Home Assistant is served."""
    hub, bridge, pub, clock = bigBridge(plugs=10)
    for _ in range(3):
        clock.advance(bridge.birthSpacing)
        bridge.message("homeassistant/status", b"online")
        assert bridge.republisher.running
        drain(bridge, clock)
    assert bridge.republisher.runs == 4


def test_republishIsSlicedPerReactorTurn() -> None:
    """A republish publishes one slice of plugs per reactor turn, as bulk messages after the status."""
    hub, bridge, pub, clock = bigBridge(slice=100)
    pub.log.clear()
    bridge.publishAll()
    first = len(pub.log)
    assert pub.log[0][0] == "vesyncd/status"
    assert first < 100 * 12
    turns = drain(bridge, clock)
    assert turns == PLUGS // 100 - 1
    assert all(bulk for topic, _, _, bulk in pub.log if topic.startswith("homeassistant/switch/"))


def test_relayCommandServedDuringRepublish() -> None:
    """A relay command arriving mid-republish reaches the plug at once and its change is published live."""
    hub, bridge, pub, clock = bigBridge()
    conn = FakeConnection()
    session = hub.login(conn, m.Login(id=PLUG, deviceName="vesync_wifi_outlet", firmVersion="1.89", relay=True))
    bridge.publishAll()
    assert bridge.republisher.running
    pub.log.clear()
    bridge.message(f"vesyncd/{PLUG}/relay/set", b"OFF")
    assert conn.sent[-1]["uri"] == "/relay"
    session.received(m.State(relay=False))
    live = [(t, p) for t, p, retain, bulk in pub.log if retain and not bulk]
    assert (f"vesyncd/{PLUG}/relay", b"OFF") in live
    drain(bridge, clock)


def test_congestedPublisherPausesRepublish() -> None:
    """While the publisher is congested no further slice goes out; L{MQTTBridge.drained} resumes."""
    hub, bridge, pub, clock = bigBridge(plugs=500, slice=50)
    pub.log.clear()
    pub.busy = True
    bridge.publishAll()
    clock.turn()
    clock.turn()
    assert not any(t.endswith("/state") for t, *_ in pub.log)
    assert bridge.republisher.waiting
    pub.busy = False
    bridge.drained()
    drain(bridge, clock)
    assert sum(1 for t, *_ in pub.log if t.endswith("/state")) == 500


def test_forgottenDuringRepublishStaysGone() -> None:
    """A plug forgotten while a republish runs is not published again by it."""
    hub, bridge, pub, clock = bigBridge(plugs=400, slice=50)
    bridge.publishAll()
    last = plugId(399)
    hub.forget(last)
    pub.log.clear()
    drain(bridge, clock)
    assert not any(last in t for t, *_ in pub.log)
    assert pub.retained[f"vesyncd/{last}/state"] == b""


def test_outboxLiveOvertakesBulkAndSupersedes() -> None:
    """Live values go before bulk ones; a live value replaces a waiting bulk one for the same topic."""
    box = Outbox()
    box.putRetained("a", b"bulk-a", bulk=True)
    box.putRetained("b", b"bulk-b", bulk=True)
    box.putRetained("b", b"live-b")
    box.putEvent("e", b"event")
    box.putRetained("a", b"bulk-a2", bulk=True)
    out = []
    while (item := box.pop()) is not None:
        out.append(item[:3])
    assert out == [("b", b"live-b", True), ("e", b"event", False), ("a", b"bulk-a2", True)]


def test_outboxBounded() -> None:
    """The outbox keeps at most its topics and bytes, dropping (and counting) the oldest bulk values first."""
    box = Outbox(maxTopics=100, maxBytes=10_000, maxEvents=10)
    box.putRetained("live", b"x")
    for i in range(1000):
        box.putRetained(f"t{i}", b"y" * 50, bulk=True)
    assert len(box.live) + len(box.bulk) <= 100 and box.size <= 10_000
    assert "live" in box.live
    assert box.dropped >= 900
    for i in range(50):
        box.putEvent("e", str(i).encode())
    assert len(box.events) == 10 and box.eventsDropped == 40


def test_clientKeepsBoundedStateWhileBrokerAway() -> None:
    """Without a broker the client keeps the latest retained value per topic within its bounds, asks
    for a republish when it had to drop some, skips events, and reports congestion."""
    from vesyncd.mqtt.client import ReactorMQTTClient
    from vesyncd.mqtt.settings import BrokerSettings

    dropped: list[bool] = []
    client = ReactorMQTTClient(TurnClock(), BrokerSettings("127.0.0.1", 1), willTopic="v/status", willPayload=b"offline",
                               subscriptions=[], onConnect=lambda: None, onMessage=lambda t, p, r: None,
                               onDropped=lambda: dropped.append(True), maxPending=1000, highWater=500, lowWater=100)
    for i in range(5000):
        client.publish(f"v/{i % 2000}/state", str(i).encode(), bulk=i % 2 == 0)
    client.publish("v/x/event", b"{}", retain=False)
    assert client.backlog() == 1000 and client.outbox.size <= client.outbox.maxBytes
    assert dropped and client.outbox.dropped >= 2000
    assert client.eventsSkipped == 1
    assert client.congested()
    box = client.outbox
    assert len(box.bulk) == 0  # bulk values (a republish makes them again) go first
    newest = dict((box.pop() or ("", b"", True, 0))[:2] for _ in range(1000))
    assert (newest["v/999/state"], newest["v/1999/state"]) == (b"4999", b"3999")


def test_clientHandsPahoABoundedNumberPerTurn() -> None:
    """A broker that keeps up (paho writes each message at once and reports it written) still gets
    at most C{feedPerTurn} messages per reactor turn, however many are published in the turn; the
    rest wait in the outbox and follow turn by turn, and a dropped connection leaves no turn scheduled."""
    from vesyncd.mqtt.client import ReactorMQTTClient
    from vesyncd.mqtt.settings import BrokerSettings

    clock = TurnClock()
    client = ReactorMQTTClient(clock, BrokerSettings("127.0.0.1", 1), willTopic="v/status", willPayload=b"offline",
                               subscriptions=[], onConnect=lambda: None, onMessage=lambda t, p, r: None,
                               maxPending=10_000, feedPerTurn=100)

    class KeepingUp:
        """paho writing every message at once, as over a fast loopback."""

        def __init__(self) -> None:
            self.published: list[str] = []

        def socket(self) -> None:
            return None

        def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
            self.published.append(topic)
            client._onPublish(self, None, len(self.published), None, None)
            return type("Info", (), {"rc": 0})()

    paho = KeepingUp()
    client._paho, client.connected = paho, True
    for i in range(1000):  # a republish's slice, or what waited while the socket was full
        client.publish(f"v/{i}/state", b"x", bulk=True)
    assert len(paho.published) == 100  # this turn's share
    perTurn = []
    while client.backlog():
        before = len(paho.published)
        clock.turn()
        perTurn.append(len(paho.published) - before)
    assert perTurn == [100] * 9 and len(set(paho.published)) == 1000
    for i in range(500):
        client.publish(f"v/more/{i}", b"x")

    def feedPending() -> bool:
        return any(c.func == client._feedLater for c in clock.getDelayedCalls())

    assert feedPending()
    client._dropConnection(paho, "test")
    assert not feedPending()


def test_discoveryNamesCleaned() -> None:
    """Control, format and separator characters from a plug never reach a discovery payload."""
    plug = PlugState(id=PLUG, alias="Lamp\x1b[2J\u202e", firmware="1.\x0789",
                     device={"deviceName": "out\x1b]0;owned\x07let", "deviceVersion": "\u20281.5"})
    device = ha.deviceInfo(plug, "vesyncd")
    assert device["name"] == "Lamp[2J"
    assert device["sw_version"] == "1.89"
    assert device["model_id"] == "out]0;ownedlet"
    assert device["hw_version"] == "1.5"
    assert ha.deviceInfo(PlugState(id=PLUG, alias="\x1b\x1b"), "vesyncd")["name"] == PLUG


def test_eventsPublishedInTheOneShape() -> None:
    """Each hub event goes to <prefix>/<plug>/event, not retained, as core.events.eventJSON gives it."""
    hub, bridge, pub, clock = bigBridge(plugs=0)
    seen: list[h.Event] = []
    hub.subscribe(seen.append)
    session = hub.login(FakeConnection(), m.Login(id=PLUG, deviceName="x", firmVersion="1.89", relay=True))
    session.received(m.State(relay=False))
    events = [(t, json.loads(p)) for t, p, retain, _ in pub.log if t.endswith("/event")]
    assert all(not retain for t, _, retain, _ in pub.log if t.endswith("/event"))
    assert [t for t, _ in events] == [f"vesyncd/{PLUG}/event"] * len(seen)
    relay = [doc for _, doc in events if doc["event"] == "relay"][-1]
    assert set(relay) == {"event", "plug", "name", "alias", "at", "ts", "data"}
    assert relay == eventJSON(seen[-1], hub.get(PLUG))
    hub.forget(PLUG)
    assert json.loads(pub.log[-1 - len(ha.plugConfigTopics("homeassistant", PLUG)) - 3][1])["event"] == "forgotten"


class OnlineStormAgainstBroker(unittest.TestCase):
    """Ten 'online's on homeassistant/status against a real mosquitto, with 500 plugs."""

    if MOSQUITTO is None:
        skip = SKIP_REASON

    timeout = 60

    @inlineCallbacks
    def test_onlineStorm(self) -> Any:
        """Messages stay within about two full sets, the outbox bounded, and a relay command is served quickly."""
        broker = Broker()
        self.addCleanup(broker.cleanup)
        yield broker.start()
        stateDir = tempfile.mkdtemp(prefix="vesyncd-mqtt-state-")
        self.addCleanup(shutil.rmtree, stateDir, True)
        watcher = Watcher(broker.port)
        self.addCleanup(watcher.close)
        yield watcher.ready()
        seedPlugs(stateDir, [plugId(i) for i in range(499)])
        daemon = Daemon(broker.port, stateDir)
        self.addCleanup(daemon.stop)
        yield daemon.start(1)
        plug = daemon.sim.plugs[0]
        # The plug's events on a subscriber of their own: the broker may drop QoS 0 messages to a
        # subscriber of everything that falls behind in the storm, and an event is sent only once.
        eventWatcher = Watcher(broker.port, f"vesyncd/{plug.id}/event")
        self.addCleanup(eventWatcher.close)
        yield eventWatcher.ready()
        bridge = daemon.mqtt.bridge
        client = daemon.mqtt.client

        most = [0]

        def idle() -> bool:
            most[0] = max(most[0], client.backlog())
            # The plugs' energy topics are read once as they appear, a bounded number at a time: that
            # traffic is not the republish's, so it must be over before the republish is counted.
            figures = bridge.figures
            reading = figures is not None and bool(figures.inFlight or figures.queued or figures.answered
                                                    or figures.energySweep.busy)
            return not bridge.republisher.busy and not reading and client.backlog() == 0

        bridge.birthSpacing = 2.0

        yield waitFor(idle, timeout=20, what="the first publish")
        before = client.sent
        bridge.publishAll()
        yield waitFor(idle, timeout=20, what="one full republish")
        fullSet = client.sent - before
        self.assertGreaterEqual(fullSet, 500 * 9)
        before = client.sent
        for _ in range(10):
            watcher.publish("homeassistant/status", b"online")
        yield waitFor(lambda: bridge.republisher.runs >= 3, what="the storm to reach the bridge")
        started = time.monotonic()
        watcher.publish(f"vesyncd/{plug.id}/relay/set", b"TOGGLE")
        yield waitFor(lambda: plug.relay is False, timeout=10, what="the toggle to reach the plug")
        yield watcher.waitValue(f"vesyncd/{plug.id}/relay", b"OFF", timeout=10)
        toggled = time.monotonic() - started
        yield waitFor(idle, timeout=30, what="the storm to drain")
        self.assertEqual(bridge.republisher.runs, 4)
        self.assertLessEqual(client.sent - before, 2 * fullSet + 50)
        self.assertLessEqual(daemon.mqtt.client.outbox.dropped, 0)
        # The outbox stayed near its high-water mark: a republish pauses there.
        self.assertLessEqual(most[0], client.highWater + 12 * bridge.republisher.slice)
        self.assertLess(toggled, 5.0)
        yield waitFor(lambda: any(json.loads(p)["event"] == "relay" for t, p, _ in list(eventWatcher.messages)),
                      timeout=10, what="the toggle's relay event")


def test_republishRestsAsLongAsEachSliceTook() -> None:
    """After each slice the republish waits as long as the slice took (at most 50 ms), so at most half
    the reactor goes to it; with rest=0 the next slice comes on the next turn."""
    from twisted.internet.task import Clock

    from vesyncd.mqtt.republish import Republisher

    def run(rest: float, perPlug: float) -> tuple[Clock, list[str], Republisher]:
        clock = Clock()
        done: list[str] = []

        def publishOne(plug: str) -> None:
            clock.rightNow += perPlug  # the slice's own work, as wall time passing
            done.append(plug)

        republisher = Republisher(clock, lambda: [f"p{i}" for i in range(12)], publishOne, lambda: False,
                                  slice=5, rest=rest)
        republisher.request()
        return clock, done, republisher

    clock, done, republisher = run(1.0, 0.002)
    assert len(done) == 5
    [call] = clock.getDelayedCalls()
    assert abs(call.getTime() - clock.seconds() - 0.010) < 1e-9
    clock.advance(0.0099)
    assert len(done) == 5
    clock.advance(0.0002)
    assert len(done) == 10
    clock.advance(0.011)
    assert len(done) == 12 and not republisher.running

    clock, done, _ = run(1.0, 0.1)
    [call] = clock.getDelayedCalls()
    assert abs(call.getTime() - clock.seconds() - 0.05) < 1e-9

    clock, done, _ = run(0.0, 0.002)
    [call] = clock.getDelayedCalls()
    assert call.getTime() == clock.seconds()
