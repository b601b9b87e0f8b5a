"""
Plug provisioning without the vendor app: the client side of the AP-mode setup exchange.

L{provision} connects to a plug in setup mode (C{192.168.4.1:41234}), sends one
C{/beginConfigRequest} built by L{vesyncd.setup.request.buildConfigRequest}, and waits for one
reply; every failure is a L{ProvisionError} subclass with a message that says what to do.  The
names of the request and error modules are re-exported here; the exchange's constants, encoder,
decoder and reply readers are in L{vesyncd.setup.codec}.  The Wi-Fi password never appears in log
events or error messages.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.setup.codec import MAX_REPLY_BYTES, SetupMessageDecoder, encodeSetupMessage, interpretReply
from vesyncd.setup.errors import (  # noqa: F401 - re-exported
    BadReply,
    InvalidSetupRequest,
    PlugRefused,
    PlugTimeout,
    PlugUnreachable,
    ProvisionError,
)
from vesyncd.setup.request import (  # noqa: F401 - re-exported
    REQUEST_FIELDS,
    SERVER_PORT,
    SETUP_HOST,
    SETUP_PORT,
    URI_REQUEST,
    VENDOR_SERVER_IP,
    ConfigRequest,
    buildConfigRequest,
    parsePlugAddress,
)

_NOT_JOINED_HINT = (
    "is this machine joined to the plug's ESP_xxxxxx Wi-Fi? the plug is at 192.168.4.1 "
    "(and is it still in setup mode, blue LED blinking slowly?)"
)

_log = Logger(namespace="vesyncd.setup.client")

# --- the client side ---------------------------------------------------------------------------


class _SetupClientProtocol(Protocol):
    """Send the encoded request once connected; report the first conclusive reply."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt
        self._decoder = SetupMessageDecoder(MAX_REPLY_BYTES)

    def __repr__(self) -> str:
        return "<_SetupClientProtocol>"

    def connectionMade(self) -> None:
        """Write the whole request at once."""
        self._attempt.connected(self)
        self.transport.write(self._attempt.message)

    def dataReceived(self, data: bytes) -> None:
        """Decode replies; finish on the first accepting or failing one."""
        if self._attempt.finished:
            return
        try:
            for message in self._decoder.feed(data):
                result = interpretReply(message)
                if result is None:
                    self._attempt.progress = message
                    continue
                self._attempt.succeed(result)
                return
        except ProvisionError as e:
            self._attempt.failWith(e)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """A close before a conclusive reply is a L{BadReply}."""
        if self._attempt.finished:
            return
        try:
            self._decoder.finish()
        except ProvisionError as e:
            self._attempt.failWith(e)
            return
        self._attempt.failWith(
            BadReply(
                "the plug closed the connection without a setup reply"
                + self._attempt.progressText()
            )
        )


class _SetupClientFactory(ClientFactory):
    """Builds the single L{_SetupClientProtocol} of one attempt."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt

    def buildProtocol(self, addr: IAddress) -> Protocol:
        """The protocol for the attempt's one connection."""
        return _SetupClientProtocol(self._attempt)


