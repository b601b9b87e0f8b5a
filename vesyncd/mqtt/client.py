"""
An MQTT connection that lives on the Twisted reactor, built on paho-mqtt's external-loop API.

Every paho call and callback (and everything it touches: the bridge, the hub) runs in the
reactor thread; the socket is watched by L{vesyncd.mqtt.transport.SocketWatcher}.  The one
blocking step of paho, C{connect} (name lookup, TCP connect, TLS handshake, all with a timeout),
runs in the reactor's thread pool on a fresh paho client that no other thread knows of yet; the
reactor adopts the connected client when that call returns.  A new paho client is made for every
attempt, so no client is ever shared between threads.

Messages wait in a bounded L{vesyncd.mqtt.outbox.Outbox} and are handed to paho a few hundred at
a time (the next ones once paho has written those), so paho's own queue never grows with a
slow broker and a live change overtakes a bulk republish.  Retained values wait while the
broker is away and go out after the next connect, after the C{onConnect} hook ran.  Reconnects
back off exponentially with jitter, capped.
"""

from __future__ import annotations

import secrets
import socket
from typing import Any, Callable

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.mqtt.outbox import MAX_PENDING, Outbox
from vesyncd.mqtt.settings import MAX_BACKOFF, MIN_BACKOFF, BrokerSettings, backoffDelay
from vesyncd.mqtt.transport import SocketWatcher, makePahoClient

log = Logger()

KEEPALIVE = 60
STOP_TIMEOUT = 3.0
#: Messages handed to paho and not yet written; more wait in the outbox.
MAX_IN_FLIGHT = 256
#: Messages handed to paho per reactor turn at most; the rest wait in the outbox for the next turn.
#: paho writes a message at once while the broker keeps up (and reports it written, so it is no
#: longer in flight): a republish of 10,000 plugs (~200,000 messages) then went out in turns of
#: 200 ms and more, with every plug waiting.  ~25 messages are ~1 ms: with 100 a turn (and the
#: republish's slice of plugs beside it) the plugs' /ka answers waited 3-8 times their quiet p99.
FEED_PER_TURN = 25
#: Above this many waiting messages the client is congested (a bulk republish should wait) ...
HIGH_WATER = 2000
#: ... until no more than this many wait.
LOW_WATER = 500
#: Seconds between log lines about dropped messages.
DROP_LOG_INTERVAL = 60.0


