"""
An MQTT connection that lives on the Twisted reactor, built on paho-mqtt's external-loop API.

paho does the MQTT framing; Twisted does the waiting.  Once connected, the client's socket is
registered with the reactor as an C{IReadDescriptor}/C{IWriteDescriptor}, and C{loop_read},
C{loop_write} and C{loop_misc} are called from the reactor thread only, so every paho callback
(and everything it touches: the bridge, the hub) runs in the reactor thread.

The one blocking step of paho, C{connect} (name lookup, TCP connect, TLS handshake, all with a
timeout), runs in the reactor's thread pool on a fresh paho client that no other thread knows
of yet; the reactor adopts the connected client when that call returns.  A new paho client is
made for every attempt, so no client is ever shared between threads.

While the broker is away, retained publishes are kept as a bounded dict (latest payload per
topic); they are sent after the next successful connect, after the C{onConnect} hook ran.
Reconnects back off exponentially with jitter, capped.
"""

from __future__ import annotations

import random
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
KEEPALIVE = 60
CONNECT_TIMEOUT = 10.0
MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0
#: Topics whose latest retained payload is kept while the broker is away.
MAX_PENDING = 10000
#: The largest packet the broker may send us (MQTT 5 Maximum Packet Size): commands are tiny.
MAX_INBOUND_PACKET = 64 * 1024
STOP_TIMEOUT = 3.0


