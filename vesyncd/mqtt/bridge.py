"""
The MQTT bridge: hub events become retained topics, C{relay/set} messages become hub commands.

Topics (no leading slash), C{<plug>} being the alias slug when unique, else the plug id::

    <prefix>/status                  online | offline (retained; also the last will)
    <prefix>/<plug>/availability     online | offline (retained)
    <prefix>/<plug>/relay            ON | OFF (retained)
    <prefix>/<plug>/relay/set        ON, OFF, TOGGLE, 1, 0, true, false (any case)
    <prefix>/<plug>/state            the plug's JSON document (retained)
    <prefix>/<plug>/event            each hub event, as L{vesyncd.core.events.eventJSON} (not retained)

The bridge talks to a publisher (C{publish(topic, payload, retain, qos, bulk)} and
C{congested()}) and is told of connections, messages and a drained publisher by its owner, so
it is tested in memory; L{MQTTService} wires it to L{vesyncd.mqtt.client.ReactorMQTTClient}.
Full republishes (on connect, on Home Assistant's C{online}) go through a
L{vesyncd.mqtt.republish.Republisher}: coalesced, and sliced per reactor turn.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.core import model as h
from vesyncd.core.hub import Hub
from vesyncd.core.events import eventJSON
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt.client import ReactorMQTTClient
from vesyncd.mqtt.republish import SLICE, SPACING, Republisher
from vesyncd.mqtt.settings import BrokerSettings

log = Logger()

#: The longest C{relay/set} payload looked at; longer ones are refused unread.
MAX_COMMAND_PAYLOAD = 32
#: The longest topic of an incoming message that is looked at.
MAX_TOPIC = 256
ONLINE = b"online"
OFFLINE = b"offline"
_ON = {"on", "1", "true"}
_OFF = {"off", "0", "false"}
_TOGGLE = {"toggle"}


class Publisher(Protocol):
    """Where the bridge's messages go."""

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0,
                bulk: bool = False) -> None:
        """Publish (or keep for later) one message; C{bulk} ones belong to a full republish."""

    def congested(self) -> bool:
        """True while so much waits that a republish should pause (until the bridge's L{drained})."""


class BadCommand(ValueError):
    """A C{relay/set} payload that is not a known command."""


