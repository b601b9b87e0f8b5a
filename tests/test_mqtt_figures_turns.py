"""The MQTT energy figures do a bounded share of work per reactor turn, however the store's answers bunch up."""

from __future__ import annotations

from tests.mqtt_helpers import TurnClock
from tests.test_mqtt_figures import NOW, FakeInsight, Publisher
from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.mqtt.bridge import MQTTBridge
from vesyncd.mqtt.figures import MAX_IN_FLIGHT


def test_answers_arriving_in_bursts_are_published_a_slice_per_turn() -> None:
    """Fifty answers at once publish at most a slice of energy documents (and start reads) per turn,
    never more than MAX_IN_FLIGHT reads wait, and every plug is published in the end."""
    insight = FakeInsight()
    insight.hold = True
    plugs = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(300)]
    clock = TurnClock()
    clock.advance(NOW)
    hub = Hub(clock, known=[h.PlugState(id=p) for p in plugs])
    pub = Publisher()
    bridge = MQTTBridge(hub, pub, clock=clock, insight=insight, slice=20)
    bridge.start()
    bridge.publishAll()
    for _ in range(40):
        clock.turn()
    assert not bridge.republisher.busy and len(insight.waiting) == MAX_IN_FLIGHT
    figures = bridge.figures
    assert figures is not None

    def energyDocs() -> int:
        return sum(1 for topic, _, _ in pub.log if topic.endswith("/energy"))

    busiest = 0
    for _ in range(200):
        before = (energyDocs(), len(insight.asked))
        insight.answer(len(insight.waiting))  # the store's answers, all in one reactor turn
        clock.turn()
        after = (energyDocs(), len(insight.asked))
        busiest = max(busiest, after[0] - before[0] + after[1] - before[1])
        assert len(insight.waiting) <= MAX_IN_FLIGHT
        if not insight.waiting and not figures.queued and not figures.answered:
            break
    # One turn's share, plus what the next turn began before this loop looked again.
    assert 0 < busiest <= 2 * figures.slice
    assert sorted(insight.asked) == sorted(plugs)
    assert all(pub.json(f"vesyncd/{p}/energy") for p in plugs)