class ReactorMQTTClient:
    """Keeps one MQTT connection up from the reactor: reconnects, resubscribes, replays retained state.

    C{onConnect()} runs after each successful connect (subscriptions are already sent), then
    the retained publishes kept while disconnected go out.  C{onMessage(topic, payload,
    retained)} runs for each message on a subscribed topic.  C{onDrained()} runs when the
    outbox, once L{congested}, is back to C{lowWater} messages; C{onDropped()} when retained
    values were lost to the outbox's bounds (the owner should publish its state again).  The
    will (C{willTopic}, C{willPayload}, retained) is also published by L{stop} before a clean
    disconnect.
    """

    def __init__(self, reactor: Any, settings: BrokerSettings, *, willTopic: str, willPayload: bytes,
                 subscriptions: list[str], onConnect: Callable[[], None],
                 onMessage: Callable[[str, bytes, bool], None], onDrained: Callable[[], None] | None = None,
                 onDropped: Callable[[], None] | None = None, clientId: str | None = None,
                 minDelay: float = MIN_BACKOFF, maxDelay: float = MAX_BACKOFF,
                 keepalive: int = KEEPALIVE, maxPending: int = MAX_PENDING, maxInFlight: int = MAX_IN_FLIGHT,
                 highWater: int = HIGH_WATER, lowWater: int = LOW_WATER, noDelay: bool = False,
                 feedPerTurn: int = FEED_PER_TURN) -> None:
        self.reactor = reactor
        self.settings = settings
        self.willTopic = willTopic
        self.willPayload = willPayload
        self.subscriptions = list(subscriptions)
        self.onConnect = onConnect
        self.onMessage = onMessage
        self.onDrained = onDrained
        self.onDropped = onDropped
        #: Send each packet at once (TCP_NODELAY): for request/reply traffic, where Nagle's wait for the
        #: peer's delayed ACK would add ~40 ms to every round trip.
        self.noDelay = noDelay
        self.clientId = clientId or f"vesyncd-{secrets.token_hex(4)}"
        self.minDelay = minDelay
        self.maxDelay = maxDelay
        self.keepalive = keepalive
        self.outbox = Outbox(maxPending)
        self.maxInFlight = maxInFlight
        self.feedPerTurn = max(1, feedPerTurn)
        #: Messages handed since the budget was last renewed (by L{_feedLater}, on a later turn).
        self._handed = 0
        self._feedCall: IDelayedCall | None = None
        self.highWater = highWater
        self.lowWater = min(lowWater, highWater)
        #: Messages handed to paho that it has not reported written (QoS 0) or acknowledged.
        self.inFlight = 0
        #: Messages handed to paho since start.
        self.sent = 0
        #: Events not sent because the broker was away.
        self.eventsSkipped = 0
        self.connected = False
        self.running = False
        self.attempts = 0
        self.connects = 0
        self._congested = False
        self._droppedSeen = 0
        self._dropLogged: float | None = None
        self._paho: Any = None
        self._watcher: SocketWatcher | None = None
        self._connecting: Deferred | None = None
        self._retry: IDelayedCall | None = None
        self._misc = task.LoopingCall(self._loopMisc)
        self._misc.clock = reactor
        self._stopped: Deferred | None = None
        self._lastError: str | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect now, and keep reconnecting until L{stop}."""
        if self.running:
            return
        self.running = True
        self._misc.start(1.0, now=False)
        self._connect()

    def stop(self) -> Deferred:
        """Publish the will payload (a clean 'offline'), disconnect, and stop reconnecting."""
        self.running = False
        if self._misc.running:
            self._misc.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        waits: list[Deferred] = []
        if self._connecting is not None:
            waits.append(self._connecting)
        paho = self._paho
        if paho is not None and self.connected:
            done: Deferred = Deferred()
            self._stopped = done
            paho.publish(self.willTopic, self.willPayload, qos=1, retain=True)
            paho.disconnect()
            timeout = self.reactor.callLater(STOP_TIMEOUT, self._dropConnection, paho, "stop timed out")
            done.addBoth(lambda r: (timeout.cancel() if timeout.active() else None, r)[1])
            waits.append(done)
        elif paho is not None:
            self._dropConnection(paho, "stopping")
        if not waits:
            return succeed(None)
        result = waits[0]
        for other in waits[1:]:
            result.addBoth(lambda _, o=other: o)
        return result.addBoth(lambda _: None)

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0,
                bulk: bool = False) -> None:
        """Queue one message and send what the connection takes now.

        A retained message is the topic's latest value (C{bulk} ones, from a republish, go
        after live ones); a message that is not retained is an event, skipped while the broker
        is away.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if retain:
            self.outbox.putRetained(topic, data, bulk)
            self._noteDrops()
        elif self.connected:
            self.outbox.putEvent(topic, data, qos)
        else:
            self.eventsSkipped += 1
            return
        self._feed()

    def backlog(self) -> int:
        """Messages waiting in the outbox."""
        return len(self.outbox)

    def congested(self) -> bool:
        """True while more than C{highWater} messages wait; C{onDrained} follows once they went."""
        if len(self.outbox) > self.highWater:
            self._congested = True
        return self._congested

    def _feed(self) -> None:
        paho = self._paho
        if self.connected and paho is not None:
            while self.inFlight < self.maxInFlight:
                if self._handed >= self.feedPerTurn:
                    if self._feedCall is None:  # the rest on the next turn, so plugs are served between
                        self._feedCall = self.reactor.callLater(0, self._feedLater)
                    break
                item = self.outbox.pop()
                if item is None:
                    break
                topic, data, retain, qos = item
                info = paho.publish(topic, data, qos=qos, retain=retain)
                if info.rc != 0:
                    # The connection is going away: keep the value for the next one.
                    if retain:
                        self.outbox.putRetained(topic, data)
                    break
                self.inFlight += 1
                self.sent += 1
                self._handed += 1
        if self._congested and len(self.outbox) <= self.lowWater:
            self._congested = False
            if self.onDrained is not None:
                self.onDrained()

    def _feedLater(self) -> None:
        """A new turn: a new budget (a turn that used part of the last one may get less: simpler than
        renewing it on every turn, and never more)."""
        self._feedCall = None
        self._handed = 0
        self._feed()

    def _noteDrops(self) -> None:
        dropped = self.outbox.dropped
        if dropped == self._droppedSeen:
            return
        self._droppedSeen = dropped
        now = self.reactor.seconds()
        if self._dropLogged is None or now - self._dropLogged >= DROP_LOG_INTERVAL:
            self._dropLogged = now
            log.warn("mqtt: {n} retained messages dropped so far: more waited than the outbox holds "
                     "({limit} topics); they will be published again from the current state",
                     n=dropped, limit=self.outbox.maxTopics)
        if self.onDropped is not None:
            self.onDropped()

    def _onPublish(self, paho: Any, userdata: Any, mid: Any, reason: Any, properties: Any) -> None:
        # QoS 0: paho wrote the message; QoS 1: the broker acknowledged it.
        if paho is self._paho:
            self.inFlight = max(0, self.inFlight - 1)

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self.running or self._connecting is not None or self._paho is not None:
            return
        paho, properties = makePahoClient(self.settings, self.clientId, self.willTopic, self.willPayload)
        settings = self.settings

        def blockingConnect() -> Any:
            # Runs in a pool thread, on a client no other thread has seen yet.
            paho.connect(settings.host, settings.port, keepalive=self.keepalive, clean_start=True,
                         properties=properties)
            return paho

        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), blockingConnect)
        self._connecting = d
        d.addCallbacks(self._socketOpen, self._connectFailed)
        d.addBoth(self._connectDone)

    def _connectDone(self, result: Any) -> None:
        self._connecting = None
        return None

    def _connectFailed(self, failure: Failure) -> None:
        self._noteError(f"cannot connect to {self.settings.describe()}: {failure.getErrorMessage()}")
        self._scheduleReconnect()

    def _socketOpen(self, paho: Any) -> None:
        """Adopt a client whose socket is connected and whose CONNECT is sent or queued."""
        sock = paho.socket()
        if not self.running or sock is None:
            if sock is not None:
                sock.close()
            if self.running:
                self._scheduleReconnect()
            return
        self._paho = paho
        if self.noDelay:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not TCP (or already closed): nothing to tune
        watcher = self._watcher = SocketWatcher(paho, sock, self._doRead, self._doWrite, self._socketLost)
        paho.on_connect = self._onConnect
        paho.on_disconnect = self._onDisconnect
        paho.on_message = self._onMessage
        paho.on_publish = self._onPublish
        paho.on_socket_register_write = lambda c, u, s: self._watchWrite(watcher, True)
        paho.on_socket_unregister_write = lambda c, u, s: self._watchWrite(watcher, False)
        paho.on_socket_close = lambda c, u, s: self._unwatch(watcher)
        self.reactor.addReader(watcher)
        if paho.want_write():
            self.reactor.addWriter(watcher)

    def _watchWrite(self, watcher: SocketWatcher, on: bool) -> None:
        if not watcher.active:
            return
        if on:
            self.reactor.addWriter(watcher)
        else:
            self.reactor.removeWriter(watcher)

    def _unwatch(self, watcher: SocketWatcher) -> None:
        if watcher.active:
            self.reactor.removeReader(watcher)
            self.reactor.removeWriter(watcher)
            watcher.deactivate()

    def _doRead(self, watcher: SocketWatcher) -> None:
        paho = watcher.paho
        try:
            paho.loop_read()
            while watcher.tlsPending():
                paho.loop_read()
        except Exception as e:
            log.failure("mqtt: reading from the broker failed")
            self.reactor.callLater(0, self._dropConnection, paho, f"read failed: {e}")
            return
        self._feed()

    def _doWrite(self, watcher: SocketWatcher) -> None:
        paho = watcher.paho
        try:
            paho.loop_write()
        except Exception as e:
            log.failure("mqtt: writing to the broker failed")
            self.reactor.callLater(0, self._dropConnection, paho, f"write failed: {e}")
            return
        self._feed()

    def _socketLost(self, watcher: SocketWatcher, reason: Failure) -> None:
        self._dropConnection(watcher.paho, f"socket lost: {reason.getErrorMessage()}")

    def _loopMisc(self) -> None:
        paho = self._paho
        if paho is not None:
            try:
                paho.loop_misc()
            except Exception as e:
                log.failure("mqtt: keepalive handling failed")
                self.reactor.callLater(0, self._dropConnection, paho, f"keepalive failed: {e}")

    # -- paho callbacks (reactor thread) -------------------------------------------------------

    def _onConnect(self, paho: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if paho is not self._paho:
            return
        if reason.is_failure:
            self._noteError(f"broker {self.settings.describe()} refused the connection: {reason}")
            self.reactor.callLater(0, self._dropConnection, paho, "refused")
            return
        self.connected = True
        self.attempts = 0
        self.connects += 1
        self._lastError = None
        log.info("mqtt: connected to {broker}", broker=self.settings.describe())
        if self.subscriptions:
            paho.subscribe([(topic, 1) for topic in self.subscriptions])
        try:
            self.onConnect()
        except Exception:
            log.failure("mqtt: the connect hook failed")
        self._feed()

    def _onDisconnect(self, paho: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if paho is not self._paho:
            return
        self._dropConnection(paho, f"disconnected ({reason})")

    def _onMessage(self, paho: Any, userdata: Any, message: Any) -> None:
        if paho is not self._paho:
            return
        try:
            self.onMessage(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:
            log.failure("mqtt: handling a message on {topic} failed", topic=message.topic)

    # -- losing the connection -----------------------------------------------------------------

    def _dropConnection(self, paho: Any, why: str) -> None:
        """Forget C{paho}'s connection (closing its socket if still open) and plan the next one."""
        if paho is not self._paho:
            return
        wasConnected = self.connected
        self._paho = None
        self.connected = False
        self.inFlight = 0
        if self._feedCall is not None and self._feedCall.active():
            self._feedCall.cancel()
        self._feedCall = None
        self._handed = 0
        self.outbox.dropEvents()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            self._unwatch(watcher)
        paho.on_connect = paho.on_disconnect = paho.on_message = paho.on_publish = None
        paho.on_socket_register_write = paho.on_socket_unregister_write = paho.on_socket_close = None
        sock = paho.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            log.info("mqtt: disconnected from {broker}", broker=self.settings.describe())
            stopped.callback(None)
            return
        if wasConnected:
            log.warn("mqtt: lost the broker {broker}: {why}", broker=self.settings.describe(), why=why)
        self._scheduleReconnect()

    def _noteError(self, message: str) -> None:
        # Say it once per distinct error, not on every retry.
        if message != self._lastError:
            log.warn("mqtt: {message}; retrying with backoff", message=message)
            self._lastError = message

    def _scheduleReconnect(self) -> None:
        if not self.running or self._retry is not None:
            return
        self.attempts += 1
        delay = backoffDelay(self.attempts, self.minDelay, self.maxDelay)
        self._retry = self.reactor.callLater(delay, self._connect)
