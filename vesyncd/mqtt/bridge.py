"""
The MQTT bridge: hub events become retained topics, C{relay/set} messages become hub commands.

Topics (no leading slash), C{<plug>} being the alias slug when unique, else the plug id::

    <prefix>/status                  online | offline (retained; also the last will)
    <prefix>/<plug>/availability     online | offline (retained)
    <prefix>/<plug>/relay            ON | OFF (retained)
    <prefix>/<plug>/relay/set        ON, OFF, TOGGLE, 1, 0, true, false (any case), or
                                     {"state": "ON", "for": 1800} (see L{vesyncd.mqtt.commands})
    <prefix>/<plug>/state            the plug's JSON document (retained)
    <prefix>/<plug>/event            each hub event, as L{vesyncd.core.events.eventJSON} (not retained)
    <prefix>/<plug>/automation       next switch and "running" (with automation; L{vesyncd.mqtt.figures})
    <prefix>/<plug>/energy           period totals, costs and baseline (with energy insight)

Plugs waiting for approval are not the hub's plugs: nothing of them reaches MQTT.

The bridge talks to a publisher (C{publish(topic, payload, retain, qos, bulk)} and
C{congested()}) and is told of connections, messages and a drained publisher by its owner, so
it is tested in memory; L{MQTTService} wires it to L{vesyncd.mqtt.client.ReactorMQTTClient}.
Full republishes (on connect, on Home Assistant's C{online}) go through a
L{vesyncd.mqtt.republish.Republisher}: coalesced, and sliced per reactor turn.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Callable, Protocol

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.core.events import eventJSON
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt.client import ReactorMQTTClient
from vesyncd.mqtt.commands import (MAX_COMMAND_PAYLOAD, BadCommand, Commander, RelayCommand, parseCommand,
                                   parseRelayCommand)
from vesyncd.mqtt.figures import AUTOMATION_EVENTS, IAutomation, IInsight, PlugFigures, dumps
from vesyncd.mqtt.nodes import Change, TopicNodes
from vesyncd.mqtt.republish import SLICE, SPACING, Republisher
from vesyncd.mqtt.settings import BrokerSettings

log = Logger()

__all__ = ["BadCommand", "MAX_COMMAND_PAYLOAD", "MQTTBridge", "MQTTService", "RelayCommand", "parseRelayCommand",
           "validPrefix"]

#: The longest topic of an incoming message that is looked at.
MAX_TOPIC = 256
ONLINE = b"online"
OFFLINE = b"offline"


class Publisher(Protocol):
    """Where the bridge's messages go."""

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0,
                bulk: bool = False) -> None:
        """Publish (or keep for later) one message; C{bulk} ones belong to a full republish."""

    def congested(self) -> bool:
        """True while so much waits that a republish should pause (until the bridge's L{drained})."""


def relayWord(relay: bool | None) -> str | None:
    """C{ON}/C{OFF} for a known relay state."""
    return None if relay is None else ("ON" if relay else "OFF")


def validPrefix(prefix: str) -> bool:
    """A topic prefix: 1-64 characters, no wildcard, no leading or trailing slash, no empty level."""
    return (0 < len(prefix) <= 64 and prefix.isprintable() and not any(c in prefix for c in "+#\0")
            and "" not in prefix.split("/"))


