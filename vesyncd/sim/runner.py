"""
Simulated plugs kept connected to a server: one L{PlugRunner} per plug, a L{Simulator} for many.

A runner connects its plug, and when the connection fails or ends reconnects after an
exponential, capped and jittered delay, resolving the server's name again each time as a plug
does.  C{speed} shortens the delays as it shortens every other timer of the plug.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any, Callable

from twisted.internet import endpoints
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory

from vesyncd.sim.plug import SimPlug, SimPlugProtocol, plugId

#: The longest wait between two connection attempts, in seconds at speed 1.
MAX_BACKOFF = 60.0


class PlugRunner:
    """Keeps one simulated plug connected to its server, reconnecting with backoff and jitter."""

    def __init__(self, reactor: Any, plug: SimPlug, host: str, port: int) -> None:
        self.reactor = reactor
        self.plug = plug
        self.host = host
        self.port = port
        self.attempts = 0
        self.running = False
        #: The pending connection attempt, if one is scheduled.
        self.retryCall: IDelayedCall | None = None

    def _endpoint(self) -> Any:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            # A name: resolved again on every attempt, as a plug looks up its server again.
            return endpoints.HostnameEndpoint(self.reactor, self.host, self.port, timeout=10)
        if address.version == 6:
            return endpoints.TCP6ClientEndpoint(self.reactor, self.host, self.port, timeout=10)
        return endpoints.TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=10)

    def start(self, delay: float = 0.0) -> None:
        """Start connecting (after C{delay} seconds)."""
        self.running = True
        self.retryCall = self.reactor.callLater(delay, self._connect)

    def stop(self) -> None:
        """Disconnect and stay disconnected."""
        self.running = False
        if self.retryCall is not None and self.retryCall.active():
            self.retryCall.cancel()
        if self.plug.protocol is not None and self.plug.protocol.transport is not None:
            self.plug.protocol.transport.abortConnection()

    def _connect(self) -> None:
        self.retryCall = None
        if not self.running:
            return
        factory = Factory.forProtocol(lambda: _RunnerProtocol(self))
        d = self._endpoint().connect(factory)
        d.addErrback(lambda f: self.connectionEnded())

    def connectionUpgraded(self) -> None:
        """The server accepted the upgrade: the next failure starts the backoff from the beginning."""
        self.attempts = 0

    def connectionEnded(self) -> None:
        """A connection failed or ended: schedule the next attempt after a longer jittered delay."""
        if not self.running:
            return
        self.attempts += 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** min(self.attempts, 10)) / max(self.plug.speed, 1.0)
        self.retryCall = self.reactor.callLater(random.uniform(0.5, 1.0) * delay + 0.05, self._connect)


class _RunnerProtocol(SimPlugProtocol):
    """A plug connection that reports its upgrade and its end to its runner."""

    def __init__(self, runner: PlugRunner) -> None:
        super().__init__(runner.plug, runner.host, runner.port)
        self.runner = runner

    def upgraded(self) -> None:
        """Reset the runner's backoff, then log in."""
        self.runner.connectionUpgraded()
        super().upgraded()

    def connectionLost(self, reason: Any = None) -> None:
        """Tell the plug, then the runner (which schedules a reconnect)."""
        super().connectionLost(reason)
        self.runner.connectionEnded()


class Simulator:
    """A set of simulated plugs against one server."""

    def __init__(self, reactor: Any, host: str, port: int, count: int = 1, *, firmware: str = "1.89",
                 speed: float = 1.0, load_w: float = 20.0, seed: str = "sim", start: int = 0,
                 onEvent: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.reactor = reactor
        self.runners: list[PlugRunner] = []
        for i in range(start, start + count):
            plug = SimPlug(reactor, plugId(seed, i), firmware=firmware, speed=speed, load_w=load_w,
                           relay=bool(i % 2 == 0), onEvent=onEvent)
            self.runners.append(PlugRunner(reactor, plug, host, port))

    @property
    def plugs(self) -> list[SimPlug]:
        """The simulated plugs, in order."""
        return [r.plug for r in self.runners]

    def start(self, spread: float = 0.0) -> None:
        """Connect every plug, spread evenly over C{spread} seconds."""
        n = max(len(self.runners), 1)
        for i, runner in enumerate(self.runners):
            runner.start(spread * i / n)

    def stop(self) -> None:
        """Disconnect every plug."""
        for runner in self.runners:
            runner.stop()

    def find(self, ref: str) -> SimPlug:
        """A plug by index or id prefix."""
        if ref.isdigit() and int(ref) < len(self.runners):
            return self.runners[int(ref)].plug
        for plug in self.plugs:
            if plug.id.startswith(ref):
                return plug
        raise KeyError(ref)
