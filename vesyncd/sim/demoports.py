"""
Which loopback ports the demo (C{make run}) listens on: each default that another program holds is
moved to a free port, and a port the user chose that is busy is named with the option that moves it.

Only loopback addresses are ever probed or bound here; a listener on any other interface is left to
the daemon, which reports its own bind errors.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

#: The daemon's TCP endpoint options the demo checks, with what each one serves.
ENDPOINT_OPTIONS = (("plugs", "plug server"), ("http", "web page"), ("pb", "PB front end"),
                    ("control", "control port"))

# An endpoint string splits on colons that are not escaped (tcp6:8080:interface=\:\:1).
_SEPARATOR = re.compile(r"(?<!\\):")


@dataclass(frozen=True)
class TCPEndpoint:
    """A C{tcp:} / C{tcp6:} endpoint string taken apart far enough to change its port."""

    parts: tuple[str, ...]
    portIndex: int
    port: int
    host: str

    def withPort(self, port: int | str) -> str:
        """The same endpoint string with another port (or a placeholder such as C{PORT})."""
        parts = list(self.parts)
        old = parts[self.portIndex]
        parts[self.portIndex] = f"port={port}" if old.startswith("port=") else str(port)
        return ":".join(parts)


def parseTCPEndpoint(description: str) -> TCPEndpoint | None:
    """A TCP endpoint string's port and interface, or None for anything else (unix:, ssl:, bad text)."""
    parts = _SEPARATOR.split(description)
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6"):
        return None
    portIndex, port, host = -1, -1, ""
    for index, part in enumerate(parts[1:], start=1):
        key, eq, value = part.partition("=")
        if eq and key == "interface":
            host = value.replace("\\:", ":").strip("[]")
        elif eq and key == "port" or not eq and portIndex < 0:
            portIndex, text = index, (value if eq else part)
            try:
                port = int(text)
            except ValueError:
                return None
    if portIndex < 0 or not 0 <= port < 65536:
        return None
    return TCPEndpoint(tuple(parts), portIndex, port, host or ("::" if kind == "tcp6" else ""))


def isLoopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or C{localhost}; the only hosts probed here."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _address(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def portFree(host: str, port: int, kinds: Iterable[str]) -> bool:
    """True when every protocol in C{kinds} ("tcp", "udp") can bind C{host:port} right now.

    TCP is tried with SO_REUSEADDR as Twisted listens, so a port with only closed connections
    in TIME_WAIT counts as free, as it is for the daemon.
    """
    if not isLoopback(host):
        raise ValueError(f"{host} is not a loopback address")
    for kind in kinds:
        sock = socket.socket(_family(host), socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        try:
            if kind == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_address(host), port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return False
            raise
        finally:
            sock.close()
    return True


def freePort(host: str, kinds: Iterable[str], attempts: int = 50) -> int:
    """A port on loopback C{host} that every protocol in C{kinds} can bind now (the system picks it)."""
    kinds = tuple(kinds)
    for _ in range(attempts):
        with socket.socket(_family(host), socket.SOCK_STREAM if kinds[0] == "tcp" else socket.SOCK_DGRAM) as sock:
            sock.bind((_address(host), 0))
            port = sock.getsockname()[1]
        if portFree(host, port, kinds[1:]):
            return port
    raise OSError(f"no free port on {host} for {'+'.join(kinds)} after {attempts} tries")


@dataclass
class Listener:
    """One listener of the demo: the option that sets it, where it listens, and whether the user chose it."""

    option: str
    what: str
    host: str
    port: int
    kinds: tuple[str, ...]
    chosen: bool
    endpoint: TCPEndpoint | None = None

    def argsForPort(self, port: int | str) -> list[str]:
        """The daemon options that put this listener on C{port}."""
        if self.endpoint is None:
            return [f"--{self.option}", str(port)]
        return [f"--{self.option}", self.endpoint.withPort(port)]

    def hint(self) -> str:
        """The C{make run} line that moves this listener to a port of the user's choice."""
        return f'make run ARGS="{" ".join(self.argsForPort("PORT"))}"'


@dataclass
class PortPlan:
    """What the demo does about busy ports: options to add, notes to print, and problems that stop it."""

    args: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def givenOptions(userArgs: list[str]) -> set[str]:
    """The long option names present in C{userArgs} (C{--http X} and C{--http=X} both count)."""
    return {arg[2:].split("=", 1)[0] for arg in userArgs if arg.startswith("--") and len(arg) > 2}


def listeners(config: Any, chosen: set[str]) -> list[Listener]:
    """The demo's loopback listeners with a fixed port, from the daemon's parsed options.

    C{chosen} holds the option names the user set; with a user's own C{--config} every option is theirs.
    """
    everything = "config" in chosen
    found = []
    for option, what in ENDPOINT_OPTIONS:
        if option == "http" and config.get("no-http"):
            continue
        description = config.get(option)
        endpoint = parseTCPEndpoint(description) if description else None
        if endpoint is None or endpoint.port == 0 or not isLoopback(endpoint.host):
            continue
        found.append(Listener(option, what, endpoint.host, endpoint.port, ("tcp",),
                              everything or option in chosen, endpoint))
    if not config.get("no-dns") and isLoopback(config.get("dns-interface") or "") and config.get("dns-port"):
        found.append(Listener("dns-port", "DNS responder", config["dns-interface"], int(config["dns-port"]),
                              ("udp", "tcp"), everything or "dns-port" in chosen))
    return found


def planPorts(found: list[Listener], isFree: Callable[[str, int, tuple[str, ...]], bool] = portFree,
              pickPort: Callable[[str, tuple[str, ...]], int] = freePort) -> PortPlan:
    """Move each busy default listener to a free port; a busy port the user chose is a problem to report."""
    plan = PortPlan()
    for listener in found:
        if isFree(listener.host, listener.port, listener.kinds):
            continue
        where = f"{listener.host}:{listener.port}"
        if listener.chosen:
            plan.blocked.append(f"{where} ({'+'.join(listener.kinds)}) for the {listener.what} is in use by "
                                f"another program; pick another port: {listener.hint()}")
            continue
        port = pickPort(listener.host, listener.kinds)
        plan.args += listener.argsForPort(port)
        plan.moved.append(f"port {listener.port} was busy: the {listener.what} uses {port} instead "
                          f"(to choose: {listener.hint()})")
        listener.port = port
    return plan
