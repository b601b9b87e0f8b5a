"""
The plug frame codec: WebSocket payloads <-> typed messages, and the AES layer of firmware 2.x.

Everything a plug sends passes through L{decodeFrame} before the core sees it.  The decoder is
strict about shapes (a JSON object, known fields of the right type, bounded size and depth) and
lenient about extras (unknown fields are kept in C{extra}, unknown URIs become L{Unknown}).  Any
input it cannot accept raises L{ProtocolError}, and nothing else.  Every string a plug sends, in
known fields, unknown fields and field names alike, comes out bounded in length and with its
control and format characters replaced (L{cleanText}), so the core, its logs and every front end
only ever hold text that is safe to show.

The wire format is documented in C{docs/protocol.md}; field meanings and sources are there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: Largest frame payload accepted from a plug (real messages are under 300 bytes).
MAX_PAYLOAD = 64 * 1024
#: Deepest JSON nesting accepted; real messages are flat objects.
MAX_DEPTH = 8
#: Longest string kept from a field the decoder does not know, and from a field name.
MAX_TEXT = 256
MAX_KEY = 64
#: What a control or format character in a plug's string is shown as.
REPLACEMENT = "\ufffd"

AES_KEY = b"llwantaeskey1.01"
AES_IV = b"llwantaesivv1.01"

RELAY_ON = "open"
RELAY_OFF = "break"


class ProtocolError(ValueError):
    """A frame from a plug that vesyncd cannot accept; the message says why."""


def _shown(value: Any) -> str:
    """A plug's value as error messages quote it: its repr (which escapes every control
    character), at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- AES layer (firmware 2.x) ------------------------------------------------------------------


