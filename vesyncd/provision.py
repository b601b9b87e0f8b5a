"""
Plug provisioning: the AP-mode setup exchange, without the vendor app.

A factory-reset plug in setup mode offers the Wi-Fi C{ESP_xxxxxx} and listens at
C{192.168.4.1:41234}.  The app sends one message, a single length byte followed by that many bytes
of compact JSON (C{/beginConfigRequest}); the plug answers the same way (C{/beginConfigReply} with
C{"err": "0"}, or on firmware 2.123 a NUL-terminated C{/connectInfo} progress report), then joins
the Wi-Fi and connects to C{ws://<serverIP>:17273/gnws}.

This module has three layers:

  - a network-free codec: L{buildConfigRequest}, L{encodeSetupMessage}, L{SetupMessageDecoder},
    L{interpretReply};
  - the client side: L{provision} connects, sends one request and waits for one reply;
  - the simulated plug side: L{SetupModeFactory} accepts one request as a plug would.

The Wi-Fi password never appears in log events, exception messages or reprs: requests are
L{ConfigRequest} dicts whose repr masks it, log events carry only the SSID and addresses, and
error messages name fields, never their values.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from typing import Any, Callable, Mapping

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

#: Where a plug in setup (AP) mode listens.
SETUP_HOST = "192.168.4.1"
SETUP_PORT = 41234
#: The VeSync cloud address the vendor app sends as C{serverIP}.
VENDOR_SERVER_IP = "104.200.30.164"
#: The port a configured plug connects to on C{serverIP} (C{ws://<serverIP>:17273/gnws}).
SERVER_PORT = 17273
#: The largest JSON body a single length byte can describe.
MAX_SETUP_JSON = 255
#: The most bytes L{provision} reads from a plug before giving up on it.
MAX_REPLY_BYTES = 4096
#: Seconds a simulated plug in setup mode waits for a complete request.
SETUP_CLIENT_TIMEOUT = 30.0

URI_REQUEST = "/beginConfigRequest"
URI_REPLY = "/beginConfigReply"
URI_CONNECT_INFO = "/connectInfo"

#: C{err} codes of L{SetupModeFactory}'s replies.  Only C{"0"} is known from real plugs; the
#: others are the simulator's own, chosen so that tests can tell the failure cases apart.
ERR_OK = "0"
ERR_BAD_LENGTH = "1"
ERR_NOT_JSON = "2"
ERR_BAD_URI = "3"
ERR_BAD_FIELD = "4"
ERR_BAD_SERVER_IP = "5"

#: Field order of the vendor app's request, kept so captures and our messages compare easily.
REQUEST_FIELDS = (
    "uri",
    "wifiID",
    "wifiPassword",
    "account",
    "wifiBssid",
    "key",
    "serverIP",
    "ip",
    "wifiGateway",
    "wifiDNS",
)

_PASSWORD_FIELD = "wifiPassword"
_MASK = "<hidden>"
_NOT_JOINED_HINT = (
    "is this machine joined to the plug's ESP_xxxxxx Wi-Fi? the plug is at 192.168.4.1 "
    "(and is it still in setup mode, blue LED blinking slowly?)"
)
_BSSID = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

_log = Logger(namespace="vesyncd.provision")


# --- errors ------------------------------------------------------------------------------------


class ProvisionError(Exception):
    """Provisioning failed; the message says why and what to try.  Never contains the password."""


class InvalidSetupRequest(ProvisionError, ValueError):
    """The request cannot be sent: a field is invalid, or the message is too long for the plug."""


class PlugUnreachable(ProvisionError):
    """No TCP connection to the plug's setup port (refused, unreachable, or timed out)."""


class PlugTimeout(ProvisionError):
    """Connected and sent the request, but no complete answer came within the timeout."""


class BadReply(ProvisionError):
    """The plug answered something that is not a setup reply (garbage, too long, cut short)."""


class PlugRefused(ProvisionError):
    """The plug answered with an error code; C{code} is the raw C{err} value, C{reply} the JSON."""

    def __init__(self, code: object, reply: Mapping[str, Any]) -> None:
        """Keep the code and the reply, and say what the plug did."""
        super().__init__(
            f"the plug refused the settings (err {code!r}); check the Wi-Fi name and password, "
            "put the plug back in setup mode and try again"
        )
        self.code = code
        self.reply = dict(reply)


# --- the request -------------------------------------------------------------------------------