class _Attempt:
    """State of one L{provision} call: connect, send, wait, with one deadline for everything."""

    def __init__(
        self, reactor: Any, host: str, port: int, message: bytes, timeout: float, log: Logger
    ) -> None:
        self.message = message
        self.finished = False
        self.progress: dict[str, Any] | None = None
        self._host = host
        self._port = port
        self._timeout = timeout
        self._log = log
        self._protocol: _SetupClientProtocol | None = None
        self._connecting: Deferred[Any] | None = None
        self.result: Deferred[dict[str, Any]] = Deferred(self._cancel)
        self._timer: IDelayedCall = reactor.callLater(timeout, self._timedOut)
        connecting = _endpoint(reactor, host, port, timeout).connect(_SetupClientFactory(self))
        self._connecting = connecting
        connecting.addErrback(self._connectFailed)

    def __repr__(self) -> str:
        return f"<provision attempt {self._host}:{self._port}>"

    def progressText(self) -> str:
        """A clause naming the last progress report the plug sent, if any."""
        if self.progress is None:
            return ""
        return (
            f" (last progress report: step {self.progress.get('step')!r}, "
            f"{self.progress.get('description')!r})"
        )

    def connected(self, protocol: _SetupClientProtocol) -> None:
        """Remember the connection (the deadline now means "no answer")."""
        self._protocol = protocol
        self._log.info("connected to the plug at {host}:{port}; request sent",
                       host=self._host, port=self._port)

    def succeed(self, reply: dict[str, Any]) -> None:
        """Fire the result with the accepting reply and close."""
        if self.finished:
            return
        self._finish()
        self.result.callback(reply)

    def failWith(self, error: ProvisionError) -> None:
        """Fail the result with C{error} (logged by its text only) and close."""
        if self.finished:
            return
        self._finish()
        self._log.warn("provisioning {host}:{port} failed: {why}",
                       host=self._host, port=self._port, why=str(error))
        self.result.errback(Failure(error))

    def _finish(self) -> None:
        self.finished = True
        if self._timer.active():
            self._timer.cancel()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.loseConnection()
        elif self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()

    def _connectFailed(self, failure: Failure) -> None:
        if self.finished or failure.check(CancelledError):
            return None
        reason = failure.value
        if failure.check(ConnectionRefusedError):
            why = "connection refused"
        elif failure.check(TimeoutError):
            why = "timed out"
        else:
            why = str(reason) or type(reason).__name__
        self.failWith(
            PlugUnreachable(f"cannot connect to {self._host}:{self._port} ({why}): {_NOT_JOINED_HINT}")
        )
        return None

    def _timedOut(self) -> None:
        if self.finished:
            return
        if self._protocol is None:
            self.failWith(
                PlugUnreachable(
                    f"cannot connect to {self._host}:{self._port} "
                    f"(no answer within {self._timeout:g} s): {_NOT_JOINED_HINT}"
                )
            )
        else:
            self.failWith(
                PlugTimeout(
                    f"the plug at {self._host}:{self._port} took the connection but sent no "
                    f"complete reply within {self._timeout:g} s{self.progressText()}; put it back "
                    "in setup mode and try again, or raise --timeout"
                )
            )

    def _cancel(self, result: Deferred[dict[str, Any]]) -> None:
        # Called by Deferred.cancel(); the Deferred then fails with CancelledError by itself.
        self.finished = True
        if self._timer.active():
            self._timer.cancel()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abortConnection()
        elif self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()


def _endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """A TCP client endpoint for an IPv4 literal, an IPv6 literal, or a host name."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    if version == 4:
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)


def provision(
    reactor: IReactorTCP | IReactorTime | Any,
    host: str,
    port: int,
    request: Mapping[str, Any],
    timeout: float = 15.0,
    *,
    log: Logger | None = None,
) -> Deferred[dict[str, Any]]:
    """Send one C{/beginConfigRequest} to a plug in setup mode and wait for its answer.

    The request is encoded before any connection is attempted, so a too-long or unserialisable
    request fails at once and nothing is sent.  One deadline of C{timeout} seconds covers
    connecting and the reply; at most L{MAX_REPLY_BYTES} are read.  Cancelling the Deferred
    closes the connection.

    @param host: the plug's address, normally L{SETUP_HOST}.
    @param port: normally L{SETUP_PORT}.
    @param request: usually from L{buildConfigRequest}; logged only by SSID and server address.
    @return: a Deferred firing with the plug's accepting reply (see L{interpretReply}), or
        failing with L{InvalidSetupRequest}, L{PlugUnreachable}, L{PlugTimeout}, L{BadReply} or
        L{PlugRefused}, all L{ProvisionError}s.
    """
    log = log if log is not None else _log
    try:
        message = encodeSetupMessage(request)
    except ProvisionError as e:
        return fail(e)
    log.info(
        "sending Wi-Fi settings for {ssid!r} (server {serverIP}) to the plug at {host}:{port}",
        ssid=request.get("wifiID"),
        serverIP=request.get("serverIP"),
        host=host,
        port=port,
    )
    return _Attempt(reactor, host, port, message, timeout, log).result
