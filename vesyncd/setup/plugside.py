"""
The simulated plug's side of the AP-mode setup exchange: L{SetupModeFactory} accepts one
C{/beginConfigRequest} exactly as a plug would, answers it, and reports the accepted request.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Mapping

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.setup.codec import (
    ERR_BAD_FIELD,
    ERR_BAD_LENGTH,
    ERR_BAD_SERVER_IP,
    ERR_BAD_URI,
    ERR_NOT_JSON,
    ERR_OK,
    SETUP_CLIENT_TIMEOUT,
    URI_REPLY,
    decodeBody,
    encodeSetupMessage,
    interpretReply,
)
from vesyncd.setup.errors import BadReply, ProvisionError
from vesyncd.setup.request import PASSWORD_FIELD, URI_REQUEST, ConfigRequest

_log = Logger(namespace="vesyncd.setup.client")

# --- the simulated plug's setup mode ---------------------------------------------------------


class _SetupModeProtocol(Protocol):
    """One app connection to a simulated plug in setup mode."""

    def __init__(self, factory: SetupModeFactory) -> None:
        self._factory = factory
        self._buffer = bytearray()
        self._accepted: ConfigRequest | None = None
        self._answered = False
        self._timer: IDelayedCall | None = None

    def __repr__(self) -> str:
        return "<_SetupModeProtocol>"

    def connectionMade(self) -> None:
        """Close at once if setup mode is over; otherwise start the stall timer."""
        if self._factory.configured is not None:
            # Like a real plug, setup mode ends once it has taken settings.
            self._answered = True
            self.transport.loseConnection()
            return
        self._timer = self._factory.reactor.callLater(self._factory.timeout, self._stalled)

    def _stalled(self) -> None:
        self._timer = None
        self._factory.log.info("closing a setup client that sent no complete request in time")
        self._answered = True
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """Buffer until the length byte's worth has arrived, then validate and answer."""
        if self._answered:
            return
        self._buffer += data
        buffer = self._buffer
        if not buffer:
            return None
        length = buffer[0]
        if length == 0:
            return self._reject(ERR_BAD_LENGTH, "zero length byte")
        if len(buffer) >= 2 and buffer[1:2] not in (b"{", b" ", b"\n", b"\r", b"\t"):
            return self._reject(ERR_NOT_JSON, "no JSON object after the length byte")
        if len(buffer) < 1 + length:
            return None
        extra = bytes(buffer[1 + length :])
        if extra not in (b"", b"\0"):
            return self._reject(
                ERR_BAD_LENGTH, f"length byte says {length} but {len(buffer) - 1} bytes came"
            )
        try:
            request = decodeBody(bytes(buffer[1 : 1 + length]), "request", showData=False)
        except BadReply as e:
            return self._reject(ERR_NOT_JSON, str(e))
        if request.get("uri") != URI_REQUEST:
            return self._reject(ERR_BAD_URI, f"uri is not {URI_REQUEST}")
        for name in ("wifiID", "wifiPassword", "serverIP"):
            if not isinstance(request.get(name), str):
                return self._reject(ERR_BAD_FIELD, f"{name} missing or not a string")
        if not 1 <= len(request["wifiID"].encode("utf-8")) <= 32:
            return self._reject(ERR_BAD_FIELD, "wifiID is not 1-32 bytes")
        if len(request[PASSWORD_FIELD].encode("utf-8")) > 64:
            return self._reject(ERR_BAD_FIELD, "wifiPassword longer than 64 bytes")
        try:
            ipaddress.IPv4Address(request["serverIP"])
        except ValueError:
            return self._reject(ERR_BAD_SERVER_IP, "serverIP is not an IPv4 address")
        self._accepted = ConfigRequest(request)
        self._factory.log.info(
            "setup request accepted: Wi-Fi {ssid!r}, server {serverIP}",
            ssid=request["wifiID"],
            serverIP=request["serverIP"],
        )
        self._answer(self._factory.replyBytes())
        return None

    def _reject(self, code: str, why: str) -> None:
        self._factory.log.info("setup request refused (err {code}): {why}", code=code, why=why)
        self._answer(encodeSetupMessage({"uri": URI_REPLY, "err": code}))

    def _answer(self, data: bytes) -> None:
        self._answered = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.transport.write(data)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """Stop the timer; report an accepted request to the factory."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._accepted is not None and self._factory.replySucceeds():
            self._factory.configuredWith(self._accepted)


class SetupModeFactory(Factory):
    """The setup-mode TCP server of a simulated plug (listen on it like on port 41234).

    It accepts one valid C{/beginConfigRequest} per connection, checking it as a plug would: the
    length byte matches the JSON that follows (a trailing NUL allowed), the JSON is an object
    with C{uri} C{/beginConfigRequest}, C{wifiID}, C{wifiPassword} and C{serverIP} are strings
    (SSID 1-32 bytes, password at most 64), and C{serverIP} is IPv4.  A valid request gets
    C{reply} (default C{/beginConfigReply} with C{err "0"}), an invalid one an error reply with
    one of the C{ERR_*} codes; then the connection closes.  After the connection of the first
    accepted request has closed, C{onConfigured(request)} is called once and setup mode is over:
    later connections are closed without a reply.  Clients that send no complete request within
    C{timeout} seconds are disconnected.
    """

    def __init__(
        self,
        onConfigured: Callable[[dict[str, Any]], None],
        *,
        reply: Mapping[str, Any] | None = None,
        nulTerminated: bool = False,
        reactor: IReactorTime | None = None,
        timeout: float = SETUP_CLIENT_TIMEOUT,
        log: Logger | None = None,
    ) -> None:
        """
        @param onConfigured: called with the accepted request (a L{ConfigRequest}, so its repr
            masks the password) once the reply is sent and the connection closed.  Not called
            when C{reply} is an error reply.
        @param reply: the JSON to answer a valid request with, e.g. firmware 2.123's
            C{/connectInfo} report, or an error to exercise clients.
        @param nulTerminated: append a NUL after the reply, as firmware 2.123 does.
        @param reactor: for C{callLater}; the global reactor when None.
        @param timeout: seconds a client may take to send its request.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor  # type: ignore[assignment]
        self.onConfigured = onConfigured
        self.reply = dict(reply) if reply is not None else {"uri": URI_REPLY, "err": ERR_OK}
        self.nulTerminated = nulTerminated
        self.reactor = reactor
        self.timeout = timeout
        self.log = log if log is not None else _log
        self.configured: ConfigRequest | None = None
        self._replyBytes = encodeSetupMessage(self.reply) + (b"\0" if nulTerminated else b"")

    def __repr__(self) -> str:
        return f"<SetupModeFactory configured={self.configured is not None}>"

    def buildProtocol(self, addr: IAddress) -> Protocol:
        """A protocol for one app connection."""
        return _SetupModeProtocol(self)

    def replyBytes(self) -> bytes:
        """The encoded answer to a valid request."""
        return self._replyBytes

    def replySucceeds(self) -> bool:
        """Whether C{reply} tells the app that the settings were taken."""
        try:
            return interpretReply(self.reply) is not None
        except ProvisionError:
            return False

    def configuredWith(self, request: ConfigRequest) -> None:
        """Record the first accepted request and call C{onConfigured} with it, once."""
        if self.configured is not None:
            return
        self.configured = request
        try:
            self.onConfigured(request)
        except Exception:
            self.log.failure("onConfigured raised")
