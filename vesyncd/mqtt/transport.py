"""
paho-mqtt on the Twisted reactor: a paho client made for one connection attempt, and the
reactor descriptor that hands readiness of its socket to whoever owns it.

paho does the MQTT framing; Twisted does the waiting.  Once connected, the client's socket is
registered with the reactor as an C{IReadDescriptor}/C{IWriteDescriptor}, and the owner calls
paho's C{loop_read}, C{loop_write} and C{loop_misc} from the reactor thread only.
"""

from __future__ import annotations

import ssl
from typing import Any, Callable

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from vesyncd.mqtt.settings import BrokerSettings

CONNECT_TIMEOUT = 10.0
#: The largest packet the broker may send us (MQTT 5 Maximum Packet Size): commands are tiny.
MAX_INBOUND_PACKET = 64 * 1024


def makePahoClient(settings: BrokerSettings, clientId: str, willTopic: str, willPayload: bytes) -> tuple[Any, Any]:
    """A fresh MQTT 5 paho client for one attempt, and the CONNECT properties to connect it with."""
    from paho.mqtt import client as pahoclient
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    paho = pahoclient.Client(pahoclient.CallbackAPIVersion.VERSION2, client_id=clientId,
                             protocol=pahoclient.MQTTv5, reconnect_on_failure=False)
    paho.connect_timeout = CONNECT_TIMEOUT
    paho.suppress_exceptions = False
    if settings.username is not None:
        paho.username_pw_set(settings.username, settings.password)
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.caFile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        paho.tls_set_context(context)
    paho.will_set(willTopic, willPayload, qos=1, retain=True)
    properties = Properties(PacketTypes.CONNECT)
    properties.MaximumPacketSize = MAX_INBOUND_PACKET
    return paho, properties


@implementer(IReadDescriptor, IWriteDescriptor)
class SocketWatcher:
    """Hands the reactor's readiness notifications for paho's socket to three callbacks.

    C{onRead(watcher)}, C{onWrite(watcher)} and C{onLost(watcher, reason)} run only while the
    watcher is L{active}; L{deactivate} ends that for good.
    """

    def __init__(self, paho: Any, sock: Any, onRead: Callable[["SocketWatcher"], None],
                 onWrite: Callable[["SocketWatcher"], None],
                 onLost: Callable[["SocketWatcher", Failure], None]) -> None:
        self.paho = paho
        self.sock = sock
        self.onRead = onRead
        self.onWrite = onWrite
        self.onLost = onLost
        self.fd = sock.fileno()
        self.active = True

    def fileno(self) -> int:
        """The socket's descriptor, or -1 once deactivated."""
        return self.fd if self.active else -1

    def logPrefix(self) -> str:
        """How the reactor names this descriptor in its log lines."""
        return "mqtt"

    def doRead(self) -> None:
        """The socket is readable."""
        if self.active:
            self.onRead(self)

    def doWrite(self) -> None:
        """The socket is writable."""
        if self.active:
            self.onWrite(self)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the socket."""
        if self.active:
            self.onLost(self, reason)

    def tlsPending(self) -> bool:
        """True when TLS holds decrypted records the kernel no longer signals as readable."""
        return self.active and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def deactivate(self) -> None:
        """Stop passing notifications on."""
        self.active = False