class ConfigRequest(dict):  # type: ignore[type-arg]
    """A C{/beginConfigRequest} as a plain dict whose C{repr} (and C{str}) hide the password.

    It serialises like any dict (L{encodeSetupMessage}, C{json.dumps}); only the text forms used
    by logs, tracebacks and debuggers are masked.  Keep it out of log events anyway: some log
    observers serialise event values as JSON.
    """

    def __repr__(self) -> str:
        """The dict's repr with C{wifiPassword} replaced by C{<hidden>} when it is set."""
        shown = dict(self)
        if shown.get(_PASSWORD_FIELD):
            shown[_PASSWORD_FIELD] = _MASK
        return f"ConfigRequest({shown!r})"

    __str__ = __repr__

    def copy(self) -> ConfigRequest:
        """A shallow copy that is still a L{ConfigRequest} (so still masked)."""
        return ConfigRequest(self)


def _checkIPv4(value: str, field: str, *, allowEmpty: bool) -> str:
    """Return C{value} as a canonical dotted IPv4 address, or raise naming C{field}."""
    if allowEmpty and value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidSetupRequest(f"{field} must be a dotted IPv4 address such as 192.168.1.10")
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidSetupRequest(
            f"{field} {value!r} is not a dotted IPv4 address such as 192.168.1.10 "
            "(the plug firmware speaks IPv4 only)"
        ) from None
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        raise InvalidSetupRequest(f"{field} {value} is not a host address")
    return str(address)


def buildConfigRequest(
    ssid: str,
    password: str,
    serverIP: str,
    *,
    dns: str | None = None,
    account: str = "0",
    bssid: str = "",
    ip: str = "",
    gateway: str = "",
    key: int | None = None,
) -> ConfigRequest:
    """Build and validate a C{/beginConfigRequest} with the app's field order.

    @param ssid: the Wi-Fi name, 1-32 bytes of UTF-8.
    @param password: the Wi-Fi passphrase: empty (open network), 8-63 bytes, or 64 hex digits.
    @param serverIP: where the plug connects after joining (dotted IPv4; port 17273 is implied).
    @param dns: sent as C{wifiDNS}.  That the plug then uses it as its DNS server is inferred
        from the field name, not proven; empty (the app's value) when None.
    @param account: the app sends the account e-mail; C{"0"} works and is shortest.
    @param bssid: pin an access point (C{aa:bb:cc:dd:ee:ff}), or empty for any.
    @param ip: static address for the plug, empty for DHCP (the app sends it empty).
    @param gateway: sent as C{wifiGateway}, empty by default as the app does.
    @param key: the app's request key; a random 9-digit number (like the captured C{123456789})
        when None.
    @raise InvalidSetupRequest: a field is invalid; the message names it but never shows the
        password.  The 255-byte limit is checked by L{encodeSetupMessage}.
    """
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode("utf-8")) <= 32:
        raise InvalidSetupRequest("wifiID (the Wi-Fi name) must be 1-32 bytes")
    if not isinstance(password, str):
        raise InvalidSetupRequest("wifiPassword (the Wi-Fi password) must be a string")
    pwLength = len(password.encode("utf-8"))
    if pwLength == 64:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", password):
            raise InvalidSetupRequest(
                "wifiPassword (the Wi-Fi password) of 64 characters must be a hex key; "
                "a passphrase has 8-63 characters"
            )
    elif pwLength != 0 and not 8 <= pwLength <= 63:
        raise InvalidSetupRequest(
            "wifiPassword (the Wi-Fi password) must be empty (open network), 8-63 characters, "
            "or a 64-digit hex key"
        )
    serverIP = _checkIPv4(serverIP, "serverIP", allowEmpty=False)
    dnsValue = _checkIPv4(dns if dns is not None else "", "wifiDNS", allowEmpty=True)
    ipValue = _checkIPv4(ip, "ip", allowEmpty=True)
    gatewayValue = _checkIPv4(gateway, "wifiGateway", allowEmpty=True)
    if not isinstance(account, str) or not account:
        raise InvalidSetupRequest("account must be a non-empty string ('0' when unsure)")
    if not isinstance(bssid, str) or (bssid and not _BSSID.match(bssid)):
        raise InvalidSetupRequest("wifiBssid must be empty or six hex pairs like aa:bb:cc:dd:ee:ff")
    if key is None:
        key = 100_000_000 + secrets.randbelow(900_000_000)
    elif isinstance(key, bool) or not isinstance(key, int) or key < 0:
        raise InvalidSetupRequest("key must be a non-negative integer")
    return ConfigRequest(
        uri=URI_REQUEST,
        wifiID=ssid,
        wifiPassword=password,
        account=account,
        wifiBssid=bssid.lower(),
        key=key,
        serverIP=serverIP,
        ip=ipValue,
        wifiGateway=gatewayValue,
        wifiDNS=dnsValue,
    )


