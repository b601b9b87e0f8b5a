"""
The twistd plugin's options and service: wiring only, top to bottom.

L{Options} gathers each package's options (every package that listens or serves brings its own
options class and C{checkOptions}); L{makeService} opens the state, builds the core
(L{vesyncd.core.hub.Hub}) and plugs each listener and front end into it.  Every rule lives in the
modules wired here; what one part needs from another is passed to it by name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from vesyncd import __version__, gcpolicy, logconfig, paths
from vesyncd.auth import loadOrCreateToken
from vesyncd.automation import tap as automationTap
from vesyncd.automation.engine import AutomationEngine
from vesyncd.cluster import tap as clusterTap
from vesyncd.cluster.member import ClusterMember
from vesyncd.config import applyConfig, checkListenerOptions, findConfigArgument, loadConfigFile, reportUsageError
from vesyncd.control import tap as controlTap
from vesyncd.control.api import ControlCore
from vesyncd.core import settings as coreSettings
from vesyncd.core.energy import MemoryLedger
from vesyncd.core.hub import Hub
from vesyncd.core.model import ONLINE
from vesyncd.core.refresh import SpreadRefresh
from vesyncd.core.settings import Settings
from vesyncd.dns import tap as dnsTap
from vesyncd.dns.server import DNSService
from vesyncd.insight import tap as insightTap
from vesyncd.insight.service import EnergyInsight
from vesyncd.insight.tariffconfig import TARIFF_KEY
from vesyncd.mqtt import tap as mqttTap
from vesyncd.mqtt.bridge import MQTTService
from vesyncd.paths import defaultStateDir
from vesyncd.plugs import tap as plugsTap
from vesyncd.service import (DaemonInfo, DaemonService, ListenerService, ShutdownHook,
                             StartupError, raiseFileLimit)
from vesyncd.sim.demo import DemoPlugs
from vesyncd.storage import tap as storageTap
from vesyncd.web import tap as webTap
from vesyncd.web.api import WebApp

log = Logger()

DEFAULT_PLUGS = plugsTap.DEFAULT_PLUGS


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


class CoreOptions:
    """The core's liveness, timeout and new-plug settings (L{vesyncd.core.settings})."""

    optParameters = coreSettings.optParameters