def aesEncrypt(plaintext: bytes) -> bytes:
    """Encrypt one message as firmware 2.x expects: AES-128-CBC, fixed IV, NUL padded to a block.

    An already aligned plaintext gets a full block of NULs, as the plug's own code does.
    """
    padded = plaintext + b"\0" * (16 - len(plaintext) % 16)
    encryptor = Cipher(algorithms.AES(AES_KEY), modes.CBC(AES_IV)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aesDecrypt(ciphertext: bytes) -> bytes:
    """Decrypt one firmware 2.x binary frame and cut the plaintext at its first NUL.

    @raise ProtocolError: the frame is empty or not a whole number of AES blocks.
    """
    if not ciphertext or len(ciphertext) % 16:
        raise ProtocolError(f"binary frame of {len(ciphertext)} bytes is not AES-128 blocks")
    decryptor = Cipher(algorithms.AES(AES_KEY), modes.CBC(AES_IV)).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    end = plain.find(b"\0")
    return plain if end < 0 else plain[:end]


# --- vendor fixed-point numbers ----------------------------------------------------------------


def decodeFixed(text: str) -> float:
    """Decode one vendor fixed-point half: integer part above bit 12, thousandths in the low 12 bits.

    C{"1eb031"} is 491.049; C{"0"} is 0.  A low part of 1000 or more is taken as it comes (the
    vendor app does the same), so the result is never wrong by more than a few units.

    @raise ProtocolError: C{text} is not a short hex number.
    """
    if not isinstance(text, str) or not 0 < len(text) <= 12:
        raise ProtocolError(f"fixed-point value {_shown(text)} is not a short hex string")
    try:
        value = int(text, 16)
    except ValueError:
        raise ProtocolError(f"fixed-point value {_shown(text)} is not hex") from None
    if value < 0:
        raise ProtocolError(f"fixed-point value {_shown(text)} is negative")
    return (value >> 12) + (value & 0xFFF) / 1000.0


def encodeFixed(value: float) -> str:
    """Encode a non-negative number in the vendor fixed-point form (lower-case hex, unpadded)."""
    whole = int(value)
    thousandths = int(round((value - whole) * 1000))
    if thousandths >= 1000:
        whole, thousandths = whole + 1, 0
    return format(whole << 12 | thousandths, "x")


def decodePair(text: Any, name: str) -> tuple[float, float] | None:
    """Decode an C{"A:B"} pair (power, voltage, current); C{"NaN"} means no reading (None).

    @raise ProtocolError: not a string of two fixed-point halves.
    """
    if text == "NaN":
        return None
    if not isinstance(text, str) or text.count(":") != 1:
        raise ProtocolError(f"{name} {_shown(text)} is not an 'A:B' pair")
    first, second = text.split(":")
    return decodeFixed(first), decodeFixed(second)


def encodePair(first: float, second: float) -> str:
    """Encode two readings as the plug does: C{"<hex>:<hex>"}."""
    return f"{encodeFixed(first)}:{encodeFixed(second)}"


def _hexCount(text: Any, name: str) -> int:
    """Decode a C{/report} counter: a lower-case hex string without prefix or padding."""
    if not isinstance(text, str) or not 0 < len(text) <= 12:
        raise ProtocolError(f"{name} {_shown(text)} is not a short hex string")
    try:
        value = int(text, 16)
    except ValueError:
        raise ProtocolError(f"{name} {_shown(text)} is not hex") from None
    if value < 0:
        raise ProtocolError(f"{name} {_shown(text)} is negative")
    return value


# --- typed messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """Base of every decoded plug message; C{extra} keeps fields the decoder does not know."""

    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Login(Message):
    """The first frame of a connection: the plug's identity and its relay state."""

    id: str = ""
    account: str = ""
    deviceName: str = ""
    deviceVersion: str = ""
    deviceVersionCode: int | None = None
    type: str = ""
    apptype: str = ""
    firmName: str = ""
    firmVersion: str = ""
    firmVersionCode: int | None = None
    key: int | None = None
    relay: bool | None = None


@dataclass(frozen=True)
class KeepAlive(Message):
    """A plug's C{/ka}; it expects C{/kr} with the time at once."""

    rssi: int | None = None


@dataclass(frozen=True)
class KeepAliveReply(Message):
    """A plug's bare C{/kr}, its answer to a server C{/ka}."""


@dataclass(frozen=True)
class Report(Message):
    """An energy C{/report}: C{wattSeconds} used over the last C{seconds}."""

    wattSeconds: int = 0
    seconds: int = 0


@dataclass(frozen=True)
class RuntimeInfo(Message):
    """C{/runtimeInfo}, the answer to C{/relay} and C{/getRuntime}; pairs are (first, second) halves."""

    relay: bool | None = None
    meastate: str = ""
    power: tuple[float, float] | None = None
    voltage: tuple[float, float] | None = None
    current: tuple[float, float] | None = None


@dataclass(frozen=True)
class State(Message):
    """C{/state}: the relay changed on the plug itself (button press)."""

    relay: bool | None = None


@dataclass(frozen=True)
class EvTimer(Message):
    """C{/evtimer}: a timer stored on the plug fired and set the relay."""

    relay: bool | None = None
    timerId: int | None = None
    aname: str = ""


@dataclass(frozen=True)
class Timer(Message):
    """C{/timer} from the plug (the answer to a timer change); fields kept as sent."""

    error: int | None = None


@dataclass(frozen=True)
class Trigger(Message):
    """C{/trigger}: a max/min power trigger on the plug fired."""

    triggerType: int | None = None


@dataclass(frozen=True)
class TriggerCount(Message):
    """C{/getTriggerCnt} from the plug: how often each power trigger fired."""

    above: int | None = None
    below: int | None = None


@dataclass(frozen=True)
class CtlFlags(Message):
    """C{/setCtlFlags} echoed by the plug."""

    flag: int | None = None
    set: int | None = None


@dataclass(frozen=True)
class Unknown(Message):
    """A message with a URI vesyncd does not know; kept whole for the log."""

    uri: str = ""


def _relay(value: Any, name: str = "relay", optional: bool = False) -> bool | None:
    """Decode the protocol's relay words: C{open} is on, C{break} is off."""
    if value == RELAY_ON:
        return True
    if value == RELAY_OFF:
        return False
    if optional and value is None:
        return None
    raise ProtocolError(f"{name} {_shown(value)} is neither 'open' nor 'break'")


def _int(value: Any, name: str, optional: bool = True) -> int | None:
    """Accept a JSON integer (not a bool, not a float) within a sane range."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**53:
        raise ProtocolError(f"{name} {_shown(value)} is not an integer")
    return value


def cleanText(text: str, limit: int = MAX_TEXT) -> str:
    """C{text} cut to C{limit} characters, with every character that is not printable replaced
    by U+FFFD: C0 and C1 controls, DEL, bidi overrides and other format characters, line and
    paragraph separators.

    Every string a plug sends passes through here before the core sees it, so no status line,
    log line, terminal or page ever gets a plug's escape sequence, bell or reordered text.
    """
    if len(text) > limit:
        text = text[:limit]
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else REPLACEMENT for ch in text)


def _cleanValue(value: Any) -> Any:
    """A JSON value with every string in it, keys included, passed through L{cleanText}."""
    if isinstance(value, str):
        return cleanText(value)
    if isinstance(value, dict):
        return {cleanText(k, MAX_KEY): _cleanValue(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleanValue(v) for v in value]
    return value


def _str(value: Any, name: str, limit: int = 256) -> str:
    """Accept a short JSON string, cleaned (L{cleanText}); a missing field is the empty string."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(f"{name} is not a string of at most {limit} characters")
    return cleanText(value, limit)


def _rest(obj: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The fields of C{obj} that a message type does not know, names and values cleaned."""
    return {cleanText(k, MAX_KEY): _cleanValue(v) for k, v in obj.items() if k not in known and k != "uri"}


_LOGIN_FIELDS = (
    "id", "account", "deviceName", "deviceVersion", "deviceVersionCode", "type", "apptype",
    "firmName", "firmVersion", "firmVersionCode", "key", "relay",
)


def _login(obj: dict[str, Any]) -> Login:
    """Decode a login object; an id is required, everything else is optional."""
    plugId = obj.get("id")
    if not isinstance(plugId, str) or not 0 < len(plugId) <= 64 or not plugId.isprintable():
        raise ProtocolError("login has no usable 'id' (a printable string of 1-64 characters)")
    return Login(
        extra=_rest(obj, _LOGIN_FIELDS),
        id=plugId,
        account=_str(obj.get("account"), "account"),
        deviceName=_str(obj.get("deviceName"), "deviceName"),
        deviceVersion=_str(obj.get("deviceVersion"), "deviceVersion"),
        deviceVersionCode=_int(obj.get("deviceVersionCode"), "deviceVersionCode"),
        type=_str(obj.get("type"), "type"),
        apptype=_str(obj.get("apptype"), "apptype"),
        firmName=_str(obj.get("firmName"), "firmName"),
        firmVersion=_str(obj.get("firmVersion"), "firmVersion", 32),
        firmVersionCode=_int(obj.get("firmVersionCode"), "firmVersionCode"),
        key=_int(obj.get("key"), "key"),
        relay=_relay(obj.get("relay"), optional=True),
    )


def _ka(obj: dict[str, Any]) -> KeepAlive:
    return KeepAlive(extra=_rest(obj, ("rssi",)), rssi=_int(obj.get("rssi"), "rssi"))


def _kr(obj: dict[str, Any]) -> KeepAliveReply:
    return KeepAliveReply(extra=_rest(obj, ()))


def _report(obj: dict[str, Any]) -> Report:
    return Report(
        extra=_rest(obj, ("e", "t")),
        wattSeconds=_hexCount(obj.get("e"), "e"),
        seconds=_hexCount(obj.get("t"), "t"),
    )


def _runtime(obj: dict[str, Any]) -> RuntimeInfo:
    return RuntimeInfo(
        extra=_rest(obj, ("relay", "meastate", "power", "voltage", "current")),
        relay=_relay(obj.get("relay")),
        meastate=_str(obj.get("meastate"), "meastate", 32),
        power=decodePair(obj.get("power", "NaN"), "power"),
        voltage=decodePair(obj.get("voltage", "NaN"), "voltage"),
        current=decodePair(obj.get("current", "NaN"), "current"),
    )


def _state(obj: dict[str, Any]) -> State:
    return State(extra=_rest(obj, ("relay",)), relay=_relay(obj.get("relay")))


def _evtimer(obj: dict[str, Any]) -> EvTimer:
    return EvTimer(
        extra=_rest(obj, ("relay", "id", "aname")),
        relay=_relay(obj.get("relay"), optional=True),
        timerId=_int(obj.get("id"), "id"),
        aname=_str(obj.get("aname"), "aname", 32),
    )


def _timer(obj: dict[str, Any]) -> Timer:
    return Timer(extra=_rest(obj, ("error",)), error=_int(obj.get("error"), "error"))


def _trigger(obj: dict[str, Any]) -> Trigger:
    return Trigger(extra=_rest(obj, ("type",)), triggerType=_int(obj.get("type"), "type"))


def _triggerCount(obj: dict[str, Any]) -> TriggerCount:
    return TriggerCount(
        extra=_rest(obj, ("aboveTriggerCount", "belowTriggerCount")),
        above=_int(obj.get("aboveTriggerCount"), "aboveTriggerCount"),
        below=_int(obj.get("belowTriggerCount"), "belowTriggerCount"),
    )


def _ctlFlags(obj: dict[str, Any]) -> CtlFlags:
    return CtlFlags(
        extra=_rest(obj, ("flag", "set")),
        flag=_int(obj.get("flag"), "flag"),
        set=_int(obj.get("set"), "set"),
    )


#: The URIs a plug sends, in the order of C{docs/protocol.md}.
DECODERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    "/ka": _ka,
    "/kr": _kr,
    "/report": _report,
    "/runtimeInfo": _runtime,
    "/state": _state,
    "/timer": _timer,
    "/evtimer": _evtimer,
    "/trigger": _trigger,
    "/getTriggerCnt": _triggerCount,
    "/setCtlFlags": _ctlFlags,
}


def _rejectConstant(name: str) -> Any:
    raise ProtocolError(f"JSON constant {name} is not allowed")


def _depth(value: Any, limit: int) -> None:
    """Raise L{ProtocolError} when C{value} nests deeper than C{limit} or holds a lone surrogate."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError("string holds a lone surrogate") from None
            continue
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise ProtocolError(f"JSON nests deeper than {limit} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    stack.append((key, depth + 1))
                stack.append((child, depth + 1))


def parseObject(payload: bytes | str) -> dict[str, Any]:
    """Parse one frame payload into a JSON object, refusing anything hostile.

    @raise ProtocolError: too large, not UTF-8, not JSON, NaN/Infinity, too deep, lone
        surrogates, or not an object.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    given = payload
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("payload is not UTF-8") from None
    # Cheap pre-check so the C parser never recurses deeply on hostile input.
    if payload.count("[") + payload.count("{") > 4 * MAX_DEPTH and _bracketDepth(payload) > MAX_DEPTH:
        raise ProtocolError(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        obj = _DECODER.decode(payload)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"JSON {type(obj).__name__} is not an object")
    # Only nested values or \u escapes (the one way to spell a lone surrogate) need the walk;
    # real plug messages are flat objects without escapes.
    if not isinstance(given, bytes) or "\\u" in payload or payload.count("{") + payload.count("[") > 1:
        _depth(obj, MAX_DEPTH)
    return obj


#: One decoder for every frame (C{json.loads} with C{parse_constant} builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_rejectConstant)


def _bracketDepth(text: str) -> int:
    """The deepest bracket nesting in C{text}, ignoring brackets inside strings."""
    depth = deepest = 0
    inString = escaped = False
    for ch in text:
        if inString:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                inString = False
        elif ch == '"':
            inString = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def decodeObject(obj: dict[str, Any], expectLogin: bool) -> Message:
    """Turn a parsed JSON object into a typed message.

    A connection's first frame is its login (an object with no C{uri}); after that every frame
    must carry a string C{uri}.

    @raise ProtocolError: the object does not fit the message it claims to be.
    """
    uri = obj.get("uri")
    if expectLogin:
        if uri is not None:
            raise ProtocolError(f"expected a login, got uri {_shown(uri)}")
        return _login(obj)
    if not isinstance(uri, str) or len(uri) > 64:
        raise ProtocolError("message has no string 'uri'")
    decoder = DECODERS.get(uri)
    if decoder is None:
        return Unknown(extra=_rest(obj, ()), uri=cleanText(uri))
    return decoder(obj)


def decodeFrame(payload: bytes, expectLogin: bool) -> Message:
    """Decode one plain JSON frame payload into a typed message (see L{decodeObject})."""
    return decodeObject(parseObject(payload), expectLogin)


# --- what the server sends ---------------------------------------------------------------------


def timeFields(now: float) -> dict[str, int]:
    """The cloud's time fields for POSIX time C{now}: UTC date, C{wd} (Monday=1, Sunday=7), and
    C{ms} since UTC midnight.

    The real cloud sent wd=3 on a Wednesday and wd=5 on a Friday; Sunday's value was never seen,
    and 7 follows the ISO numbering those two values fit.
    """
    wd, year, month, day, ms = _timeValues(now)
    return {"wd": wd, "year": year, "month": month, "day": day, "ms": ms}


def _timeValues(now: float) -> tuple[int, int, int, int, int]:
    """L{timeFields}' values in its order: C{wd}, C{year}, C{month}, C{day}, C{ms}."""
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    # The same float arithmetic as (moment - midnight).total_seconds(), without the two objects.
    micros = (moment.hour * 3600 + moment.minute * 60 + moment.second) * 1_000_000 + moment.microsecond
    return moment.isoweekday(), moment.year, moment.month, moment.day, int(micros / 1_000_000 * 1000)


#: One encoder for every message (C{json.dumps} with C{separators} builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _dump(obj: dict[str, Any]) -> bytes:
    return _ENCODE(obj).encode("utf-8")


def loginReply(now: float) -> bytes:
    """C{/loginReply} with the time, as the real cloud sent it."""
    return _dump({"uri": "/loginReply", "error": 0, **timeFields(now), "hh": 0, "hl": 0, "lh": 0, "ll": 0})


#: C{/kr} as L{_dump} writes it, its five integers left to fill in (the reply to every C{/ka}:
#: formatting the bytes costs a fifth of encoding the dictionary).
_KEEPALIVE_REPLY = b'{"uri":"/kr","error":0,"wd":%d,"year":%d,"month":%d,"day":%d,"ms":%d}'


def keepAliveReply(now: float) -> bytes:
    """C{/kr} with the time: the answer to a plug's C{/ka} (the bytes C{_dump} makes of
    C{{"uri": "/kr", "error": 0, **timeFields(now)}})."""
    return _KEEPALIVE_REPLY % _timeValues(now)


def keepAliveProbe() -> bytes:
    """A server C{/ka}; the plug answers with a bare C{/kr}."""
    return _dump({"uri": "/ka"})


def relayCommand(on: bool) -> bytes:
    """C{/relay}: C{open} switches the plug on, C{break} off."""
    return _dump({"uri": "/relay", "action": RELAY_ON if on else RELAY_OFF})


def getRuntime() -> bytes:
    """C{/getRuntime}: ask for power, voltage and relay state."""
    return _dump({"uri": "/getRuntime"})


def relayWord(on: bool) -> str:
    """The protocol's word for a relay state (for the simulator's frames)."""
    return RELAY_ON if on else RELAY_OFF


def isFinite(value: float) -> bool:
    """True for a real, finite reading."""
    return not (math.isnan(value) or math.isinf(value))
