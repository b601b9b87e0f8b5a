"""
The AP-mode setup exchange between the vendor app and a plug, as data: no network.

A factory-reset plug in setup mode listens at C{192.168.4.1:41234}.  The app sends one message,
a single length byte followed by that many bytes of compact JSON (C{/beginConfigRequest}); the
plug answers the same way (C{/beginConfigReply} with C{"err": "0"}, or on firmware 2.123 a
NUL-terminated C{/connectInfo} progress report).  This module builds and checks requests
(L{buildConfigRequest}), encodes and decodes messages (L{encodeSetupMessage},
L{SetupMessageDecoder}) and reads replies (L{interpretReply}).  The client is in
L{vesyncd.setup.client}, the simulated plug's side in L{vesyncd.setup.plugside}.

The Wi-Fi password never appears in log events, exception messages or reprs: requests are
L{ConfigRequest} dicts whose repr masks it, and error messages name fields, never their values.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from typing import Any, Mapping

from vesyncd.addresses import splitHostPort

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
    try:
        return splitHostPort(text, defaultPort)
    except ValueError as e:
        raise InvalidSetupRequest(f"plug address {e}") from None