class MQTTConfigError(ValueError):
    """An C{--mqtt} URL or related option is not usable; the message says why (never the password)."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect; C{password} is never part of C{repr} or L{describe}."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    caFile: str | None = None

    def describe(self) -> str:
        """The broker as a URL for logs: user name kept, password left out."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parseBrokerURL(url: str, caFile: str | None = None) -> BrokerSettings:
    """Parse C{mqtt://[user:password@]host[:port]} or C{mqtts://...}.

    @raise MQTTConfigError: the URL is malformed; the message never repeats the password.
    """
    if not isinstance(url, str) or len(url) > 1024:
        raise MQTTConfigError("--mqtt takes a URL of at most 1024 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise MQTTConfigError("--mqtt: the URL is malformed (expected mqtt://[user:password@]host[:port])") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MQTTConfigError(f"--mqtt: scheme must be mqtt:// or mqtts://, not {parts.scheme!r}")
    if not parts.hostname:
        raise MQTTConfigError("--mqtt: the URL names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MQTTConfigError("--mqtt: the URL takes no path, query or fragment")
    tls = parts.scheme == "mqtts"
    if caFile is not None and not tls:
        raise MQTTConfigError("--mqtt-ca needs an mqtts:// URL")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise MQTTConfigError("--mqtt: a password needs a user name")
    return BrokerSettings(host=parts.hostname, port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
                          tls=tls, username=username, password=password, caFile=caFile)


def backoffDelay(attempt: int, minDelay: float = MIN_BACKOFF, maxDelay: float = MAX_BACKOFF,
                 rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before reconnect attempt C{attempt} (1, 2, ...): doubling, capped, jittered."""
    base = min(maxDelay, minDelay * 2 ** min(max(attempt - 1, 0), 30))
    return rand(0.5, 1.0) * base


class PendingPublishes:
    """The latest retained payload per topic, kept while disconnected, bounded to C{limit} topics."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        self._items: dict[str, bytes] = {}
        self.dropped = 0

    def put(self, topic: str, payload: bytes) -> None:
        """Keep C{payload} as the value for C{topic}, dropping the oldest topic when full."""
        if topic in self._items:
            self._items[topic] = payload
            return
        if len(self._items) >= self.limit:
            oldest = next(iter(self._items))
            del self._items[oldest]
            self.dropped += 1
        self._items[topic] = payload

    def discard(self, topic: str) -> None:
        """Forget the pending value of C{topic} (a fresher one was just sent)."""
        self._items.pop(topic, None)

    def drain(self) -> list[tuple[str, bytes]]:
        """Take every pending publish, oldest topic first."""
        items, self._items = list(self._items.items()), {}
        return items

    def __len__(self) -> int:
        return len(self._items)


@implementer(IReadDescriptor, IWriteDescriptor)
class _SocketWatcher:
    """Hands the reactor's readiness notifications for paho's socket to the client."""

    def __init__(self, owner: "ReactorMQTTClient", paho: Any, sock: Any) -> None:
        self.owner = owner
        self.paho = paho
        self.sock = sock
        self._fd = sock.fileno()
        self.active = True

    def fileno(self) -> int:
        return self._fd if self.active else -1

    def logPrefix(self) -> str:
        return "mqtt"

    def doRead(self) -> None:
        if self.active:
            self.owner._doRead(self)

    def doWrite(self) -> None:
        if self.active:
            self.owner._doWrite(self)

    def connectionLost(self, reason: Failure) -> None:
        if self.active:
            self.owner._dropConnection(self.paho, f"socket lost: {reason.getErrorMessage()}")


class ReactorMQTTClient:
    """Keeps one MQTT connection up from the reactor: reconnects, resubscribes, replays retained state.

    C{onConnect()} runs after each successful connect (subscriptions are already sent), then
    the retained publishes kept while disconnected go out.  C{onMessage(topic, payload,
    retained)} runs for each message on a subscribed topic.  The will (C{willTopic},
    C{willPayload}, retained) is also published by L{stop} before a clean disconnect.
    """

    def __init__(self, reactor: Any, settings: BrokerSettings, *, willTopic: str, willPayload: bytes,
                 subscriptions: list[str], onConnect: Callable[[], None],
                 onMessage: Callable[[str, bytes, bool], None], clientId: str | None = None,
                 minDelay: float = MIN_BACKOFF, maxDelay: float = MAX_BACKOFF,
                 keepalive: int = KEEPALIVE, maxPending: int = MAX_PENDING) -> None:
        self.reactor = reactor
        self.settings = settings
        self.willTopic = willTopic
        self.willPayload = willPayload
        self.subscriptions = list(subscriptions)
        self.onConnect = onConnect
        self.onMessage = onMessage
        self.clientId = clientId or f"vesyncd-{secrets.token_hex(4)}"
        self.minDelay = minDelay
        self.maxDelay = maxDelay
        self.keepalive = keepalive
        self.pending = PendingPublishes(maxPending)
        self.connected = False
        self.running = False
        self.attempts = 0
        self.connects = 0
        self._paho: Any = None
        self._watcher: _SocketWatcher | None = None
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

    def publish(self, topic: str, payload: bytes | str, retain: bool = True, qos: int = 0) -> None:
        """Publish now if connected; else keep a retained publish as the topic's latest value."""
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if self.connected and self._paho is not None:
            self.pending.discard(topic)
            info = self._paho.publish(topic, data, qos=qos, retain=retain)
            if info.rc == 0:
                return
            log.debug("mqtt: publish to {topic} failed ({rc}); keeping it for the next connection",
                      topic=topic, rc=info.rc)
        if retain:
            before = self.pending.dropped
            self.pending.put(topic, data)
            if self.pending.dropped != before and self.pending.dropped in (1, 100, 10000):
                log.warn("mqtt: {n} pending publishes dropped while the broker is away (limit {limit} topics)",
                         n=self.pending.dropped, limit=self.pending.limit)

    # -- connecting ----------------------------------------------------------------------------

    def _makePaho(self) -> Any:
        from paho.mqtt import client as pahoclient
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        paho = pahoclient.Client(pahoclient.CallbackAPIVersion.VERSION2, client_id=self.clientId,
                                 protocol=pahoclient.MQTTv5, reconnect_on_failure=False)
        paho.connect_timeout = CONNECT_TIMEOUT
        paho.suppress_exceptions = False
        if self.settings.username is not None:
            paho.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            context = ssl.create_default_context(cafile=self.settings.caFile)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            paho.tls_set_context(context)
        paho.will_set(self.willTopic, self.willPayload, qos=1, retain=True)
        properties = Properties(PacketTypes.CONNECT)
        properties.MaximumPacketSize = MAX_INBOUND_PACKET
        paho._vesyncdConnectProperties = properties
        return paho

    def _connect(self) -> None:
        self._retry = None
        if not self.running or self._connecting is not None or self._paho is not None:
            return
        paho = self._makePaho()
        settings = self.settings

        def blockingConnect() -> Any:
            # Runs in a pool thread, on a client no other thread has seen yet.
            paho.connect(settings.host, settings.port, keepalive=self.keepalive, clean_start=True,
                         properties=paho._vesyncdConnectProperties)
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
        watcher = self._watcher = _SocketWatcher(self, paho, sock)
        paho.on_connect = self._onConnect
        paho.on_disconnect = self._onDisconnect
        paho.on_message = self._onMessage
        paho.on_socket_register_write = lambda c, u, s: self._watchWrite(watcher, True)
        paho.on_socket_unregister_write = lambda c, u, s: self._watchWrite(watcher, False)
        paho.on_socket_close = lambda c, u, s: self._unwatch(watcher)
        self.reactor.addReader(watcher)
        if paho.want_write():
            self.reactor.addWriter(watcher)

    def _watchWrite(self, watcher: _SocketWatcher, on: bool) -> None:
        if not watcher.active:
            return
        if on:
            self.reactor.addWriter(watcher)
        else:
            self.reactor.removeWriter(watcher)

    def _unwatch(self, watcher: _SocketWatcher) -> None:
        if watcher.active:
            self.reactor.removeReader(watcher)
            self.reactor.removeWriter(watcher)
            watcher.active = False

    def _doRead(self, watcher: _SocketWatcher) -> None:
        paho = watcher.paho
        try:
            paho.loop_read()
            # TLS may hold decrypted records the kernel no longer signals as readable.
            sock = watcher.sock
            while watcher.active and isinstance(sock, ssl.SSLSocket) and sock.pending():
                paho.loop_read()
        except Exception as e:
            log.failure("mqtt: reading from the broker failed")
            self.reactor.callLater(0, self._dropConnection, paho, f"read failed: {e}")

    def _doWrite(self, watcher: _SocketWatcher) -> None:
        paho = watcher.paho
        try:
            paho.loop_write()
        except Exception as e:
            log.failure("mqtt: writing to the broker failed")
            self.reactor.callLater(0, self._dropConnection, paho, f"write failed: {e}")

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
        for topic, payload in self.pending.drain():
            paho.publish(topic, payload, qos=0, retain=True)

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
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            self._unwatch(watcher)
        paho.on_connect = paho.on_disconnect = paho.on_message = None
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
