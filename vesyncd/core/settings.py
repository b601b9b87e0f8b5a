"""
The core's liveness, timeout and trust settings: one frozen value, validated once, handed by the
hub to every session (and by the wiring to the plug server for its login deadline).

The defaults live here and nowhere else.  L{optParameters} is the twistd option table for them
(each is also a key of the C{--config} file); L{Settings.fromOptions} builds the value from parsed
options, and a L{ValueError} names the option to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

#: What happens to a plug id the daemon has never seen: taken at once, or held for approval.
NEW_PLUGS_ACCEPT = "accept"
NEW_PLUGS_HOLD = "hold"
NEW_PLUGS_MODES = (NEW_PLUGS_ACCEPT, NEW_PLUGS_HOLD)


@dataclass(frozen=True)
class Settings:
    """How long plugs may be silent or slow, and which new plugs the hub takes.

    Defaults are chosen so that a plug that vanishes without a FIN is offline within 2 minutes.
    """

    #: Seconds of plug silence before the hub sends it a C{/ka}.
    keepalive_idle: float = 60.0
    #: Seconds between further C{/ka} probes to a silent plug.
    probe_interval: float = 15.0
    #: Seconds of silence after which a plug is offline and its connection closed.
    offline_after: float = 110.0
    #: Seconds a plug has to confirm a command.
    command_timeout: float = 5.0
    #: Seconds a new connection has to send its login (used by the plug server).
    login_timeout: float = 10.0
    #: NEW_PLUGS_ACCEPT or NEW_PLUGS_HOLD (unknown ids wait for C{approve}).
    new_plugs: str = NEW_PLUGS_ACCEPT
    #: Unknown plug ids taken (or held) per minute at most; known ids are never limited.
    max_new_plugs_per_minute: int = 60
    #: Plugs waiting for approval at most (with C{hold}).
    max_pending: int = 256

    def __post_init__(self) -> None:
        for name in ("keepalive_idle", "probe_interval", "offline_after", "command_timeout", "login_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or value != value or value == float("inf"):
                raise ValueError(f"{optionName(name)} ({value!r}) must be a positive number of seconds")
        if self.offline_after <= self.keepalive_idle:
            raise ValueError(f"--offline-after ({self.offline_after:g}) must be longer than --keepalive-idle "
                             f"({self.keepalive_idle:g})")
        if self.new_plugs not in NEW_PLUGS_MODES:
            raise ValueError(f"--new-plugs ({self.new_plugs!r}) must be one of {', '.join(NEW_PLUGS_MODES)}")
        for name in ("max_new_plugs_per_minute", "max_pending"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{optionName(name)} ({value!r}) must be a whole number of at least 1")

    @property
    def probeEvery(self) -> float:
        """The probe interval the sessions use: never below half a second, however it is set."""
        return max(self.probe_interval, 0.5)

    @property
    def firstProbeSpread(self) -> float:
        """Seconds over which the first liveness checks of plugs that logged in together are spread.

        One probe interval, and at most half the time between C{keepalive_idle} and C{offline_after}:
        a plug's first C{/ka} may come that much later than C{keepalive_idle}, and a plug that
        vanished is still probed before it is offline and still offline at C{offline_after}
        (15 s by default: 10,000 plugs back at once are probed over 15 s, not in one second).
        """
        return min(self.probeEvery, (self.offline_after - self.keepalive_idle) / 2)

    @classmethod
    def fromOptions(cls, config: Mapping[str, Any]) -> "Settings":
        """The settings from parsed options (keys named like L{optParameters}); missing keys keep defaults.

        @raise ValueError: a value is out of range, naming the option.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = optionName(f.name)[2:]
            if key in config and config[key] is not None:
                values[f.name] = config[key]
        return cls(**values)


def optionName(field: str) -> str:
    """The command-line option of a settings field, e.g. C{--offline-after}."""
    return "--" + field.replace("_", "-")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text} is not a positive number")
    return value


def _atLeastOne(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is less than 1")
    return value


def _newPlugs(text: str) -> str:
    value = str(text).strip().lower()
    if value not in NEW_PLUGS_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(NEW_PLUGS_MODES)}")
    return value


_DEFAULTS = Settings()

#: The twistd option table of the settings (C{[long, short, default, doc, coerce]}).
optParameters: list[list[Any]] = [
    ["keepalive-idle", None, _DEFAULTS.keepalive_idle, "Seconds of plug silence before vesyncd sends it a /ka.",
     _positive],
    ["probe-interval", None, _DEFAULTS.probe_interval, "Seconds between further /ka probes to a silent plug.",
     _positive],
    ["offline-after", None, _DEFAULTS.offline_after,
     "Seconds of silence after which a plug is offline and its connection closed.", _positive],
    ["command-timeout", None, _DEFAULTS.command_timeout, "Seconds a plug has to confirm a command.", _positive],
    ["login-timeout", None, _DEFAULTS.login_timeout, "Seconds a new connection has to send its login.", _positive],
    ["new-plugs", None, _DEFAULTS.new_plugs,
     "What to do with a plug id never seen before: accept it at once, or hold it until "
     "'vesyncctl approve PLUG'.", _newPlugs],
    ["max-new-plugs-per-minute", None, _DEFAULTS.max_new_plugs_per_minute,
     "Plug ids never seen before that are taken (or held) per minute at most; the rest are refused "
     "and come back with their next reconnect.", _atLeastOne],
]
