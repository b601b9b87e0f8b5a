"""
The twistd plugin's options and service: wiring only.

C{makeService} builds the core (L{vesyncd.core.hub.Hub}) and plugs each listener and front end into it
from the options; every rule lives in the modules it wires.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType, SimpleNamespace
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from vesyncd import __version__
from vesyncd.config import applyConfig, findConfigArgument, loadConfigFile
from vesyncd.core.hub import COMMAND_TIMEOUT, KEEPALIVE_IDLE, OFFLINE_AFTER, ONLINE, PROBE_INTERVAL, Hub
from vesyncd.paths import defaultStateDir
from vesyncd.service import (DaemonService, IntervalService, ListenerService, ShutdownHook, StartupError,
                      raiseFileLimit, withBacklog)
from vesyncd.plugs.server import LOGIN_TIMEOUT, PlugServerFactory

log = Logger()

DEFAULT_PLUGS = "tcp:17273:interface=127.0.0.1"

#: Front ends and services wired around the core.  Each module may define C{optFlags},
#: C{optParameters} and C{optRepeatable} (C{[name, doc]} pairs of repeatable options, collected
#: into lists) for L{Options}, C{postOptions(config)} to validate them, and
#: C{makeServices(parent, hub, config, reactor, context)} to add its services.  C{context} is a
#: namespace shared by the wiring: C{stateDir}, C{store}, C{token}, C{listeners} and what each
#: feature adds for the ones after it.
FEATURES: list[str] = ["vesyncd.storage.tap", "vesyncd.dns.tap", "vesyncd.control.tap", "vesyncd.mqtt.tap",
                       "vesyncd.web.tap"]


def _features() -> list[ModuleType]:
    return [importlib.import_module(name) for name in FEATURES]


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text} is not a positive number")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


class Options(usage.Options):
    """Options of C{twistd vesyncd} / C{twist vesyncd}; each is also a key of the C{--config} file."""

    synopsis = "[options]"
    longdesc = (
        "vesyncd answers Etekcity / VeSync Voltson Wi-Fi plugs in place of the vendor cloud. "
        "Every option can also be set in a TOML file given with --config (keys named like the long "
        "options); the command line wins. Listeners are Twisted endpoint strings (tcp:PORT:interface=IP, "
        "ssl:..., unix:PATH)."
    )

    optFlags: list[list[Any]] = []

    optParameters = [
        ["config", None, None, "TOML file with option values (keys named like the long options)."],
        ["plugs", None, DEFAULT_PLUGS,
         "Endpoint the plugs connect to. Plugs on the LAN need e.g. tcp:17273 (all interfaces)."],
        ["state-dir", None, None,
         "Directory for the database and control token (default /var/lib/vesyncd as root, "
         "else $XDG_STATE_HOME/vesyncd)."],
        ["keepalive-idle", None, KEEPALIVE_IDLE, "Seconds of plug silence before vesyncd sends it a /ka.", _positive],
        ["probe-interval", None, PROBE_INTERVAL, "Seconds between further /ka probes to a silent plug.", _positive],
        ["offline-after", None, OFFLINE_AFTER,
         "Seconds of silence after which a plug is offline and its connection closed.", _positive],
        ["command-timeout", None, COMMAND_TIMEOUT, "Seconds a plug has to confirm a command.", _positive],
        ["login-timeout", None, LOGIN_TIMEOUT, "Seconds a new connection has to send its login.", _positive],
        ["refresh-interval", None, 60.0, "Seconds between power/voltage refreshes of every plug (0: never).",
         float],
        ["demo-plugs", None, 0, "Start this many simulated plugs in-process against the plug port (demos).",
         _count],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name, _doc in self._repeatable():
            self[name] = []

    @classmethod
    def _repeatable(cls) -> list[tuple[str, str]]:
        return [tuple(entry) for module in _features() for entry in getattr(module, "optRepeatable", [])]

    def opt_version(self) -> None:
        """Print the version and exit."""
        sys.stdout.write(f"vesyncd {__version__}\n")
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Apply the C{--config} file first, then the command line over it."""
        argv = sys.argv[1:] if options is None else list(options)
        path = findConfigArgument(argv)
        if path is not None:
            applyConfig(self, loadConfigFile(path), path)
        super().parseOptions(argv)

    def postOptions(self) -> None:
        """Check that the values fit together."""
        if self["offline-after"] <= self["keepalive-idle"]:
            raise usage.UsageError(
                f"--offline-after ({self['offline-after']:g}) must be longer than --keepalive-idle "
                f"({self['keepalive-idle']:g})")
        self["state-dir"] = Path(self["state-dir"]).expanduser() if self["state-dir"] else defaultStateDir()
        for module in _features():
            check = getattr(module, "postOptions", None)
            if check is not None:
                check(self)