def parseRelayCommand(payload: bytes) -> bool | None:
    """C{True} for on, C{False} for off, C{None} for toggle.

    @raise BadCommand: the payload is too long, not UTF-8, or not one of ON, OFF, TOGGLE, 1, 0,
        true, false (case-insensitive, surrounding white space ignored).
    """
    if len(payload) > MAX_COMMAND_PAYLOAD:
        raise BadCommand(f"payload of {len(payload)} bytes (at most {MAX_COMMAND_PAYLOAD})")
    try:
        word = payload.decode("utf-8").strip().casefold()
    except UnicodeDecodeError:
        raise BadCommand("payload is not UTF-8 text") from None
    if word in _ON:
        return True
    if word in _OFF:
        return False
    if word in _TOGGLE:
        return None
    raise BadCommand(f"unknown command {word[:MAX_COMMAND_PAYLOAD]!r} (ON, OFF, TOGGLE, 1, 0, true, false)")


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
                 clock: IReactorTime | None = None, slice: int = SLICE, birthSpacing: float = SPACING) -> None:
        self.hub = hub
        self.publisher = publisher
        self.prefix = prefix
        self.discoveryPrefix = discoveryPrefix
        self.discovery = discovery
        self.statusTopic = f"{prefix}/status"
        self.haStatusTopic = f"{discoveryPrefix}/status"
        self.commandFilter = f"{prefix}/+/relay/set"
        #: plug id -> topic level currently published under.
        self.nodes: dict[str, str] = {}
        #: config topic -> payload last published, to skip identical re-publishes on each login.
        self._configs: dict[str, bytes] = {}
        self._unsubscribe: Callable[[], None] | None = None
        #: Seconds between republishes asked for by Home Assistant's 'online'.
        self.birthSpacing = birthSpacing
        self.republisher = Republisher(clock if clock is not None else hub.clock, self._beginRepublish,
                                       self._republishPlug, publisher.congested, slice)

    @property
    def subscriptions(self) -> list[str]:
        """Topic filters the bridge needs."""
        return [self.commandFilter] + ([self.haStatusTopic] if self.discovery else [])

    def start(self) -> None:
        """Follow the hub's events."""
        if self._unsubscribe is None:
            self._unsubscribe = self.hub.subscribe(self.event)
            self.nodes = ha.assignNodes((p.id, p.alias) for p in self.hub.plugs())

    def stop(self) -> None:
        """Stop following the hub."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.republisher.stop()

    # -- publishing ----------------------------------------------------------------------------

    def _pub(self, topic: str, payload: bytes | str, bulk: bool = False) -> None:
        self.publisher.publish(topic, payload, retain=True, bulk=bulk)

    def publishAll(self) -> None:
        """Publish the bridge status, every plug's discovery and every plug's state (on connect, on
        Home Assistant's C{online}): one republish at a time, the plugs a slice per reactor turn."""
        self.republisher.request()

    def drained(self) -> None:
        """The publisher is no longer congested: a waiting republish carries on."""
        self.republisher.resume()

    def _beginRepublish(self) -> list[str]:
        self._pub(self.statusTopic, ONLINE)
        if self.discovery:
            topic, config = ha.bridgeConfig(self.prefix, self.discoveryPrefix)
            self._pub(topic, _dumps(config))
        self._syncNodes()
        self._configs.clear()
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
                if self._configs.get(topic) != payload:
                    self._configs[topic] = payload
                    self._pub(topic, payload, bulk)
        self._pub(topics["availability"], ONLINE if plug.online else OFFLINE, bulk)
        word = relayWord(plug.relay)
        if word is not None:
            self._pub(topics["relay"], word, bulk)
        self._publishState(plug, bulk)

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

    def _syncNodes(self) -> None:
        """Recompute every plug's topic level; move the topics of plugs whose level changed."""
        known = {p.id: p for p in self.hub.plugs()}
        nodes = ha.assignNodes((p.id, p.alias) for p in known.values())
        for plugId, node in nodes.items():
            old = self.nodes.get(plugId)
            if old is not None and old != node:
                log.info("mqtt: plug {plug} moves from {old} to {new}", plug=plugId, old=old, new=node)
                self._clearTopics(old)
                self.nodes[plugId] = node
                self._publishPlug(known[plugId], discovery=True)
        self.nodes = nodes

    # -- hub events ----------------------------------------------------------------------------

    def event(self, event: h.Event) -> None:
        """Publish what one hub event changed, then the event itself on the plug's C{event} topic."""
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

    def _publishChange(self, event: h.Event, plug: h.PlugState) -> None:
        if event.kind == h.PLUG_NEW or event.plug not in self.nodes:
            node = ha.safeId(plug.id)
            if plug.alias is None and node not in self.nodes.values() and node != "status":
                # A new plug without an alias takes its id: no need to recompute every plug's
                # topics (which would cost O(plugs) per login in a storm of new plugs).
                self.nodes[plug.id] = node
            else:
                self._syncNodes()
            self._publishPlug(plug, discovery=True)
        elif event.kind == h.ALIAS:
            self._syncNodes()
            # The device name follows the alias; the config topics and unique ids do not move.
            self._publishPlug(plug, discovery=True)
        elif event.kind == h.ONLINE:
            self._publishPlug(plug, discovery=True)  # firmware and model come with each login
        elif event.kind == h.OFFLINE:
            self._pub(ha.plugTopics(self.prefix, self.nodes[plug.id])["availability"], OFFLINE)
            self._publishState(plug)
        elif event.kind == h.RELAY:
            word = relayWord(plug.relay)
            if word is not None:
                self._pub(ha.plugTopics(self.prefix, self.nodes[plug.id])["relay"], word)
            self._publishState(plug)
        else:
            self._publishState(plug)

    def _forget(self, plugId: str) -> None:
        node = self.nodes.pop(plugId, None)
        if node is not None:
            self._clearTopics(node)
        if self.discovery:
            for topic in ha.plugConfigTopics(self.discoveryPrefix, plugId):
                self._configs.pop(topic, None)
                self._pub(topic, b"")
        self._syncNodes()

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
        try:
            on = parseRelayCommand(payload)
        except BadCommand as e:
            log.warn("mqtt: ignoring command on {topic}: {why}", topic=topic, why=str(e))
            return
        what = "toggle" if on is None else ("on" if on else "off")
        log.info("mqtt: switching plug {plug} {what}", plug=plugId, what=what)
        self.hub.switch(plugId, on).addErrback(self._commandFailed, plugId, what)

    def _plugForNode(self, node: str) -> str | None:
        for plugId, known in self.nodes.items():
            if known == node:
                return plugId
        for plugId in self.nodes:
            if ha.safeId(plugId) == node:
                return plugId  # the id always works, even when a slug is in use
        return None

    def _commandFailed(self, failure: Failure, plugId: str, what: str) -> None:
        if failure.check(h.CommandError):
            log.warn("mqtt: cannot switch plug {plug} {what}: {why}", plug=plugId, what=what,
                     why=failure.getErrorMessage())
        else:
            log.failure("mqtt: switching plug {plug} {what} failed", failure, plug=plugId, what=what)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


class MQTTService(service.Service):
    """Runs an L{MQTTBridge} over a reconnecting L{ReactorMQTTClient} while the daemon runs."""

    def __init__(self, reactor: Any, hub: Hub, settings: BrokerSettings, *, prefix: str = "vesyncd",
                 discoveryPrefix: str = "homeassistant", discovery: bool = True,
                 minDelay: float | None = None, maxDelay: float | None = None) -> None:
        self.bridge = MQTTBridge(hub, self, prefix=prefix, discoveryPrefix=discoveryPrefix, discovery=discovery,
                                 clock=reactor)
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
