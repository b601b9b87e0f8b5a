"""
This node's membership of the cluster: the L{IClusterSeam} the hub calls, joining the leases
(L{vesyncd.cluster.leases}), the node directory (L{vesyncd.cluster.nodes}) and the broker link
(L{vesyncd.cluster.link}).

 - A plug logs in here: its lease is taken; the node that held it is told to close its stale
   connection; unless this node held it already, the plug's stored row and energy totals are read
   again before its reports are accounted (L{vesyncd.core.hub.Hub.adopted}) and its automation is
   taken over (C{engine.adoptPlug}).
 - A command for a plug held by node C goes to C as a C{command} request and comes back as C's hub
   answered it; a change (alias, power-on policy, forget) goes to C as a C{change} notice.
 - This node's own hub events are published on its C{events} stream; the other nodes' events
   update the hub's view of their plugs and reach this node's watchers.
 - Automation items saved here are published on the C{automation} stream (with their documents)
   and applied by the other nodes' engines without writing them again.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vesyncd.cluster.leases import LeaseKeeper
from vesyncd.cluster.link import BrokerLink, RemoteError
from vesyncd.cluster.nodes import NodeDirectory
from vesyncd.cluster.settings import ClusterSettings
from vesyncd.core.events import eventJSON
from vesyncd.core.hub import Hub
from vesyncd.core.interfaces import IClusterSeam
from vesyncd.core.model import (PLUG_PENDING, AmbiguousPlug, CommandError, CommandTimeout, Event, InvalidArgument,
                                PlugOffline, PlugState, QueueFull, UnknownPlug, plugToWire)

log = Logger()

#: Core errors by code, so a command routed to another node fails here as it would there.
ERRORS: dict[str, type[CommandError]] = {cls.code: cls for cls in (UnknownPlug, AmbiguousPlug, PlugOffline,
                                                                    CommandTimeout, QueueFull, InvalidArgument)}
#: Characters of a plug id, a cause or a change value accepted from another node.
MAX_TEXT = 256
#: Changes another node may forward.
CHANGES = ("alias", "power_on", "forget", "clear_conflict")
#: An automation document from another node larger than this is ignored (the store refuses 4 KiB).
MAX_AUTOMATION_DOC = 4096
#: Plug states per C{state} message (each well under 1 KiB: the message stays under the link's bound).
STATE_CHUNK = 25
#: Seconds between two answers to other nodes' hellos (a flapping link must not flood the broker).
STATE_SPACING = 5.0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else None


@implementer(IClusterSeam)
class ClusterMember:
    """This node of the cluster (see the module's docstring); L{start} and L{stop} follow the daemon."""

    def __init__(self, clock: IReactorTime, hub: Hub, settings: ClusterSettings, *, run: Callable[..., Deferred],
                 connection: Callable[[], Any], prefix: str, commandTimeout: float,
                 loadPlug: Callable[[str], Deferred] | None = None,
                 reloadEnergy: Callable[[str], Deferred] | None = None,
                 address: Callable[[], str | None] = lambda: None,
                 plugAddress: Callable[[], str | None] = lambda: None) -> None:
        self.clock = clock
        self.hub = hub
        self.settings = settings
        self.nodeName = settings.node
        self.run = run
        self.connection = connection
        self.commandTimeout = commandTimeout
        self.loadPlug = loadPlug
        self.reloadEnergy = reloadEnergy
        self.directory = NodeDirectory(clock, run, connection, settings, address, plugAddress,
                                       onRead=lambda owners: hub.remoteOwners(owners, self.nodeName),
                                       brokerConnected=lambda: self.link.connected())
        self.leases = LeaseKeeper(clock, run, connection, settings, held=lambda: [s.plug.id for s in hub.sessions()],
                                  onLost=self._lost, onLapsed=hub.lapsed)
        self.link = BrokerLink(clock, settings.node, prefix, publish=lambda topic, payload, qos: None,
                               connected=lambda: False, handler=self, onStream=self._stream)
        #: The automation engine taking plugs over (C{adoptPlug}, C{applyItem}, C{applyPlugDeleted}), if any.
        self.automation: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._stateSent: float | None = None
        self.link.onConnected = self._linkUp
        self.stats = {"resyncs": 0, "resync_failures": 0, "drops_sent": 0, "routed": 0, "routed_failed": 0,
                      "routed_dead": 0}
        self.directory.countersFrom = self.counters

    @property
    def view(self) -> NodeDirectory:
        """The L{vesyncd.cluster.nodes.ClusterView} of this cluster, for front ends and the DNS responder."""
        return self.directory

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> Deferred:
        """Attach to the hub, publish its events, and start the heartbeat and the leases."""
        self.hub.attachCluster(self)
        if self._unsubscribe is None:
            self._unsubscribe = self.hub.subscribe(self._localEvent, remote=False)
        self.directory.start()
        return self.leases.start()

    def stop(self) -> Deferred:
        """Give up the leases and the node's row, and fail what waits for other nodes."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.link.stop()
        return DeferredList([self.leases.stop(), self.directory.stop()], consumeErrors=True)

    # -- IClusterSeam --------------------------------------------------------------------------

    def claimed(self, plugId: str) -> None:
        """Take the plug's lease; tell its previous node; read its state again unless it was ours."""
        d = self.leases.claim(plugId)

        def taken(previous: str | None) -> Deferred | None:
            if previous == self.nodeName:
                self._adopted(plugId, None)
                return None
            if previous is not None:
                self.stats["drops_sent"] += 1
                self.link.notify(previous, "drop", plug=plugId)
            return self._resync(plugId)

        def failed(f: Any) -> None:
            log.warn("cluster: could not take the lease of plug {plug}: {error}", plug=plugId,
                     error=f.getErrorMessage())
            self._adopted(plugId, None)

        d.addCallbacks(taken, failed)

    def _resync(self, plugId: str) -> Deferred:
        """Read the plug's row and energy totals again, then let the hub account its held reports."""
        self.stats["resyncs"] += 1
        waits = [self.loadPlug(plugId) if self.loadPlug else succeed(None),
                 self.reloadEnergy(plugId) if self.reloadEnergy else succeed(None)]

        def done(results: list[tuple[bool, Any]]) -> None:
            (rowOk, row), (energyOk, energyValue) = results
            if not (rowOk and energyOk):
                self.stats["resync_failures"] += 1
                failure = row if not rowOk else energyValue
                log.warn("cluster: could not read plug {plug} again after taking it over: {error}", plug=plugId,
                         error=failure.getErrorMessage())
            self._adopted(plugId, row if rowOk and isinstance(row, PlugState) else None)

        return DeferredList(waits, consumeErrors=True).addCallback(done)

    def _adopted(self, plugId: str, stored: PlugState | None) -> None:
        self.hub.adopted(plugId, stored)
        if self.automation is not None and self.hub.session(plugId) is not None:
            self.automation.adoptPlug(plugId)

    def released(self, plugId: str) -> None:
        """The plug's connection here ended: give up its lease."""
        self.leases.release(plugId)

    def route(self, node: str, plugId: str, kind: str, cause: str) -> Deferred:
        """Send the command to C{node}; its answer (state or error) is this command's (see L{IClusterSeam})."""
        self.stats["routed"] += 1
        if self.directory.seemsDead(node):
            # Its plugs are reconnecting elsewhere: say so now rather than after the command timeout.
            self.stats["routed_failed"] += 1
            self.stats["routed_dead"] += 1
            return fail(PlugOffline(f"plug {plugId} was on node {node}, which stopped answering; it should be "
                                    "back on another node soon"))
        d = self.link.request(node, "command", self.commandTimeout + self.settings.routeMargin, plug=plugId,
                              kind=kind, cause=cause)

        def answered(reply: dict[str, Any]) -> PlugState:
            state = self.hub.adoptWire(reply.get("plug"), node)
            if state is None:
                raise CommandError(f"node {node} answered without the plug's state")
            return state

        def failed(f: Any) -> Any:
            self.stats["routed_failed"] += 1
            if f.check(RemoteError):
                cls = ERRORS.get(f.value.code)
                if cls is not None:
                    raise cls(str(f.value))
            return f

        return d.addCallbacks(answered, failed)

    def forward(self, node: str, plugId: str, change: str, value: Any) -> None:
        """Send the change to C{node}, which holds the plug (see L{IClusterSeam}); with the broker away
        it cannot go, which is logged (the change then holds on this node only)."""
        if not self.link.connected():
            log.warn("cluster: the broker is away: {change} of plug {plug} is not sent to node {node}, which holds "
                     "it", change=change, plug=plugId, node=node)
        self.link.notify(node, "change", plug=plugId, change=change, value=value)

    # -- what other nodes ask (BrokerLink handler) ---------------------------------------------

    def handle_command(self, sender: str, message: dict[str, Any]) -> Deferred:
        """Carry out a command for a plug connected here; reply with its confirmed state."""
        plugId, kind, cause = _text(message.get("plug")), _text(message.get("kind")), _text(message.get("cause"))
        if plugId is None or kind is None:
            raise InvalidArgument("a command needs a plug and a kind")
        d = self.hub.runRouted(plugId, kind, cause or "command")
        return d.addCallback(lambda state: {"plug": plugToWire(state)})

    def handle_change(self, sender: str, message: dict[str, Any]) -> None:
        """Apply a change another node's front end made to a plug connected here."""
        plugId, change = _text(message.get("plug")), message.get("change")
        value = message.get("value")
        if plugId is None or change not in CHANGES or not (value is None or _text(value) is not None):
            raise InvalidArgument("malformed change")
        self.hub.remoteChange(plugId, change, value)

    def handle_drop(self, sender: str, message: dict[str, Any]) -> Deferred | None:
        """Another node took the plug's lease: close the stale connection here, unless the lease is
        this node's again by now (the plug came back)."""
        plugId = _text(message.get("plug"))
        if plugId is None or self.hub.session(plugId) is None:
            return None

        def check(holder: str | None) -> None:
            if holder != self.nodeName and self.hub.session(plugId) is not None:
                self.hub.dropLocal(plugId, holder or sender)

        return self.leases.holder(plugId).addCallback(check)

    def _lost(self, plugId: str, node: str) -> None:
        """The renewal found the plug's lease with another node while it is connected here."""
        self.hub.dropLocal(plugId, node)

    # -- streams -------------------------------------------------------------------------------

    def _linkUp(self) -> None:
        """The link (re)connected: events may have been missed both ways; say hello (the others answer
        with their plugs' state) and send this node's own."""
        self.link.broadcast("state", {"hello": True})
        self._sendState(force=True)

    def _sendState(self, force: bool = False) -> None:
        """Publish the state of every plug connected here, in chunks (at most once per L{STATE_SPACING})."""
        now = self.clock.seconds()
        if not force and self._stateSent is not None and now - self._stateSent < STATE_SPACING:
            return
        self._stateSent = now
        states = [plugToWire(self.hub.snapshot(s.plug)) for s in self.hub.sessions()
                  if self.hub.elsewhere(s.plug.id) is None and s.plug.id not in self.hub.pendingIds()]
        for start in range(0, len(states), STATE_CHUNK):
            self.link.broadcast("state", {"plugs": states[start:start + STATE_CHUNK]})

    def _localEvent(self, event: Event) -> None:
        """Publish one of this node's own events for the other nodes."""
        if event.kind == PLUG_PENDING:
            return  # plugs waiting for approval are this node's alone
        try:
            plug = self.hub.resolve(event.plug)
        except UnknownPlug:
            plug = None
        if plug is not None and plug.id != event.plug:
            plug = None
        self.link.broadcast("events", {"event": eventJSON(event, plug)})

    def _stream(self, stream: str, sender: str, message: dict[str, Any]) -> None:
        """Another node's event or automation change."""
        if stream == "events":
            event = message.get("event")
            if not isinstance(event, dict):
                return
            kind, plugId, ts, data = event.get("event"), _text(event.get("plug")), event.get("ts"), event.get("data")
            if (not isinstance(kind, str) or plugId is None or not isinstance(data, dict)
                    or not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts)):
                return
            self.hub.remoteEvent(sender, kind, plugId, float(ts), data)
        elif stream == "state":
            if message.get("hello") is True:
                self._sendState()
                return
            plugs = message.get("plugs")
            if isinstance(plugs, list):
                for doc in plugs[:STATE_CHUNK * 2]:
                    self.hub.remoteState(sender, doc)
        elif stream == "automation" and self.automation is not None:
            op, plugId = message.get("op"), _text(message.get("plug"))
            if plugId is None:
                return
            if op == "deletePlug":
                self.automation.applyPlugDeleted(plugId)
                return
            kind, itemId, doc = _text(message.get("kind")), _text(message.get("id")), message.get("doc")
            if kind is None or itemId is None or op not in ("save", "delete"):
                return
            if op == "save" and (not isinstance(doc, dict)
                                 or len(json.dumps(doc, separators=(",", ":"))) > MAX_AUTOMATION_DOC):
                return
            self.automation.applyItem(kind, itemId, plugId, doc if op == "save" else None)

    # -- automation ----------------------------------------------------------------------------

    def attachAutomation(self, engine: Any) -> None:
        """Let C{engine} take over the automation of plugs that move here and apply the other nodes' changes."""
        self.automation = engine

    def loadItems(self, plugId: str) -> Deferred:
        """Fire with the plug's automation items as stored: C{[(kind, id, plug, document)]}."""
        return self.run(self._readItems, plugId)

    def _readItems(self, plugId: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        items = []
        for kind, itemId, plug, doc in self.connection().execute(
                "SELECT kind, id, plug, doc FROM automation WHERE plug = ?", (plugId,)).fetchall():
            try:
                value = json.loads(doc) if len(doc) <= MAX_AUTOMATION_DOC else None
            except ValueError:
                value = None
            if isinstance(value, dict):
                items.append((str(kind), str(itemId), str(plug), value))
        return items

    def publishItem(self, op: str, plug: str, kind: str | None = None, itemId: str | None = None,
                    doc: dict[str, Any] | None = None) -> None:
        """Tell the other nodes that an automation item changed here (C{op}: save, delete, deletePlug)."""
        message: dict[str, Any] = {"op": op, "plug": plug}
        if kind is not None:
            message.update(kind=kind, id=itemId, doc=doc)
        self.link.broadcast("automation", message)

    def counters(self) -> dict[str, int]:
        """Every counter of the leases, the link and take-overs, flat (see L{ClusterView.counters})."""
        out = {**self.leases.stats, **self.link.stats, **self.stats}
        out["pending_requests"] = self.link.pending()
        return out

    def status(self) -> dict[str, Any]:
        """Counters of the leases, the link and take-overs, for C{info} and C{/metrics}."""
        return {"node": self.nodeName, "leases": dict(self.leases.stats), "link": dict(self.link.stats),
                "pending_requests": self.link.pending(), "plugs_elsewhere": len(self.hub.remotePlugs()),
                **self.stats}


class NotifyingAutomationStore:
    """An automation store that also tells the other nodes of each change (see L{ClusterMember.publishItem});
    everything else is the wrapped store's."""

    def __init__(self, inner: Any, member: ClusterMember) -> None:
        self.inner = inner
        self.member = member

    def load(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Every stored item (the wrapped store's)."""
        return self.inner.load()

    def save(self, kind: str, id: str, plug: str, document: dict[str, Any]) -> None:
        """Save, then announce the new document."""
        self.inner.save(kind, id, plug, document)
        self.member.publishItem("save", plug, kind, id, document)

    def delete(self, kind: str, id: str, plug: str) -> None:
        """Delete, then announce it."""
        self.inner.delete(kind, id, plug)
        self.member.publishItem("delete", plug, kind, id)

    def deletePlug(self, plug: str) -> None:
        """Delete every item of the plug, then announce it."""
        self.inner.deletePlug(plug)
        self.member.publishItem("deletePlug", plug)

    def flush(self) -> Deferred:
        """The wrapped store's flush."""
        return self.inner.flush()