# --- the wire codec ----------------------------------------------------------------------------


def _jsonBytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the app writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _tooLongMessage(obj: Mapping[str, Any], size: int) -> str:
    """Explain a too-long message: by how much, and which field to shorten (never its value)."""
    over = size - MAX_SETUP_JSON
    sizes = {
        name: len(_jsonBytes(value)) - 2
        for name, value in obj.items()
        if isinstance(value, str) and name != "uri"
    }
    longest = max(sizes, key=lambda name: sizes[name], default=None)
    text = (
        f"the setup message would be {size} bytes of JSON, {over} more than the {MAX_SETUP_JSON} "
        "a plug accepts (its length is a single byte)"
    )
    if longest is not None:
        label = {"wifiID": " (the Wi-Fi name)", "wifiPassword": " (the Wi-Fi password)"}
        text += f"; shorten {longest}{label.get(longest, '')} by at least {over} bytes"
    optional = [
        name
        for name in ("account", "wifiBssid", "ip", "wifiGateway", "wifiDNS")
        if obj.get(name) not in (None, "", "0")
    ]
    if optional:
        text += f", or leave out {', '.join(optional)} (account can be '0', the others empty)"
    return text


def encodeSetupMessage(obj: Mapping[str, Any]) -> bytes:
    """Encode one setup message: one length byte, then compact UTF-8 JSON of that many bytes.

    @raise InvalidSetupRequest: C{obj} is not JSON-serialisable, or its JSON is longer than 255
        bytes; the message names the field to shorten and never contains the password.
    """
    if not isinstance(obj, Mapping):
        raise InvalidSetupRequest("a setup message must be a JSON object")
    try:
        body = _jsonBytes(dict(obj))
    except (TypeError, ValueError) as e:
        # The messages of json's own errors name types, not values; still, say it ourselves.
        raise InvalidSetupRequest(
            f"the setup message cannot be written as JSON ({type(e).__name__})"
        ) from None
    if len(body) > MAX_SETUP_JSON:
        raise InvalidSetupRequest(_tooLongMessage(obj, len(body)))
    return bytes([len(body)]) + body


def _preview(data: bytes, limit: int = 48) -> str:
    """A short, safe rendering of bytes for error messages."""
    shown = repr(bytes(data[:limit]))
    return shown + ("..." if len(data) > limit else "")


def _decodeBody(body: bytes, what: str, showData: bool) -> dict[str, Any]:
    """Decode one message body (optionally NUL-terminated) into a JSON object."""
    seen = f": {_preview(body)}" if showData else ""
    text = body.rstrip(b"\0")
    try:
        value = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadReply(f"the {what} is not UTF-8 text{seen}") from None
    except ValueError:
        raise BadReply(f"the {what} is not JSON{seen}") from None
    if not isinstance(value, dict):
        raise BadReply(f"the {what} is JSON but not an object{seen}")
    return value


class SetupMessageDecoder:
    """Incremental decoder of length-prefixed setup messages (a plug's replies).

    Each message is one length byte N, then N bytes of JSON; a trailing NUL, counted in N or
    sent after it (firmware 2.123), is accepted.  NUL bytes where a length byte is expected are
    skipped, since a zero length is never a message.  At most C{maxBytes} are accepted over the
    decoder's life.
    """

    def __init__(self, maxBytes: int = MAX_REPLY_BYTES, *, what: str = "reply", showData: bool = True):
        """
        @param maxBytes: the most bytes L{feed} accepts in total before raising L{BadReply}.
        @param what: how error messages name a message (C{"reply"}, C{"request"}).
        @param showData: quote received bytes in error messages; turn off for requests, which
            carry the password.
        """
        self._buffer = bytearray()
        self._received = 0
        self._maxBytes = maxBytes
        self._what = what
        self._showData = showData

    @property
    def pending(self) -> int:
        """How many received bytes are waiting for the rest of their message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add received bytes; return the messages they complete, in order.

        @raise BadReply: too many bytes, or a message that is not a length byte + JSON object.
        """
        self._received += len(data)
        if self._received > self._maxBytes:
            raise BadReply(f"more than {self._maxBytes} bytes without a usable {self._what}")
        self._buffer += data
        messages = []
        while self._buffer:
            length = self._buffer[0]
            if length == 0:
                del self._buffer[0]
                continue
            if len(self._buffer) >= 2 and self._buffer[1:2] not in (b"{", b" ", b"\n", b"\r", b"\t"):
                seen = f": {_preview(bytes(self._buffer))}" if self._showData else ""
                raise BadReply(
                    f"the {self._what} is not a length byte followed by a JSON object{seen}"
                )
            if len(self._buffer) < 1 + length:
                break
            body = bytes(self._buffer[1 : 1 + length])
            del self._buffer[: 1 + length]
            messages.append(_decodeBody(body, self._what, self._showData))
        return messages

    def finish(self) -> None:
        """Declare the input ended.

        @raise BadReply: a message was cut short.
        """
        if self._buffer:
            seen = f": {_preview(bytes(self._buffer))}" if self._showData else ""
            raise BadReply(
                f"the connection closed in the middle of a {self._what}: its length byte says "
                f"{self._buffer[0]} bytes but {len(self._buffer) - 1} arrived{seen}"
            )


