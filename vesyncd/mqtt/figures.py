"""
Each plug's automation and energy figures as retained MQTT topics, with their Home Assistant
entities (see L{vesyncd.mqtt.discovery.figureConfigs}):

    <prefix>/<plug>/automation   {"next": {"switch", "at", "ts", "cause"} | null, "running": bool | null,
                                  "rules": N}
    <prefix>/<plug>/energy       the insight's periods and baseline of the plug, plus "last_reset": the
                                  start of today, this week, month and year (ISO 8601, local)

The automation topic follows the plug's events and a sweep every L{AUTOMATION_SWEEP} seconds (the
engine tells no one when a schedule or timer is added from the control port), publishing only what
changed.  Energy figures are read at most once an hour per plug (a sweep after each hour turns,
and once when a plug first appears), at most L{MAX_IN_FLIGHT} reads at a time; both sweeps go a
slice of plugs per reactor turn through a L{Republisher}, and reads started plus answers published
are at most a slice per reactor turn too (the store answers in bursts).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone, tzinfo
from typing import Any, Callable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.core import model as h
from vesyncd.insight.ranges import currentRanges
from vesyncd.mqtt import discovery as ha
from vesyncd.mqtt.republish import SLICE, Republisher

log = Logger()
_CLEARED = hash(b"")

#: Seconds between two sweeps of every plug's automation topic.
AUTOMATION_SWEEP = 60.0
#: Seconds after the hour turns that the energy sweep starts (the hour's row is written by then).
HOUR_DELAY = 5.0
#: Energy reads waiting for an answer at once, at most.
MAX_IN_FLIGHT = 50
#: Hub events after which a plug's automation topic is read again.
AUTOMATION_EVENTS = {h.RELAY, h.ONLINE, h.OFFLINE, "rule", "rule_running"}


class IAutomation(Protocol):
    """What the figures read of the automation engine."""

    def nextAction(self, plug: str) -> dict[str, Any] | None:
        """The next switch automation makes to the plug."""

    def rulesOf(self, plug: str | None = None) -> list[dict[str, Any]]:
        """The plug's power rules as JSON."""

    def switchFor(self, plug: str, on: Any, seconds: Any) -> Any:
        """Switch now and back after C{seconds}; a Deferred."""


class IInsight(Protocol):
    """What the figures read of the energy insight."""

    currency: str | None

    def periods(self, plugId: str) -> Any:
        """A Deferred firing with the plug's period totals (and costs)."""

    def baseline(self, plugId: str) -> dict[str, Any]:
        """The plug's always-on baseline."""


def dumps(doc: dict[str, Any]) -> bytes:
    """Compact, sorted JSON bytes (equal documents give equal payloads)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def automationView(automation: IAutomation, plugId: str) -> tuple[dict[str, Any], set[str]]:
    """The plug's automation document and which conditional entities it has (C{rules}, C{done_rule})."""
    rules = automation.rulesOf(plugId)
    done = [r for r in rules if r.get("when") == "done_below" and r.get("enabled", True)]
    has = ({"rules"} if rules else set()) | ({"done_rule"} if done else set())
    running = any(r.get("running") is True for r in done) if done else None
    return {"next": automation.nextAction(plugId), "running": running, "rules": len(rules)}, has


def lastResets(now: float, zone: tzinfo) -> dict[str, str]:
    """The start of today, this week, month and year (ISO 8601, local): the energy document's C{last_reset}."""
    ranges = currentRanges(now, zone)
    return {name: ranges[name].start.isoformat() for name in ("today", "week", "month", "year")}


def energyView(periods: dict[str, Any], baseline: dict[str, Any], now: float, zone: tzinfo,
               resets: dict[str, str] | None = None) -> dict[str, Any]:
    """The energy document: periods, baseline, and each resetting period's start as C{last_reset}
    (C{resets}, when given, is L{lastResets} at C{now})."""
    doc = dict(baseline)
    doc.update(periods)
    doc["last_reset"] = dict(resets) if resets is not None else lastResets(now, zone)
    return doc


