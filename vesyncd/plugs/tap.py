"""
The plug server's part of the daemon: the C{--plugs} endpoint and its listener.

The listener is made with the daemon's listen backlog, so a reconnect storm after a power cut is
queued by the kernel rather than refused.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from vesyncd.core.hub import Hub
from vesyncd.plugs.server import PlugServerFactory
from vesyncd.service import DaemonInfo, ListenerService, withBacklog

log = Logger()

DEFAULT_PLUGS = "tcp:17273:interface=127.0.0.1"


class PlugOptions:
    """The plug server's options, part of the daemon's L{vesyncd.tap.Options}."""

    optParameters = [
        ["plugs", None, DEFAULT_PLUGS,
         "Endpoint the plugs connect to. Plugs on the LAN need e.g. tcp:17273 (all interfaces)."],
    ]


def makeServices(parent: Any, hub: Hub, config: Any, reactor: Any, loginTimeout: float,
                 info: DaemonInfo) -> ListenerService:
    """Listen for plugs on C{config["plugs"]}, handing each connection to C{hub}; return the listener."""
    factory = PlugServerFactory(hub, reactor=reactor, loginTimeout=loginTimeout)
    plugs = ListenerService(reactor, "plug server", withBacklog(config["plugs"]), factory)
    plugs.setServiceParent(parent)
    info.listeners["plugs"] = plugs
    log.info("at most {n} connections may wait for their login", n=factory.maxUnauthenticated)
    if config["plugs"] == DEFAULT_PLUGS:
        log.info("plug server listens on loopback only; for plugs on your LAN use --plugs tcp:17273")
    return plugs
