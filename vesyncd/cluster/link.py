"""
The broker link between the nodes of a cluster: requests with a correlation id and their replies,
notices that need no reply, and each node's stream of events and automation changes.

Topics (all under C{<prefix>/cluster/}, C{<node>} a node's name):

    <node>/request      requests to that node: {"id", "from", "op", ...}; "id" is absent for notices
    <node>/reply        replies to that node's requests: {"id", "from", "ok": true, ...} or
                        {"id", "from", "ok": false, "code", "message"}
    <node>/events       that node's hub events: {"node", "event": the one event JSON shape}
    <node>/automation   that node's automation item changes: {"node", "op", ...}
    <node>/state        that node's plugs as they are now: {"node", "plugs": [plug state...]}, or
                        {"node", "hello": true} when its link (re)connects (the others answer with theirs)

Every message is one JSON object parsed with L{vesyncd.jsonguard} (size and depth bounded); a
message from another prefix, one naming this node as its sender, a malformed one or one beyond the
rate bounds is counted and dropped (logged, escaped, at most once a minute per reason).  Requests
waiting for a reply are bounded (L{MAX_PENDING}), each with its own timeout.

Requests, replies and events go at QoS 0 (a request lost with a broken connection times out);
notices and automation changes at QoS 1.  The link's connection sets TCP_NODELAY; the broker should
too (mosquitto: C{set_tcp_nodelay true}), or each hop of a routed command waits ~40 ms for a delayed
ACK (measured on loopback: routed p50 44 ms without it, 2.7 ms with it, local 1.9 ms).

The link does no networking itself: it is given C{publish(topic, payload, qos)} and C{connected()}
and is handed each message with L{BrokerLink.received}; L{makeClient} puts it on a real MQTT
connection (L{vesyncd.mqtt.client.ReactorMQTTClient}), the tests on an in-memory broker.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.cluster.settings import validNodeName
from vesyncd.core.model import CommandError
from vesyncd.escape import printable
from vesyncd.jsonguard import BadJSON, parseJSONObject

log = Logger()

#: Largest message accepted (an event or a plug's state is well under 4 KiB).
MAX_MESSAGE = 32 * 1024
#: Nesting accepted in a message (the event JSON nests data one or two levels under "event").
MAX_DEPTH = 8
#: Requests waiting for a reply at most; more fail at once.
MAX_PENDING = 4096
#: Requests handled per second (burst: five seconds' worth) and other nodes' events and notices per second.
REQUEST_RATE = 2000.0
EVENT_RATE = 20000.0
#: Seconds between log lines about dropped messages, per reason.
DROP_LOG_INTERVAL = 60.0
STREAMS = ("events", "automation", "state")


class LinkBusy(CommandError):
    """Too many requests to other nodes wait for their replies."""

    code = "busy"


class LinkDown(CommandError):
    """The broker that links the nodes cannot be reached."""

    code = "unreachable"


class RemoteError(CommandError):
    """Another node refused or failed a request; C{code} is that node's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TokenBucket:
    """C{rate} tokens a second, at most C{burst} saved up; L{take} is False when none is left."""

    def __init__(self, clock: IReactorTime, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = clock.seconds()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class BrokerLink:
    """This node's side of the broker link (see the module's docstring).

    C{handler} serves requests: C{handler.handle_<op>(sender, message)} returns a dict (or a
    Deferred of one) for the reply, or raises (a L{CommandError}'s C{code} and message go back).
    C{onStream(stream, sender, message)} receives the other nodes' C{events} and C{automation}
    messages.
    """

    def __init__(self, clock: IReactorTime, node: str, prefix: str, publish: Callable[[str, bytes, int], None],
                 connected: Callable[[], bool], handler: Any, onStream: Callable[[str, str, dict[str, Any]], None],
                 maxPending: int = MAX_PENDING, requestRate: float = REQUEST_RATE,
                 eventRate: float = EVENT_RATE) -> None:
        self.clock = clock
        self.node = node
        self.base = f"{prefix}/cluster/"
        self.publish = publish
        self.connected = connected
        self.handler = handler
        self.onStream = onStream
        #: Called each time the link's connection to the broker is (re)made.
        self.onConnected: Callable[[], None] = lambda: None
        self.maxPending = maxPending
        self._pending: dict[str, tuple[Deferred, IDelayedCall]] = {}
        self._requests = TokenBucket(clock, requestRate, requestRate * 5)
        self._events = TokenBucket(clock, eventRate, eventRate * 5)
        self._dropLogged: dict[str, float] = {}
        self.stats = {"requests_sent": 0, "requests_served": 0, "replies": 0, "timeouts": 0, "events_sent": 0,
                      "events_received": 0, "dropped": 0, "late_replies": 0}

    def topic(self, node: str, kind: str) -> str:
        """The topic C{kind} (request, reply, events, automation) of C{node}."""
        return f"{self.base}{node}/{kind}"

    def subscriptions(self) -> list[str]:
        """What this node subscribes to: its requests and replies, and every node's streams."""
        return [self.topic(self.node, "request"), self.topic(self.node, "reply"),
                *(f"{self.base}+/{stream}" for stream in STREAMS)]

    def pending(self) -> int:
        """Requests waiting for their replies."""
        return len(self._pending)

    # -- sending -------------------------------------------------------------------------------

    def _send(self, topic: str, message: dict[str, Any], qos: int = 0) -> None:
        self.publish(topic, json.dumps(message, separators=(",", ":")).encode("utf-8"), qos)

    def request(self, node: str, op: str, timeout: float, **fields: Any) -> Deferred:
        """Send request C{op} to C{node}; fires with the reply's fields when it says ok, fails with
        L{RemoteError} (the other node's error code) when not, with C{CommandTimeout} after
        C{timeout} seconds, at once with L{LinkBusy} or L{LinkDown}."""
        from vesyncd.core.model import CommandTimeout

        if len(self._pending) >= self.maxPending:
            return _failed(LinkBusy(f"{len(self._pending)} requests to other nodes are waiting"))
        if not self.connected():
            return _failed(LinkDown(f"node {node} cannot be reached: the broker is not connected"))
        requestId = secrets.token_hex(8)
        d: Deferred = Deferred()

        def expire() -> None:
            entry = self._pending.pop(requestId, None)
            if entry is not None:
                self.stats["timeouts"] += 1
                entry[0].errback(CommandTimeout(f"node {node} did not answer within {timeout:g} s"))

        self._pending[requestId] = (d, self.clock.callLater(timeout, expire))
        self.stats["requests_sent"] += 1
        self._send(self.topic(node, "request"), {**fields, "id": requestId, "from": self.node, "op": op})
        return d

    def notify(self, node: str, op: str, **fields: Any) -> None:
        """Send notice C{op} to C{node} (no reply; lost if the broker is away)."""
        self._send(self.topic(node, "request"), {**fields, "from": self.node, "op": op}, qos=1)

    def broadcast(self, stream: str, message: dict[str, Any]) -> None:
        """Publish one message on this node's C{stream} (C{events} or C{automation}) for every other node."""
        self.stats["events_sent"] += 1
        self._send(self.topic(self.node, stream), {**message, "node": self.node}, qos=1 if stream == "automation" else 0)

    def stop(self) -> None:
        """Fail every request still waiting (the daemon stops)."""
        pending, self._pending = self._pending, {}
        for d, call in pending.values():
            if call.active():
                call.cancel()
            d.errback(LinkDown("vesyncd is stopping"))

    # -- receiving -----------------------------------------------------------------------------

    def _drop(self, reason: str, topic: str, detail: str = "") -> None:
        self.stats["dropped"] += 1
        now = self.clock.seconds()
        last = self._dropLogged.get(reason)
        if last is None or now - last >= DROP_LOG_INTERVAL:
            if len(self._dropLogged) > 64:
                self._dropLogged.clear()
            self._dropLogged[reason] = now
            log.warn("cluster: dropped a message on {topic}: {reason} {detail}", topic=printable(topic[:200]),
                     reason=reason, detail=printable(detail[:200]))

    def received(self, topic: str, payload: bytes) -> None:
        """Handle one message from the broker (hostile input: checked, never raises)."""
        if not topic.startswith(self.base):
            return self._drop("outside the cluster's topics", topic)
        parts = topic[len(self.base):].split("/")
        if len(parts) != 2 or not validNodeName(parts[0]):
            return self._drop("unknown topic", topic)
        node, kind = parts
        try:
            message = parseJSONObject(payload, maxBytes=MAX_MESSAGE, maxDepth=MAX_DEPTH, what="the message")
        except BadJSON as e:
            return self._drop("malformed", topic, str(e))
        sender = message.get("from" if kind in ("request", "reply") else "node")
        if not validNodeName(sender) or sender == self.node:
            if sender != self.node:
                self._drop("no valid sender", topic)
            return
        if kind in STREAMS:
            if sender != node:
                return self._drop("sender is not the topic's node", topic)
            if not self._events.take():
                return self._drop("over the event rate", topic)
            self.stats["events_received"] += 1
            self.onStream(kind, sender, message)
        elif node != self.node:
            return self._drop("not addressed to this node", topic)
        elif kind == "reply":
            self._reply(message)
        elif kind == "request":
            if not self._requests.take():
                return self._drop("over the request rate", topic)
            self._serve(sender, message)
        else:
            self._drop("unknown topic", topic)

    def _reply(self, message: dict[str, Any]) -> None:
        entry = self._pending.pop(message.get("id"), None) if isinstance(message.get("id"), str) else None
        if entry is None:
            self.stats["late_replies"] += 1
            return
        d, call = entry
        if call.active():
            call.cancel()
        self.stats["replies"] += 1
        if message.get("ok") is True:
            d.callback(message)
        else:
            code, text = message.get("code"), message.get("message")
            d.errback(RemoteError(str(code)[:32] if isinstance(code, str) else "failed",
                                  str(text)[:300] if isinstance(text, str) else "the other node failed"))

    def _serve(self, sender: str, message: dict[str, Any]) -> None:
        op = message.get("op")
        handle = getattr(self.handler, f"handle_{op}", None) if isinstance(op, str) and op.isidentifier() else None
        requestId = message.get("id")
        wantsReply = isinstance(requestId, str) and 0 < len(requestId) <= 64
        if handle is None:
            self._drop("unknown request", self.topic(self.node, "request"), str(op)[:40])
            if wantsReply:
                self._send(self.topic(sender, "reply"), {"id": requestId, "from": self.node, "ok": False,
                                                          "code": "invalid", "message": "unknown request"})
            return
        self.stats["requests_served"] += 1
        d = maybeDeferred(handle, sender, message)

        def ok(result: Any) -> None:
            if wantsReply:
                self._send(self.topic(sender, "reply"), {**(result or {}), "id": requestId, "from": self.node,
                                                          "ok": True})

        def failed(f: Failure) -> None:
            if f.check(CommandError):
                code, text = getattr(f.value, "code", "failed"), str(f.value)
            else:
                log.failure("cluster: request {op} from {sender} failed", f, op=op, sender=sender)
                code, text = "failed", "the request failed on node " + self.node
            if wantsReply:
                self._send(self.topic(sender, "reply"), {"id": requestId, "from": self.node, "ok": False,
                                                          "code": code, "message": text[:300]})

        d.addCallbacks(ok, failed)


def _failed(error: Exception) -> Deferred:
    d: Deferred = Deferred()
    d.errback(error)
    return d


def makeClient(reactor: Any, brokerSettings: Any, link: BrokerLink, clientId: str | None = None) -> Any:
    """A L{vesyncd.mqtt.client.ReactorMQTTClient} of its own for C{link} (not the bridge's), with C{link}
    wired to it: its subscriptions, its messages, and publishing.  Start it with C{.start()}."""
    from vesyncd.mqtt.client import ReactorMQTTClient

    status = link.topic(link.node, "status")
    client = ReactorMQTTClient(reactor, brokerSettings, willTopic=status, willPayload=b"offline",
                               subscriptions=link.subscriptions(),
                               onConnect=lambda: (client.publish(status, b"online", retain=True, qos=1),
                                                  link.onConnected()),
                               onMessage=lambda topic, payload, retained: link.received(topic, payload),
                               clientId=clientId or f"vesyncd-node-{link.node}-{secrets.token_hex(3)}",
                               noDelay=True)
    link.publish = lambda topic, payload, qos: client.publish(topic, payload, retain=False, qos=qos)
    link.connected = lambda: bool(client.connected)
    return client
