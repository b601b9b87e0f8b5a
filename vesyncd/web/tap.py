"""
The web front end's part of the daemon: its options (C{--http}, C{--no-http}, C{--http-insecure},
C{--metrics-public}, C{--http-max-connections}, C{--http-max-per-host}), their checks, and its
listener; the rules live in L{vesyncd.web}.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python import usage

from vesyncd.core.hub import Hub
from vesyncd.paths import TOKEN_FILE
from vesyncd.service import DaemonInfo, ListenerService, withBacklog
from vesyncd.web.api import WebApp
from vesyncd.web.limits import MAX_PER_HOST, ConnectionLimits
from vesyncd.web.metrics import ClusterCollector
from vesyncd.web.site import makeSite

log = Logger()

DEFAULT_HTTP = "tcp:8080:interface=127.0.0.1"


def _connections(text: str) -> int:
    """A connection count of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a count of at least 1")
    return value


class WebOptions:
    """The web front end's options, part of the daemon's L{vesyncd.tap.Options}."""

    optFlags = [
        ["no-http", None, "Do not serve the web page, HTTP API and /metrics."],
        ["http-insecure", None, "Allow a plain-HTTP (non-TLS) web listener beyond loopback."],
        ["metrics-public", None, "Serve /metrics without the control token."],
    ]
    optParameters = [
        ["http", None, DEFAULT_HTTP,
         "Endpoint of the web page, HTTP API and /metrics. Beyond loopback use ssl:PORT:privateKey=...:certKey=... "
         "(or --http-insecure)."],
        ["http-max-connections", None, None,
         "HTTP connections open at once, event streams included (default: a sixteenth of the open-file "
         "limit, 32 to 4096, so plugs and the control socket keep their file handles).", _connections],
        ["http-max-per-host", None, MAX_PER_HOST, "HTTP connections one client address may hold at once.",
         _connections],
    ]


def _splitEndpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """An endpoint string's kind, positional arguments and keyword arguments (colons may be escaped)."""
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", description)]
    positional, keywords = [], {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq and re.fullmatch(r"[A-Za-z]+", key):
            keywords[key] = value
        else:
            positional.append(part)
    return parts[0].lower(), positional, keywords


def isPrivateEndpoint(description: str) -> bool:
    """True when an endpoint string only accepts connections from this machine (loopback TCP, UNIX)."""
    kind, _positional, keywords = _splitEndpoint(description)
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6"):
        return False
    interface = keywords.get("interface", "").strip("[]")
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def checkOptions(config: Any) -> None:
    """Refuse a plain-HTTP listener beyond loopback unless --http-insecure says so."""
    if config["no-http"]:
        return
    description = config["http"]
    kind = _splitEndpoint(description)[0]
    if kind == "ssl" or isPrivateEndpoint(description) or config["http-insecure"]:
        return
    raise usage.UsageError(
        f"--http {description} would serve the control token and session cookies without TLS beyond this "
        "machine. Use an ssl: endpoint (e.g. ssl:8443:privateKey=key.pem:certKey=cert.pem), keep it on "
        "loopback (tcp:8080:interface=127.0.0.1), or add --http-insecure if you accept that risk.")


class _WebLifetime(service.Service):
    """Closes event streams and stops following the hub when the daemon stops."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def stopService(self) -> None:
        service.Service.stopService(self)
        self.app.stop()


def makeServices(parent: service.MultiService, hub: Hub, config: Any, reactor: Any, token: str,
                 info: DaemonInfo, dns: Any = None, automation: Any = None, insight: Any = None,
                 cluster: Any = None) -> WebApp | None:
    """Add the web listener to C{parent} unless --no-http, and return the app it serves.

    C{token} lets clients in; C{dns} (the DNS responder or None) lends its counters to /metrics;
    C{automation} (the L{AutomationEngine}) and C{insight} (the L{EnergyInsight}) serve their routes
    when given; C{cluster} (the cluster's view, with C{--node}) adds per-node figures to /metrics.
    """
    if config["no-http"]:
        return None
    limits = ConnectionLimits(reactor, maxTotal=config.get("http-max-connections"),
                              maxPerHost=config.get("http-max-per-host") or MAX_PER_HOST)
    tokenPath = Path(info.stateDir) / TOKEN_FILE if info.stateDir is not None else None
    app = WebApp(hub, reactor, token, dns=lambda: dns, metricsPublic=bool(config["metrics-public"]), limits=limits,
                 automation=automation, insight=insight, tokenPath=tokenPath,
                 threads=reactor if IReactorThreads.providedBy(reactor) else None)
    if cluster is not None:
        app.registry.register(ClusterCollector(cluster))
    _WebLifetime(app).setServiceParent(parent)
    listener = ListenerService(reactor, "web server", withBacklog(config["http"]), makeSite(app, reactor),
                               hint="choose another port with --http, or turn the web page off with --no-http")
    listener.setServiceParent(parent)
    info.listeners["http"] = listener
    if config["http-insecure"] and not isPrivateEndpoint(config["http"]) and _splitEndpoint(config["http"])[0] != "ssl":
        log.warn("web server on {endpoint} without TLS: the token and cookies cross the network in clear text",
                 endpoint=config["http"])
    return app
