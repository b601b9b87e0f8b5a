"""
The AP-mode setup exchange between the vendor app and a plug, as bytes: no network.

A factory-reset plug in setup mode listens at C{192.168.4.1:41234}.  The app sends one message,
a single length byte followed by that many bytes of compact JSON (C{/beginConfigRequest}, built by
L{vesyncd.setup.request}); the plug answers the same way (C{/beginConfigReply} with C{"err": "0"},
or on firmware 2.123 a NUL-terminated C{/connectInfo} progress report).  This module encodes and
decodes messages (L{encodeSetupMessage}, L{SetupMessageDecoder}) and reads replies
(L{interpretReply}).  The client is in L{vesyncd.setup.client}, the simulated plug's side in
L{vesyncd.setup.plugside}.

The Wi-Fi password never appears in exception messages: they name fields, never their values,
and a request's bytes are quoted only when the caller allows it (never for requests).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from vesyncd.setup.errors import BadReply, InvalidSetupRequest, PlugRefused

#: The largest JSON body a single length byte can describe.
MAX_SETUP_JSON = 255
#: The most bytes L{vesyncd.setup.client.provision} reads from a plug before giving up on it.
MAX_REPLY_BYTES = 4096
#: Seconds a simulated plug in setup mode waits for a complete request.
SETUP_CLIENT_TIMEOUT = 30.0

URI_REPLY = "/beginConfigReply"
URI_CONNECT_INFO = "/connectInfo"

#: C{err} codes of L{vesyncd.setup.plugside.SetupModeFactory}'s replies.  Only C{"0"} is known from
#: real plugs; the others are the simulator's own, chosen so that tests can tell the failure cases apart.
ERR_OK = "0"
ERR_BAD_LENGTH = "1"
ERR_NOT_JSON = "2"
ERR_BAD_URI = "3"
ERR_BAD_FIELD = "4"
ERR_BAD_SERVER_IP = "5"


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


def decodeBody(body: bytes, what: str, showData: bool) -> dict[str, Any]:
    """Decode one message body (optionally NUL-terminated) into a JSON object; C{what} names it in
    errors, which quote the bytes only when C{showData} is true."""
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
            messages.append(decodeBody(body, self._what, self._showData))
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
    """One sentence for the user after L{vesyncd.setup.client.provision} succeeded, naming the firmware if known."""
    firmware = reply.get("firmVersion")
    text = "the plug accepted the Wi-Fi settings"
    if isinstance(firmware, str) and firmware:
        text += f" (firmware {firmware})"
    return text