class Options(CoreOptions, plugsTap.PlugOptions, storageTap.StorageOptions, dnsTap.DNSOptions, controlTap.ControlOptions,
              mqttTap.MQTTOptions, webTap.WebOptions, logconfig.LogOptions, automationTap.AutomationOptions,
              insightTap.InsightOptions, clusterTap.ClusterOptions, usage.Options):
    """Options of C{twistd vesyncd} / C{twist vesyncd}; each is also a key of the C{--config} file.

    Twisted gathers C{optFlags} and C{optParameters} from every base class, so each package's options
    class above adds its own.
    """

    synopsis = "[options]"
    longdesc = (
        "vesyncd answers Etekcity / VeSync Voltson Wi-Fi plugs in place of the vendor cloud. "
        "Every option can also be set in a TOML file given with --config (keys named like the long "
        "options); the command line wins. Listeners are Twisted endpoint strings (tcp:PORT:interface=IP, "
        "ssl:..., unix:PATH)."
    )

    optParameters = [
        ["config", None, None, "TOML file with option values (keys named like the long options)."],
        ["state-dir", None, None,
         "Directory for the database and control token (default /var/lib/vesyncd as root, "
         "else $XDG_STATE_HOME/vesyncd)."],
        ["refresh-interval", None, 60.0, "Seconds between power/voltage refreshes of every plug (0: never).",
         float],
        ["demo-plugs", None, 0, "Start this many simulated plugs in-process against the plug port (demos).",
         _count],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name in dnsTap.REPEATABLE:
            self[name] = []
        #: The config file's tables that are not options (the [[tariff]] tables), by key.
        self.configTables: dict[str, Any] = {}

    def opt_version(self) -> None:
        """Print the version and exit."""
        sys.stdout.write(f"vesyncd {__version__}\n")
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Apply the C{--config} file first, then the command line over it; under twistd a mistake is
        shown as one line and a hint to C{--help}, not after the whole usage."""
        argv = sys.argv[1:] if options is None else list(options)
        try:
            path = findConfigArgument(argv)
            if path is not None:
                data = loadConfigFile(path)
                # [[tariff]] tables are no option: they go to the tariff check in postOptions.
                self.configTables = {TARIFF_KEY: data.pop(TARIFF_KEY)} if TARIFF_KEY in data else {}
                applyConfig(self, data, path)
            super().parseOptions(argv)
        except usage.UsageError as e:
            reportUsageError(self, e)
            raise

    def postOptions(self) -> None:
        """Check the core's settings, then each package's own options."""
        try:
            self["settings"] = Settings.fromOptions(self)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        self["state-dir"] = Path(self["state-dir"]).expanduser() if self["state-dir"] else defaultStateDir()
        storageTap.checkOptions(self)
        automationTap.checkOptions(self)
        insightTap.checkOptions(self, self.configTables)
        dnsTap.checkOptions(self)
        controlTap.checkOptions(self)
        mqttTap.checkOptions(self)
        clusterTap.checkOptions(self)
        webTap.checkOptions(self)
        checkListenerOptions(self)
        logconfig.checkOptions(self)


@dataclass
class DaemonParts:
    """The parts of a built daemon, by name, for the tests and benchmarks that reach one."""

    info: DaemonInfo
    hub: Hub
    plugs: ListenerService
    stored: storageTap.StoredState | None
    dns: DNSService | None
    control: ControlCore
    mqtt: MQTTService | None
    web: WebApp | None
    automation: AutomationEngine | None = None
    insight: EnergyInsight | None = None
    #: This node of a cluster (C{--node}), or None.
    cluster: ClusterMember | None = None

    @property
    def listeners(self) -> dict[str, ListenerService]:
        """Every listener by name: plugs, control, pb, http."""
        return self.info.listeners


class Daemon(DaemonService):
    """The whole daemon: its services, and (as C{context}) its parts."""

    context: DaemonParts

    @property
    def hub(self) -> Hub:
        """The core every part is wired to."""
        return self.context.hub

    @property
    def plugListener(self) -> ListenerService:
        """The listener plugs connect to."""
        return self.context.plugs


def makeService(config: Options, reactor: Any = None, *, persistent: bool = True) -> Daemon:
    """Build the daemon from parsed options: the hub, the plug server, and every front end.

    Called by twistd (no C{reactor} given), a start-up problem ends the process with one line on
    standard error and exit status 1; called with a reactor (tests), it raises L{StartupError}.
    With C{persistent=False} nothing is stored: energy is kept in memory (benchmarks).
    """
    fromTwistd = reactor is None
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    try:
        top = build(config, reactor, persistent=persistent)
    except StartupError as e:
        if not fromTwistd:
            raise
        sys.stderr.write(f"vesyncd: {e}\n")
        raise SystemExit(1) from None
    top.exitOnStartupError = fromTwistd
    return top


def build(config: Options, reactor: Any, *, persistent: bool = True) -> Daemon:
    """Wire the daemon's parts in the order they depend on each other (see L{makeService})."""
    files = raiseFileLimit()
    log.info("open-file limit {files} (each plug is one)", files=files)
    top = Daemon()
    info = DaemonInfo(stateDir=config["state-dir"])

    # The state comes first: the hub starts from the plugs and energy totals it holds.
    stored = storageTap.openState(top, config, reactor) if persistent else None
    settings: Settings = config["settings"]
    hub = Hub(reactor, settings, ledger=stored.ledger if stored else MemoryLedger(config["timezone"]),
              known=stored.known if stored else ())
    hub.subscribe(logconfig.PlugStateLog(lambda plugId: hub.get(plugId).alias), remote=False)
    plugs = plugsTap.makeServices(top, hub, config, reactor, settings.login_timeout, info)
    # Long-lived plug objects leave the collector's way after login waves (see vesyncd.gcpolicy).
    gcpolicy.makeServices(top, hub, reactor, info)
    # On shutdown the plugs go offline while the store and front ends can still record it.
    ShutdownHook(lambda: hub.closeAll("vesyncd is stopping")).setServiceParent(top)
    if config["refresh-interval"] > 0:
        SpreadRefresh(hub, reactor, config["refresh-interval"]).setServiceParent(top)
        # A plug that comes online gets its power and voltage read at once, not a minute later.
        hub.subscribe(lambda event: event.kind == ONLINE and hub.refresh(event.plug).addErrback(lambda f: None),
                      remote=False)
    if stored is not None:
        storageTap.makeServices(hub, stored)
        storageTap.publishFacts(info, stored)
    # With --node: leases, the other nodes' plugs and the broker link (nothing without it).
    cluster = clusterTap.makeMember(top, hub, config, reactor, info, stored if persistent else None)
    view = cluster.view if cluster is not None else None

    # Automation and energy insight work over the hub (and the store, when there is one); the front
    # ends below are given them.  The store closes only after their last writes (beforeClose).
    beforeClose = stored.service.beforeClose if stored else None
    automation = automationTap.makeServices(top, hub, config, reactor,
                                            clusterTap.wrapAutomationStore(cluster, stored.automation if stored else None),
                                            stored.automationItems if stored else None, beforeClose)
    clusterTap.attachAutomation(cluster, automation)
    insight = insightTap.makeServices(top, hub, hub.ledger, config, reactor, config["timezone"],
                                      switchLog=stored.switches if stored else None,
                                      baselines=stored.baselines if stored else None,
                                      saveBaselines=stored.baselineStore.save if stored else None,
                                      beforeClose=beforeClose)

    dns = dnsTap.makeServices(top, config, reactor, info, nodeAddresses=view.liveAddresses if view else None)
    token = loadOrCreateToken(Path(config["state-dir"]) / paths.TOKEN_FILE)
    control = controlTap.makeServices(top, hub, config, reactor, token, info, automation=automation, insight=insight,
                                      cluster=view)
    mqtt = mqttTap.makeServices(top, hub, config, reactor, info, automation=automation, insight=insight)
    web = webTap.makeServices(top, hub, config, reactor, token, info, dns, automation=automation, insight=insight,
                              cluster=view)

    if config["demo-plugs"]:
        DemoPlugs(reactor, plugs, config["demo-plugs"]).setServiceParent(top)
    top.context = DaemonParts(info, hub, plugs, stored, dns, control, mqtt, web, automation=automation,
                              insight=insight, cluster=cluster)
    return top
