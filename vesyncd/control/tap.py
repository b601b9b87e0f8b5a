"""
The control plane's part of the daemon (AMP control port and Perspective Broker): options, their
checks, and services.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from vesyncd import paths
from vesyncd.auth import FailureThrottle, makePortal
from vesyncd.control.api import ControlCore, IControlAvatar
from vesyncd.control.amp import ControlFactory
from vesyncd.control.cluster_api import clusterSummary
from vesyncd.control.pb import ControlPBFactory, IControlPerspective, perspectiveFactory
from vesyncd.core.hub import Hub
from vesyncd.service import DaemonInfo, ListenerService, StartupError

log = Logger()



class ControlOptions:
    """The control plane's options, part of the daemon's L{vesyncd.tap.Options}."""

    optFlags = [
        ["control-insecure", None,
         "Allow plain TCP for --control and --pb (the token then crosses the network in clear text)."],
    ]
    optParameters = [
        ["control", None, None,
         "Endpoint of the AMP control port (default: unix:STATE_DIR/control.sock:mode=660). TCP needs "
         "--control-insecure; for remote clients use ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem."],
        ["pb", None, None,
         "Endpoint of the Perspective Broker front end (off by default; same rules as --control)."],
    ]


def checkEndpoint(option: str, description: str, insecure: bool) -> None:
    """Refuse plain TCP without C{--control-insecure} and TLS without certificate and key.

    @raise usage.UsageError: saying how to fix it.
    """
    kind = description.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6") and not insecure:
        raise usage.UsageError(
            f"--{option} {description}: plain TCP would send the control token unencrypted; use the default "
            f"UNIX socket, ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem, or add --control-insecure")
    if kind == "ssl" and "privatekey=" not in description.lower():
        raise usage.UsageError(f"--{option} {description}: an ssl: endpoint needs privateKey=KEY.pem "
                               f"(and certKey=CERT.pem unless the key file holds both)")


def checkOptions(config: Any) -> None:
    """Fill in the default control endpoint and check both endpoints."""
    if not config.get("control"):
        config["control"] = paths.controlEndpoint(Path(config["state-dir"]))
    checkEndpoint("control", config["control"], bool(config.get("control-insecure")))
    if config.get("pb"):
        checkEndpoint("pb", config["pb"], bool(config.get("control-insecure")))


def unixPath(description: str) -> Path | None:
    """The socket path of a C{unix:} endpoint string, else None."""
    if not description.startswith("unix:"):
        return None
    for part in description[5:].split(":"):
        if part.startswith("address="):
            return Path(part[8:])
        if "=" not in part:
            return Path(part)
    return None


class ControlListener(ListenerService):
    """A listener that makes the UNIX socket's directory first and refuses to take over a live socket."""

    def privilegedStartService(self) -> None:
        """Prepare the socket path, then bind (Twisted's lock file removes a dead daemon's socket)."""
        path = unixPath(self.description)
        if path is not None and self.port is None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and not stat.S_ISSOCK(mode):
                raise StartupError(f"{self.what}: {path} exists and is not a socket; remove it or choose "
                                   f"another --control")
        super().privilegedStartService()


def makeServices(parent: Any, hub: Hub, config: Any, reactor: Any, token: str, info: DaemonInfo, *,
                 automation: Any = None, insight: Any = None, cluster: Any = None) -> ControlCore:
    """Listen for AMP (and PB) clients holding C{token}, through one portal; return the API they share.
    C{automation} (an C{AutomationEngine}) and C{insight} (an C{EnergyInsight}) are served when given;
    C{cluster} (the cluster's view of its nodes, C{--node}) answers the C{nodes} request, and its summary
    is published in C{info} as C{cluster} (read by C{vesyncctl doctor})."""
    core = ControlCore(hub, info, automation=automation, insight=insight, cluster=cluster)
    if cluster is not None:
        info.facts["cluster"] = lambda: clusterSummary(cluster)
    portal = makePortal(token, {
        IControlAvatar: lambda avatarId, mind: core,
        IControlPerspective: perspectiveFactory(core),
    })
    throttle = FailureThrottle()
    control = ControlListener(reactor, "control port", config["control"],
                              ControlFactory(core, portal, reactor, throttle=throttle),
                              hint="another vesyncd may be running with this state directory")
    control.setServiceParent(parent)
    info.listeners["control"] = control
    if config.get("pb"):
        pbListener = ControlListener(reactor, "PB front end", config["pb"],
                                     ControlPBFactory(core, portal, reactor, throttle=throttle))
        pbListener.setServiceParent(parent)
        info.listeners["pb"] = pbListener
    if config.get("control-insecure"):
        log.warn("--control-insecure: control clients may connect over plain TCP")
    return core
