"""
The payloads C{<prefix>/<plug>/relay/set} accepts, parsed from hostile bytes into a L{RelayCommand}.

A word (C{ON}, C{OFF}, C{TOGGLE}, C{1}, C{0}, C{true}, C{false}, any case), or a JSON object
C{{"state": WORD, "for": DURATION}}: switch now and back after C{DURATION} (seconds, or text such as
C{"30m"} that the automation engine parses and bounds).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from twisted.logger import Logger
from twisted.python.failure import Failure

from vesyncd.core import model as h
from vesyncd.jsonguard import BadJSON, parseJSONObject

log = Logger()

#: The longest word command looked at; longer ones are refused unread.
MAX_COMMAND_PAYLOAD = 32
#: The longest JSON command looked at (C{{"state": "TOGGLE", "for": "1h30m"}} is 36 bytes).
MAX_JSON_COMMAND = 128
#: Deepest nesting looked at; a command is a flat object, so this only leaves room for a precise refusal.
MAX_JSON_DEPTH = 4
#: The longest duration text passed on to the automation engine.
MAX_DURATION_TEXT = 16
_ON = {"on", "1", "true"}
_OFF = {"off", "0", "false"}
_TOGGLE = {"toggle"}
_KEYS = {"state", "for"}


class BadCommand(ValueError):
    """A C{relay/set} payload that is not a known command."""


class RelayCommand(NamedTuple):
    """What a C{relay/set} payload asks: C{on} True, False or None (toggle); C{seconds} (a number or a
    duration text) to switch back after, or None."""

    on: bool | None
    seconds: float | str | None = None


def _word(word: str) -> bool | None:
    word = word.strip().casefold()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    if word in _TOGGLE:
        return None
    raise BadCommand(f"unknown command {word[:MAX_COMMAND_PAYLOAD]!r} (ON, OFF, TOGGLE, 1, 0, true, false)")


def parseRelayCommand(payload: bytes) -> bool | None:
    """C{True} for on, C{False} for off, C{None} for toggle.

    @raise BadCommand: the payload is too long, not UTF-8, or not one of ON, OFF, TOGGLE, 1, 0,
        true, false (case-insensitive, surrounding white space ignored).
    """
    if len(payload) > MAX_COMMAND_PAYLOAD:
        raise BadCommand(f"payload of {len(payload)} bytes (at most {MAX_COMMAND_PAYLOAD})")
    try:
        word = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCommand("payload is not UTF-8 text") from None
    return _word(word)


def _duration(value: Any) -> float | str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadCommand('"for" must be a number of seconds or a duration such as "30m"')
    if isinstance(value, str):
        if not value.strip() or len(value) > MAX_DURATION_TEXT or not value.isprintable():
            raise BadCommand(f'"for" text must be 1-{MAX_DURATION_TEXT} printable characters')
        return value.strip()
    return float(value)


def parseCommand(payload: bytes) -> RelayCommand:
    """A word command, or a JSON object C{{"state": WORD, "for": DURATION}} (C{for} optional).

    @raise BadCommand: anything else: too long, not UTF-8, not JSON, NaN/Infinity, other keys, a bad state or
        duration type (the duration's range is the automation engine's to check).
    """
    if not payload.lstrip().startswith(b"{"):
        return RelayCommand(parseRelayCommand(payload))
    try:
        doc = parseJSONObject(payload, maxBytes=MAX_JSON_COMMAND, maxDepth=MAX_JSON_DEPTH, what="the payload")
    except BadJSON as e:
        raise BadCommand(str(e)) from None
    unknown = sorted(str(k)[:20] for k in doc if k not in _KEYS)
    if unknown:
        raise BadCommand(f"unknown keys {unknown} (state, for)")
    if "state" not in doc:
        raise BadCommand('"state" is missing')
    state = doc["state"]
    if isinstance(state, bool):
        on: bool | None = state
    elif isinstance(state, str) and len(state) <= MAX_COMMAND_PAYLOAD:
        on = _word(state)
    else:
        raise BadCommand('"state" must be ON, OFF or TOGGLE')
    seconds = _duration(doc["for"]) if doc.get("for") is not None else None
    return RelayCommand(on, seconds)


class Commander:
    """Carries out parsed C{relay/set} commands: a plain switch through the hub, one with C{for}
    through the automation engine's countdown (C{switchFor}); failures are logged, never raised.

    C{relayOf(plugId)} gives the plug's relay (for a toggle with C{for}); C{timerSet(plugId)} is
    called once a countdown is set.
    """

    def __init__(self, hub: Any, automation: Any, relayOf: Callable[[str], bool | None],
                 timerSet: Callable[[str], None]) -> None:
        self.hub = hub
        self.automation = automation
        self.relayOf = relayOf
        self.timerSet = timerSet

    def run(self, plugId: str, command: RelayCommand) -> None:
        """Switch the plug as C{command} asks."""
        if command.seconds is not None:
            self._switchFor(plugId, command)
            return
        on = command.on
        what = "toggle" if on is None else ("on" if on else "off")
        log.info("mqtt: switching plug {plug} {what}", plug=plugId, what=what)
        self.hub.switch(plugId, on).addErrback(self._failed, plugId, what)

    def _switchFor(self, plugId: str, command: RelayCommand) -> None:
        if self.automation is None:
            log.warn('mqtt: ignoring a command with "for" for plug {plug}: automation is not running', plug=plugId)
            return
        on = command.on
        if on is None:
            relay = self.relayOf(plugId)
            if relay is None:
                log.warn("mqtt: cannot toggle plug {plug} for a while: its relay state is not known", plug=plugId)
                return
            on = not relay
        what = f"{'on' if on else 'off'} for {command.seconds}"
        try:
            d = self.automation.switchFor(plugId, on, command.seconds)
        except ValueError as e:  # the engine's AutomationError: a duration out of range, a bound reached
            log.warn("mqtt: ignoring command for plug {plug}: {why}", plug=plugId, why=str(e)[:200])
            return
        log.info("mqtt: switching plug {plug} {what}", plug=plugId, what=what)
        d.addCallbacks(lambda _: self.timerSet(plugId), self._failed, errbackArgs=(plugId, what))

    def _failed(self, failure: Failure, plugId: str, what: str) -> None:
        if failure.check(h.CommandError, ValueError):
            log.warn("mqtt: cannot switch plug {plug} {what}: {why}", plug=plugId, what=what,
                     why=failure.getErrorMessage()[:200])
        else:
            log.failure("mqtt: switching plug {plug} {what} failed", failure, plug=plugId, what=what)