def _addFeatureOptions() -> None:
    """Merge each feature's options into L{Options}, with an appending C{opt_} per repeatable one."""
    for module in _features():
        Options.optFlags = Options.optFlags + list(getattr(module, "optFlags", []))
        Options.optParameters = Options.optParameters + list(getattr(module, "optParameters", []))
        for name, doc in getattr(module, "optRepeatable", []):
            setattr(Options, "opt_" + name.replace("-", "_"), _appender(name, doc))


def _appender(name: str, doc: str) -> Any:
    """An C{opt_} method (one argument, as usage.Options requires) that appends to a list."""

    def append(self: Options, value: str) -> None:
        self[name].append(value)

    append.__doc__ = doc
    return append


_addFeatureOptions()


def makeService(config: Options, reactor: Any = None) -> DaemonService:
    """Build the daemon from parsed options: the hub, the plug server, and every front end.

    Called by twistd (no C{reactor} given), a start-up problem ends the process with one line on
    standard error and exit status 1; called with a reactor (tests), it raises L{StartupError}.
    """
    fromTwistd = reactor is None
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    try:
        top = _build(config, reactor)
    except StartupError as e:
        if not fromTwistd:
            raise
        sys.stderr.write(f"vesyncd: {e}\n")
        raise SystemExit(1) from None
    top.exitOnStartupError = fromTwistd
    return top


def _build(config: Options, reactor: Any) -> DaemonService:
    files = raiseFileLimit()
    top = DaemonService()
    context = SimpleNamespace(stateDir=config["state-dir"], store=None, token=None, ledger=None, known=[],
                              listeners={}, info={})
    top.context = context  # type: ignore[attr-defined]
    for module in _features():
        prepare = getattr(module, "prepare", None)
        if prepare is not None:
            prepare(top, config, reactor, context)
    hub = Hub(
        reactor,
        keepaliveIdle=config["keepalive-idle"],
        probeInterval=config["probe-interval"],
        offlineAfter=config["offline-after"],
        commandTimeout=config["command-timeout"],
        ledger=context.ledger,
        known=context.known,
    )
    top.hub = hub  # type: ignore[attr-defined]

    factory = PlugServerFactory(hub, reactor=reactor, loginTimeout=config["login-timeout"])
    log.info("open-file limit {files} (each plug is one); at most {n} connections may wait for their login",
             files=files, n=factory.maxUnauthenticated)
    plugs = ListenerService(reactor, "plug server", withBacklog(config["plugs"]), factory)
    plugs.setServiceParent(top)
    top.plugListener = plugs  # type: ignore[attr-defined]
    # On shutdown the plugs go offline while the store and front ends can still record it.
    ShutdownHook(lambda: hub.closeAll("vesyncd is stopping")).setServiceParent(top)
    if config["plugs"] == DEFAULT_PLUGS:
        log.info("plug server listens on loopback only; for plugs on your LAN use --plugs tcp:17273")

    if config["refresh-interval"] > 0:
        IntervalService(reactor, config["refresh-interval"], hub.refreshAll).setServiceParent(top)
        # A plug that comes online gets its power and voltage read at once, not a minute later.
        hub.subscribe(lambda event: event.kind == ONLINE and hub.refresh(event.plug).addErrback(lambda f: None))

    context.listeners["plugs"] = plugs
    for module in _features():
        module.makeServices(top, hub, config, reactor, context)

    if config["demo-plugs"]:
        from vesyncd.sim.demo import DemoPlugs

        DemoPlugs(reactor, plugs, config["demo-plugs"]).setServiceParent(top)
    return top