def decodeSetupMessage(data: bytes) -> dict[str, Any]:
    """Decode exactly one complete setup message (length byte, JSON, optional trailing NUL).

    @raise BadReply: C{data} is not exactly one message.
    """
    decoder = SetupMessageDecoder(MAX_SETUP_JSON + 2)
    messages = decoder.feed(data)
    decoder.finish()
    if len(messages) != 1:
        raise BadReply(f"expected one setup message, found {len(messages)}")
    return messages[0]


def _isOk(err: object) -> bool:
    """Whether an C{err} value means success: C{"0"} or C{0} (not C{False}, not C{0.0})."""
    return err == "0" if isinstance(err, str) else (type(err) is int and err == 0)


def interpretReply(reply: Mapping[str, Any]) -> dict[str, Any] | None:
    """Classify one decoded plug reply.

    @return: the reply if the plug accepted the settings (C{/beginConfigReply} with C{err}
        C{"0"}/C{0}, or C{/connectInfo} at step C{STEP3}/C{DEV_RECEIVE_APP_DATA}); None for a
        C{/connectInfo} progress report of another step (keep waiting).
    @raise PlugRefused: the reply carries an C{err} other than C{"0"}/C{0}.
    @raise BadReply: any other JSON object.
    """
    if "err" in reply and not _isOk(reply["err"]):
        raise PlugRefused(reply["err"], reply)
    uri = reply.get("uri", reply.get("url"))
    if uri == URI_REPLY:
        if "err" not in reply:
            raise BadReply(
                f"the plug's {URI_REPLY} has no err field; it may still have taken the settings, "
                "watch `vesyncctl list`"
            )
        return dict(reply)
    if uri == URI_CONNECT_INFO:
        if reply.get("step") == "STEP3" or reply.get("description") == "DEV_RECEIVE_APP_DATA":
            return dict(reply)
        return None
    raise BadReply(f"unexpected reply from the plug (uri {uri!r}, fields {sorted(reply)})")


def describeReply(reply: Mapping[str, Any]) -> str:
    """One sentence for the user after L{provision} succeeded, naming the firmware if known."""
    firmware = reply.get("firmVersion")
    text = "the plug accepted the Wi-Fi settings"
    if isinstance(firmware, str) and firmware:
        text += f" (firmware {firmware})"
    return text


def parsePlugAddress(text: str, defaultPort: int = SETUP_PORT) -> tuple[str, int]:
    """Parse C{HOST}, C{HOST:PORT}, C{[V6]} or C{[V6]:PORT} (for C{--plug-address}).

    @raise InvalidSetupRequest: empty host or a port outside 1-65535.
    """
    text = text.strip()
    host, port = text, str(defaultPort)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidSetupRequest(f"plug address {text!r} has '[' without ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidSetupRequest(f"plug address {text!r}: expected ':PORT' after ']'")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise InvalidSetupRequest(f"plug address {text!r} has no host")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidSetupRequest(f"plug address {text!r}: port must be 1-65535")
    return host, int(port)


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
            request = _decodeBody(bytes(buffer[1 : 1 + length]), "request", showData=False)
        except BadReply as e:
            return self._reject(ERR_NOT_JSON, str(e))
        if request.get("uri") != URI_REQUEST:
            return self._reject(ERR_BAD_URI, f"uri is not {URI_REQUEST}")
        for name in ("wifiID", "wifiPassword", "serverIP"):
            if not isinstance(request.get(name), str):
                return self._reject(ERR_BAD_FIELD, f"{name} missing or not a string")
        if not 1 <= len(request["wifiID"].encode("utf-8")) <= 32:
            return self._reject(ERR_BAD_FIELD, "wifiID is not 1-32 bytes")
        if len(request[_PASSWORD_FIELD].encode("utf-8")) > 64:
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