class PlugFigures:
    """Publishes the automation and energy topics and entities of the bridge's plugs.

    C{nodes} is the bridge's plug id -> topic level map (read, never changed here); C{plug(id)}
    gives a plug's state or None; C{publish(topic, payload, bulk)} publishes a retained message.
    """

    def __init__(self, clock: IReactorTime, nodes: Callable[[], dict[str, str]],
                 plug: Callable[[str], h.PlugState | None], publish: Callable[[str, bytes, bool], None],
                 congested: Callable[[], bool], *, prefix: str, discoveryPrefix: str, discovery: bool,
                 automation: IAutomation | None = None, insight: IInsight | None = None,
                 zone: tzinfo | None = None, slice: int = SLICE) -> None:
        self.clock = clock
        self.nodes = nodes
        self.plug = plug
        self.publish = publish
        self.publisherCongested = congested
        self.prefix = prefix
        self.discoveryPrefix = discoveryPrefix
        self.discovery = discovery
        self.automation = automation
        self.insight = insight
        self.zone = zone or getattr(insight, "zone", None) or timezone.utc
        #: topic -> hash of the payload last published (automation/energy topics and figure configs):
        #: a hash, not the payload, keeps this small with thousands of plugs.
        self.sent: dict[str, int] = {}
        #: plug id -> its latest energy document (published again on a republish or a rename).
        self.energy: dict[str, bytes] = {}
        #: plug id -> POSIX hour of its last energy read; plugs whose read is under way.
        self.readHour: dict[str, int] = {}
        self.inFlight: set[str] = set()
        #: Plugs whose first read waits for a free place (at most one entry per plug).
        self.queued: dict[str, None] = {}
        self.energyReads = 0
        #: Answered reads waiting to be published (when a turn's share of work is done).
        self.answered: dict[str, dict[str, Any] | None] = {}
        #: Reads started and answers published this reactor turn: at most C{slice}, the rest wait.
        self.turnWork = 0
        self.slice = max(1, slice)
        self._turnCall: IDelayedCall | None = None
        self._draining = False
        #: (minute, last_reset) of the latest energy document: the same for every plug within a minute.
        self._resets: tuple[int, dict[str, str]] | None = None
        self.automationSweep = Republisher(clock, self._allPlugs, self.refreshAutomation, congested, slice)
        self.energySweep = Republisher(clock, self._allPlugs, self._sweepEnergy, self._energyCongested, slice)
        self._calls: dict[str, IDelayedCall] = {}
        #: Plugs whose automation topic is read again on the next reactor turn.
        self._soon: dict[str, IDelayedCall] = {}

    def start(self) -> None:
        """Plan the sweeps."""
        if self.automation is not None:
            self._later("automation", AUTOMATION_SWEEP, self._automationDue)
        if self.insight is not None:
            self._later("energy", self._untilNextHour(), self._energyDue)

    def stop(self) -> None:
        """Cancel the sweeps."""
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        for call in self._soon.values():
            if call.active():
                call.cancel()
        self._soon.clear()
        if self._turnCall is not None and self._turnCall.active():
            self._turnCall.cancel()
        self._turnCall = None
        self.automationSweep.stop()
        self.energySweep.stop()

    def resume(self) -> None:
        """The publisher drained: paused sweeps carry on."""
        self.automationSweep.resume()
        self.energySweep.resume()

    def _later(self, name: str, delay: float, call: Callable[[], None]) -> None:
        self._calls[name] = self.clock.callLater(delay, call)

    def _untilNextHour(self) -> float:
        now = self.clock.seconds()
        offset = datetime.fromtimestamp(now, self.zone).utcoffset()
        shift = offset.total_seconds() if offset is not None else 0.0
        return 3600.0 - ((now + shift) % 3600.0) + HOUR_DELAY

    def _automationDue(self) -> None:
        self.automationSweep.request()
        self._later("automation", AUTOMATION_SWEEP, self._automationDue)

    def _energyDue(self) -> None:
        self.energySweep.request()
        self._later("energy", self._untilNextHour(), self._energyDue)

    def _allPlugs(self) -> list[str]:
        return list(self.nodes())

    # -- per plug ----------------------------------------------------------------------------

    def _send(self, topic: str, payload: bytes, bulk: bool) -> None:
        """Publish unless the topic's last payload was the same; a C{bulk} one (a full republish:
        Home Assistant may have lost everything) is sent whatever was sent before."""
        digest = hash(payload)
        if bulk or self.sent.get(topic) != digest:
            self.sent[topic] = digest
            self.publish(topic, payload, bulk)

    def publishPlug(self, plug: h.PlugState, node: str, bulk: bool = False) -> None:
        """Publish the plug's figure topics (and entities) under C{node}."""
        self.refreshAutomation(plug.id, bulk=bulk, state=plug)
        if self.insight is None:
            return
        cached = self.energy.get(plug.id)
        if cached is not None:
            self._send(ha.plugTopics(self.prefix, node)["energy"], cached, bulk)
        self._configs(plug, node, set(), bulk, automation=False)
        if cached is None:
            self.readEnergy(plug.id)

    def automationSoon(self, plugId: str) -> None:
        """Read the plug's automation again on the next reactor turn (once, however often asked): the
        engine settles a timer or schedule run only after the hub's event about its switch."""
        if self.automation is not None and plugId not in self._soon:
            self._soon[plugId] = self.clock.callLater(0, self._refreshSoon, plugId)

    def _refreshSoon(self, plugId: str) -> None:
        self._soon.pop(plugId, None)
        self.refreshAutomation(plugId)

    def refreshAutomation(self, plugId: str, bulk: bool = False, state: h.PlugState | None = None) -> None:
        """Publish the plug's automation topic (and its entities) if they changed."""
        if self.automation is None:
            return
        node = self.nodes().get(plugId)
        plug = state or self.plug(plugId)
        if node is None or plug is None:
            return
        try:
            doc, has = automationView(self.automation, plugId)
        except Exception:
            log.failure("mqtt: reading the automation of plug {plug} failed", plug=plugId)
            return
        self._send(ha.plugTopics(self.prefix, node)["automation"], dumps(doc), bulk)
        self._configs(plug, node, has, bulk, automation=True)

    def _configs(self, plug: h.PlugState, node: str, has: set[str], bulk: bool, automation: bool) -> None:
        if not self.discovery:
            return
        currency = ha.cleanText(self.insight.currency, 8) or None if self.insight is not None else None
        configs = ha.figureConfigs(plug, node, prefix=self.prefix, discoveryPrefix=self.discoveryPrefix,
                                   automation=automation, insight=not automation, has=has, currency=currency)
        for topic, config in configs.items():
            if config is not None:
                self._send(topic, dumps(config), bulk)
            elif self.sent.get(topic) != _CLEARED:
                self._send(topic, b"", bulk)  # an entity the plug no longer has (or had before a restart)

    def readEnergy(self, plugId: str, force: bool = False) -> None:
        """Read the plug's energy figures and publish them, unless read this hour (or under way)."""
        hour = int(self.clock.seconds() // 3600)
        if (self.insight is None or plugId in self.inFlight or plugId in self.answered
                or (not force and self.readHour.get(plugId) == hour)):
            return
        if len(self.inFlight) >= MAX_IN_FLIGHT:
            self.queued[plugId] = None
            return
        self.queued.pop(plugId, None)
        self.readHour[plugId] = hour
        self.inFlight.add(plugId)
        self.energyReads += 1
        try:
            d = self.insight.periods(plugId)
        except Exception:
            d = None
            log.failure("mqtt: reading the energy of plug {plug} failed", plug=plugId)
        if d is None:
            self._read(None, plugId)
            return
        d.addCallbacks(self._read, self._readFailed, callbackArgs=(plugId,), errbackArgs=(plugId,))

    def _sweepEnergy(self, plugId: str) -> None:
        self.readEnergy(plugId, force=True)

    def _energyCongested(self) -> bool:
        return len(self.inFlight) + len(self.queued) >= MAX_IN_FLIGHT or self.publisherCongested()

    def _readFailed(self, failure: Failure, plugId: str) -> None:
        log.failure("mqtt: reading the energy of plug {plug} failed", failure, plug=plugId)
        self._read(None, plugId)

    def _read(self, periods: dict[str, Any] | None, plugId: str) -> None:
        self.inFlight.discard(plugId)
        self.answered[plugId] = periods
        self._drain()

    def _drain(self) -> None:
        """Publish answered reads and start waiting ones, at most C{slice} of both per reactor turn:
        answers arrive from the store's thread in bursts, and a read may be answered at once."""
        if self._draining:
            return  # a read answered at once, while this loop runs: the loop publishes it
        self._draining = True
        try:
            while self.turnWork < self.slice:
                if self.answered:
                    plugId = next(iter(self.answered))
                    periods = self.answered.pop(plugId)
                    self.turnWork += 1
                    self._publishEnergy(periods, plugId)
                elif self.queued and len(self.inFlight) < MAX_IN_FLIGHT:
                    waiting = next(iter(self.queued))
                    del self.queued[waiting]
                    self.turnWork += 1
                    self.readEnergy(waiting, force=True)
                else:
                    break
        finally:
            self._draining = False
        if self.turnWork and self._turnCall is None:
            self._turnCall = self.clock.callLater(0, self._nextTurn)
        if len(self.inFlight) <= MAX_IN_FLIGHT // 2:
            self.energySweep.resume()

    def _nextTurn(self) -> None:
        self._turnCall = None
        self.turnWork = 0
        self._drain()

    def _publishEnergy(self, periods: dict[str, Any] | None, plugId: str) -> None:
        node = self.nodes().get(plugId)
        if periods is None or node is None or self.insight is None:
            return
        try:
            now = self.clock.seconds()
            key = int(now // 60)  # zones' midnights fall on whole minutes
            if self._resets is None or self._resets[0] != key:
                self._resets = (key, lastResets(now, self.zone))
            doc = energyView(periods, self.insight.baseline(plugId), now, self.zone, self._resets[1])
        except Exception:
            log.failure("mqtt: the energy figures of plug {plug} failed", plug=plugId)
            return
        payload = dumps(doc)
        self.energy[plugId] = payload
        self._send(ha.plugTopics(self.prefix, node)["energy"], payload, False)

    def forget(self, plugId: str, node: str | None) -> None:
        """Drop what is kept of a forgotten plug (the bridge clears its topics and entities)."""
        self.energy.pop(plugId, None)
        self.readHour.pop(plugId, None)
        self.queued.pop(plugId, None)
        self.answered.pop(plugId, None)
        for topic in ha.plugConfigTopics(self.discoveryPrefix, plugId, figures=True):
            self.sent.pop(topic, None)
        if node is not None:
            self.moved(node)

    def moved(self, oldNode: str) -> list[str]:
        """The figure topics to clear when a plug leaves C{oldNode}."""
        topics = ha.plugTopics(self.prefix, oldNode)
        moved = ([topics["automation"]] if self.automation is not None else []) + (
            [topics["energy"]] if self.insight is not None else [])
        for topic in moved:
            self.sent.pop(topic, None)
        return moved