class MQTTBridge:
    """Publishes the hub's plugs as retained MQTT topics and HA discovery, and obeys C{relay/set}."""

    def __init__(self, hub: Hub, publisher: Publisher, *, prefix: str = "vesyncd",
                 discoveryPrefix: str = "homeassistant", discovery: bool = True,
                 clock: IReactorTime | None = None, slice: int = SLICE, birthSpacing: float = SPACING,
                 automation: IAutomation | None = None, insight: IInsight | None = None,
                 zone: tzinfo | None = None) -> None:
        self.hub = hub
        self.publisher = publisher
        self.prefix = prefix
        self.discoveryPrefix = discoveryPrefix
        self.discovery = discovery
        self.statusTopic = f"{prefix}/status"
        self.haStatusTopic = f"{discoveryPrefix}/status"
        self.commandFilter = f"{prefix}/+/relay/set"
        #: Each plug's topic level (L{nodes} is its plug id -> level map).
        self.topicNodes = TopicNodes()
        #: config topic -> hash of the payload last published, to skip identical re-publishes on each
        #: login (a hash, not the payload: ~7 configs of ~1 KB per plug).
        self._configs: dict[str, int] = {}
        self._unsubscribe: Callable[[], None] | None = None
        #: Seconds between republishes asked for by Home Assistant's 'online'.
        self.birthSpacing = birthSpacing
        clock = clock if clock is not None else hub.clock
        self.republisher = Republisher(clock, self._beginRepublish, self._republishPlug, publisher.congested, slice)
        self.commander = Commander(hub, automation, lambda plugId: (self._plugState(plugId) or h.PlugState(plugId)).relay,
                                   self._timerSet)
        #: The automation and energy topics, when either engine is there.
        self.figures = (PlugFigures(clock, lambda: self.topicNodes.nodes, self._plugState, self._pubFigure,
                                    publisher.congested, prefix=prefix, discoveryPrefix=discoveryPrefix,
                                    discovery=discovery, automation=automation, insight=insight, zone=zone,
                                    slice=slice)
                        if automation is not None or insight is not None else None)
        #: Slug collisions already logged.
        self._warned: set[tuple[str, tuple[str, ...]]] = set()

    @property
    def nodes(self) -> dict[str, str]:
        """Plug id -> the topic level it is published under (read only)."""
        return self.topicNodes.nodes

    @property
    def collisions(self) -> list[dict[str, Any]]:
        """Alias slugs that cannot be topic names, as C{{"slug", "plugs": [ids]}} (see
        L{TopicNodes.collisions})."""
        return self.topicNodes.collisions()

    @property
    def subscriptions(self) -> list[str]:
        """Topic filters the bridge needs."""
        return [self.commandFilter] + ([self.haStatusTopic] if self.discovery else [])

    def start(self) -> None:
        """Follow the hub's events."""
        if self._unsubscribe is None:
            # In a cluster the node a plug is connected to publishes its state.
            self._unsubscribe = self.hub.subscribe(self.event, remote=False)
            change = self.topicNodes.reconcile((p.id, p.alias) for p in self.hub.plugsInPlace())
            self._noteCollisions(change)
            if self.figures is not None:
                self.figures.start()

    def stop(self) -> None:
        """Stop following the hub."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.republisher.stop()
        if self.figures is not None:
            self.figures.stop()

    # -- publishing ----------------------------------------------------------------------------

    def _pub(self, topic: str, payload: bytes | str, bulk: bool = False) -> None:
        self.publisher.publish(topic, payload, retain=True, bulk=bulk)

    def _pubFigure(self, topic: str, payload: bytes, bulk: bool) -> None:
        self._pub(topic, payload, bulk)

    def _plugState(self, plugId: str) -> h.PlugState | None:
        try:
            plug = self.hub.get(plugId)
        except h.CommandError:
            return None
        return plug if plug.id == plugId else None

    def publishAll(self) -> None:
        """Publish the bridge status, every plug's discovery and every plug's state (on connect, on
        Home Assistant's C{online}): one republish at a time, the plugs a slice per reactor turn."""
        self.republisher.request()

    def drained(self) -> None:
        """The publisher is no longer congested: a waiting republish carries on."""
        self.republisher.resume()
        if self.figures is not None:
            self.figures.resume()

    def _beginRepublish(self) -> list[str]:
        self._pub(self.statusTopic, ONLINE)
        if self.discovery:
            topic, config = ha.bridgeConfig(self.prefix, self.discoveryPrefix)
            self._pub(topic, _dumps(config))
        self._syncNodes()
        return list(self.nodes)

    def _republishPlug(self, plugId: str) -> None:
        try:
            plug = self.hub.get(plugId)
        except h.CommandError:
            return  # forgotten since the republish began
        if plug.id == plugId:
            self._publishPlug(plug, discovery=True, bulk=True)

    def _publishPlug(self, plug: h.PlugState, discovery: bool, bulk: bool = False) -> None:
        node = self.nodes.get(plug.id) or ha.safeId(plug.id)
        topics = ha.plugTopics(self.prefix, node)
        if discovery and self.discovery:
            for topic, config in ha.plugConfigs(plug, node, prefix=self.prefix,
                                                discoveryPrefix=self.discoveryPrefix).items():
                payload = _dumps(config)
                # A republish sends every config again (Home Assistant may have lost them); otherwise
                # only a changed one goes out.
                digest = hash(payload)
                if bulk or self._configs.get(topic) != digest:
                    self._configs[topic] = digest
                    self._pub(topic, payload, bulk)
        self._pub(topics["availability"], ONLINE if plug.online else OFFLINE, bulk)
        word = relayWord(plug.relay)
        if word is not None:
            self._pub(topics["relay"], word, bulk)
        self._publishState(plug, bulk)
        if self.figures is not None:
            self.figures.publishPlug(plug, node, bulk)

    def _publishState(self, plug: h.PlugState, bulk: bool = False) -> None:
        node = self.nodes.get(plug.id) or ha.safeId(plug.id)
        doc = plug.toJSON(self.hub.energy(plug.id))
        self._pub(ha.plugTopics(self.prefix, node)["state"], _dumps(doc), bulk)

    def _publishEvent(self, event: h.Event, plug: h.PlugState | None, node: str | None) -> None:
        if node is not None:
            self.publisher.publish(f"{self.prefix}/{node}/event", _dumps(eventJSON(event, plug)), retain=False)

    def _clearTopics(self, node: str) -> None:
        topics = ha.plugTopics(self.prefix, node)
        for key in ("availability", "relay", "state"):
            self._pub(topics[key], b"")
        for topic in self.figures.moved(node) if self.figures is not None else ():
            self._pub(topic, b"")

    def _syncNodes(self) -> None:
        """Bring every plug's topic level up to date with the hub (aliases of plugs on other nodes
        of a cluster change without an event here): one lookup per plug when nothing changed."""
        self._moved(self.topicNodes.reconcile((p.id, p.alias) for p in self.hub.plugsInPlace()))

    def _moved(self, change: Change, but: str | None = None) -> None:
        """Move the topics of the plugs whose level changed: clear the old ones, publish the plug
        again (not C{but}, which the caller publishes; new plugs have nothing to move); log new slug
        collisions."""
        self._noteCollisions(change)
        for plugId, (old, node) in change.moved.items():
            if old is None:
                continue
            log.info("mqtt: plug {plug} moves from {old} to {new}", plug=plugId, old=old, new=node)
            self._clearTopics(old)
            plug = self._plugState(plugId) if plugId != but else None
            if plug is not None:
                self._publishPlug(plug, discovery=True)

    def _noteCollisions(self, change: Change) -> None:
        """Log each slug collision among those the change touched, once."""
        for found in self.topicNodes.collisions(change.slugs):
            key = (found["slug"], tuple(found["plugs"]))
            if key not in self._warned:
                self._warned.add(key)
                log.warn("mqtt: plugs {plugs} cannot use the topic name {slug!r} (their aliases give the same "
                         "name, or it is another plug's id or vesyncd's own): each uses its id instead; rename "
                         "one of them to give it a name of its own", plugs=" and ".join(found["plugs"]),
                         slug=found["slug"])

    # -- hub events ----------------------------------------------------------------------------

    def event(self, event: h.Event) -> None:
        """Publish what one hub event changed, then the event itself on the plug's C{event} topic."""
        if event.kind == h.PLUG_PENDING:
            return  # held until approved: not even its event goes out
        if event.kind == h.FORGOTTEN:
            self._publishEvent(event, None, self.nodes.get(event.plug))
            self._forget(event.plug)
            return
        try:
            plug = self.hub.get(event.plug)
        except h.CommandError:
            return
        if plug.id != event.plug:
            return
        self._publishChange(event, plug)
        self._publishEvent(event, plug, self.nodes.get(plug.id))
        if self.figures is not None and event.kind in AUTOMATION_EVENTS:
            self.figures.automationSoon(plug.id)

    def _publishChange(self, event: h.Event, plug: h.PlugState) -> None:
        if event.kind == h.PLUG_NEW or event.plug not in self.nodes:
            self._moved(self.topicNodes.set(plug.id, plug.alias))
            self._publishPlug(plug, discovery=True)
        elif event.kind == h.ALIAS:
            self._moved(self.topicNodes.set(plug.id, plug.alias), but=plug.id)
            # The device name follows the alias; the config topics and unique ids do not move.
            self._publishPlug(plug, discovery=True)
        elif event.kind == h.ONLINE:
            self._publishPlug(plug, discovery=True)  # firmware and model come with each login
        elif event.kind == h.OFFLINE:
            self._pub(ha.plugTopics(self.prefix, self.nodes[plug.id])["availability"], OFFLINE)
            self._publishState(plug)
        elif event.kind in AUTOMATION_EVENTS - {h.RELAY}:
            return  # the automation topic follows (in event) and the plug's own state did not change
        elif event.kind == h.RELAY:
            word = relayWord(plug.relay)
            if word is not None:
                self._pub(ha.plugTopics(self.prefix, self.nodes[plug.id])["relay"], word)
            self._publishState(plug)
        else:
            self._publishState(plug)

    def _forget(self, plugId: str) -> None:
        node = self.nodes.get(plugId)
        change = self.topicNodes.remove(plugId)
        if node is not None:
            self._clearTopics(node)
        if self.figures is not None:
            self.figures.forget(plugId, node)
        if self.discovery:
            for topic in ha.plugConfigTopics(self.discoveryPrefix, plugId, figures=self.figures is not None):
                self._configs.pop(topic, None)
                self._pub(topic, b"")
        self._moved(change)

    # -- incoming messages ---------------------------------------------------------------------

    def message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Handle one message on a subscribed topic (hostile input: checked, never raises)."""
        if len(topic) > MAX_TOPIC:
            log.warn("mqtt: ignoring a message on an overlong topic ({n} characters)", n=len(topic))
            return
        if self.discovery and topic == self.haStatusTopic:
            if not retained and payload[:16].strip().lower() == ONLINE:
                if not self.republisher.busy:
                    log.info("mqtt: Home Assistant is online: publishing discovery and state again")
                self.republisher.request(spacing=self.birthSpacing)
            return
        levels = topic.split("/")
        prefixLevels = self.prefix.split("/")
        if (len(levels) != len(prefixLevels) + 3 or levels[:len(prefixLevels)] != prefixLevels
                or levels[-2:] != ["relay", "set"]):
            log.warn("mqtt: ignoring a message on unexpected topic {topic!r}", topic=topic[:MAX_TOPIC])
            return
        node = levels[len(prefixLevels)]
        if retained:
            log.warn("mqtt: ignoring a retained command on {topic} (commands must not be retained)", topic=topic)
            return
        plugId = self._plugForNode(node)
        if plugId is None:
            log.warn("mqtt: command for unknown plug {node!r} ignored", node=node[:64])
            return
        if self.hub.elsewhere(plugId) is not None:
            return  # every node of a cluster gets the command: the plug's own node carries it out
        try:
            command = parseCommand(payload)
        except BadCommand as e:
            log.warn("mqtt: ignoring command on {topic}: {why}", topic=topic, why=str(e))
            return
        self.commander.run(plugId, command)

    def _timerSet(self, plugId: str) -> None:
        """A countdown set from MQTT: the plug's next action changed."""
        if self.figures is not None:
            self.figures.automationSoon(plugId)

    def _plugForNode(self, node: str) -> str | None:
        return self.topicNodes.plugAt(node)


_dumps = dumps


class MQTTService(service.Service):
    """Runs an L{MQTTBridge} over a reconnecting L{ReactorMQTTClient} while the daemon runs."""

    def __init__(self, reactor: Any, hub: Hub, settings: BrokerSettings, *, prefix: str = "vesyncd",
                 discoveryPrefix: str = "homeassistant", discovery: bool = True,
                 minDelay: float | None = None, maxDelay: float | None = None,
                 automation: IAutomation | None = None, insight: IInsight | None = None,
                 zone: tzinfo | None = None) -> None:
        self.bridge = MQTTBridge(hub, self, prefix=prefix, discoveryPrefix=discoveryPrefix, discovery=discovery,
                                 clock=reactor, automation=automation, insight=insight, zone=zone)
        kw: dict[str, Any] = {}
        if minDelay is not None:
            kw["minDelay"] = minDelay
        if maxDelay is not None:
            kw["maxDelay"] = maxDelay
        self.client = ReactorMQTTClient(
            reactor, settings, willTopic=self.bridge.statusTopic, willPayload=OFFLINE,
            subscriptions=self.bridge.subscriptions, onConnect=self.bridge.publishAll,
            onMessage=self.bridge.message, onDrained=self.bridge.drained, onDropped=self.bridge.publishAll, **kw)

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0,
                bulk: bool = False) -> None:
        """Hand one message to the client (sent now, or kept while the broker is away)."""
        self.client.publish(topic, payload, retain=retain, qos=qos, bulk=bulk)

    def congested(self) -> bool:
        """True while the client's outbox is too full for a republish to go on."""
        return self.client.congested()

    def startService(self) -> None:
        """Follow the hub and connect."""
        service.Service.startService(self)
        log.info("mqtt: bridging to {broker} under {prefix}/", broker=self.client.settings.describe(),
                 prefix=self.bridge.prefix)
        self.bridge.start()
        self.client.start()

    def stopService(self) -> Deferred:
        """Stop following the hub, publish C{offline} and disconnect."""
        service.Service.stopService(self)
        self.bridge.stop()
        return self.client.stop()
