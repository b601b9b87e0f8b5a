"""Simulated plugs run inside the daemon for demos (C{--demo-plugs N}, used by C{make run})."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.logger import Logger

from vesyncd.service import ListenerService
from vesyncd.sim.runner import Simulator

log = Logger()


class DemoPlugs(service.Service):
    """Connects N simulated plugs to the daemon's own plug listener once it listens."""

    def __init__(self, reactor: Any, listener: ListenerService, count: int) -> None:
        self.reactor = reactor
        self.listener = listener
        self.count = count
        self.sim: Simulator | None = None

    def startService(self) -> None:
        service.Service.startService(self)
        self.listener.listening.addCallback(self._start)

    def _start(self, port: Any) -> Any:
        address = port.getHost()
        host = "127.0.0.1" if address.host in ("0.0.0.0", "") else address.host
        if host == "::":
            host = "::1"
        self.sim = Simulator(self.reactor, host, address.port, self.count, seed="demo", speed=1.0)
        self.sim.start(spread=1.0)
        log.info("started {n} simulated demo plug(s) against {host}:{port}", n=self.count, host=host,
                 port=address.port)
        return port

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self.sim is not None:
            self.sim.stop()
