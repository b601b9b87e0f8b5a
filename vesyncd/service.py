"""
Small services the daemon is assembled from: a listener that says where it listens and fails
start-up with one clear line, a service that runs a function on an interval, and what the running
daemon tells about itself.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from twisted.application import service
from twisted.internet import endpoints, error, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

log = Logger()


@dataclass
class DaemonInfo:
    """What the running daemon tells about itself (C{vesyncctl info}, the web page, the doctor).

    C{listeners} are filled in as the wiring adds them; C{facts} holds values that a part of the
    daemon publishes (e.g. the LAN address plugs are told), each a value or a callable read at
    request time.
    """

    stateDir: Path | None = None
    listeners: dict[str, "ListenerService"] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


class StartupError(Exception):
    """The daemon cannot start; the message says why and how to fix it."""


def raiseFileLimit(ceiling: int = 1 << 20) -> int | None:
    """Raise the soft open-file limit to the hard one (at most C{ceiling}): every plug is a socket.

    Returns the new soft limit, or None where there is no such limit.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class DaemonService(service.MultiService):
    """The daemon's top service: with C{exitOnStartupError}, a L{StartupError} while starting
    prints its one line to standard error and exits with status 1 instead of a traceback."""

    exitOnStartupError = False

    def _guard(self, start: Callable[[], Any]) -> Any:
        try:
            return start()
        except StartupError as e:
            if not self.exitOnStartupError:
                raise
            log.critical("vesyncd cannot start: {error}", error=str(e))
            sys.stderr.write(f"vesyncd: {e}\n")
            sys.stderr.flush()
            raise SystemExit(1) from None

    def privilegedStartService(self) -> None:
        self._guard(super().privilegedStartService)

    def startService(self) -> None:
        self._guard(super().startService)


def withBacklog(description: str, backlog: int = 4096) -> str:
    """Add a listen backlog to a TCP or TLS endpoint string that does not name one."""
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl") and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def describeAddress(address: Any) -> str:
    """A listening address as text (C{127.0.0.1:17273}, C{[::1]:8080}, a UNIX path)."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name or address)


class ListenerService(service.Service):
    """Listens on an endpoint string while running; C{port} is the listening port once started."""

    def __init__(self, reactor: Any, what: str, description: str, factory: Any, hint: str = "") -> None:
        self.reactor = reactor
        self.what = what
        self.description = description
        self.factory = factory
        self.hint = hint
        self.port: Any = None
        self.listening: Deferred = Deferred()

    def privilegedStartService(self) -> None:
        """Bind now (before privileges are dropped); a failure raises L{StartupError}."""
        service.Service.privilegedStartService(self)
        try:
            endpoint = endpoints.serverFromString(self.reactor, self.description)
        except (ValueError, KeyError, TypeError) as e:
            raise StartupError(f"{self.what}: endpoint {self.description!r} is not valid: {e}") from None
        failures: list[Any] = []
        endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0].value
            message = f"{self.what}: cannot listen on {self.description}: {reason}"
            if isinstance(reason, error.CannotListenError):
                cause = str(reason.socketError) if reason.socketError else str(reason)
                if "ermission" in cause or "Errno 13" in cause:
                    message += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                elif "in use" in cause or "Errno 98" in cause:
                    message += " (another program holds that port; `vesyncctl doctor` names it)"
            if self.hint:
                message += f"; {self.hint}"
            raise StartupError(message)

    def _listening(self, port: Any) -> Any:
        self.port = port
        log.info("{what} listening on {address}", what=self.what, address=describeAddress(port.getHost()))
        self.listening.callback(port)
        return port

    def startService(self) -> None:
        """Bind if C{privilegedStartService} did not already."""
        if self.port is None and not self.listening.called:
            self.privilegedStartService()
        service.Service.startService(self)

    def stopService(self) -> Deferred | None:
        """Stop listening."""
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


class IntervalService(service.Service):
    """Calls C{fn} every C{interval} seconds while running (errors are logged, never fatal)."""

    def __init__(self, reactor: Any, interval: float, fn: Callable[[], Any], now: bool = False) -> None:
        self.interval = interval
        self.now = now
        self._call = task.LoopingCall(self._safely, fn)
        self._call.clock = reactor

    def _safely(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            log.failure("periodic task {fn!r} failed", fn=fn)

    def startService(self) -> None:
        service.Service.startService(self)
        self._call.start(self.interval, now=self.now)

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self._call.running:
            self._call.stop()


class ShutdownHook(service.Service):
    """Calls C{fn} when the service stops (errors are logged, never fatal)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def stopService(self) -> None:
        service.Service.stopService(self)
        try:
            self.fn()
        except Exception:
            log.failure("shutdown hook {fn!r} failed", fn=self.fn)
