"""
The simulator's setup mode (C{vesyncd-sim --setup-mode}): a factory-reset plug waiting for the app.

It listens for one C{/beginConfigRequest} (see L{vesyncd.setup.client.SetupModeFactory}), answers it,
stops listening, and then connects to the C{serverIP} it was given and logs in like any plug.
"""

from __future__ import annotations

import argparse

import sys
from typing import Any, Callable

from twisted.logger import Logger

from vesyncd.setup.request import parsePlugAddress
from vesyncd.setup.plugside import SetupModeFactory
from vesyncd.sim.runner import Simulator

log = Logger()

CONNECT_INFO_2123 = {"url": "/connectInfo", "step": "STEP3", "description": "DEV_RECEIVE_APP_DATA",
                     "firmVersion": "2.123", "free_heap": 30616}


class SetupModePlug:
    """One simulated plug in setup mode; after provisioning it runs as a normal simulated plug."""

    def __init__(self, reactor: Any, *, firmware: str = "1.89", serverPort: int = 17273, speed: float = 1.0,
                 seed: str = "setup", load_w: float = 20.0,
                 onEvent: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.reactor = reactor
        self.firmware = firmware
        self.serverPort = serverPort
        self.speed = speed
        self.seed = seed
        self.load_w = load_w
        self.onEvent = onEvent
        self.port: Any = None
        self.sim: Simulator | None = None
        reply = dict(CONNECT_INFO_2123) if firmware.startswith("2.") else None
        self.factory = SetupModeFactory(self._configured, reply=reply, nulTerminated=reply is not None,
                                        reactor=reactor)

    def listen(self, host: str, port: int) -> Any:
        """Listen for the app's request on C{host:port}; returns the listening port."""
        self.port = self.reactor.listenTCP(port, self.factory, interface=host)
        return self.port

    def _configured(self, request: dict[str, Any]) -> None:
        server = request["serverIP"]
        log.info("sim plug provisioned for Wi-Fi {ssid!r}; connecting to {server}:{port}",
                 ssid=request.get("wifiID"), server=server, port=self.serverPort)
        if self.onEvent is not None:
            self.onEvent({"event": "provisioned", "server": server, "ssid": request.get("wifiID")})
        if self.port is not None:
            self.port.stopListening()
        self.sim = Simulator(self.reactor, server, self.serverPort, 1, firmware=self.firmware, speed=self.speed,
                             seed=self.seed, load_w=self.load_w, onEvent=self.onEvent)
        self.sim.start()


def runSetupMode(reactor: Any, args: argparse.Namespace, out: Callable[[dict[str, Any]], None]) -> int:
    """Run C{vesyncd-sim --setup-mode} until interrupted."""
    try:
        host, port = parsePlugAddress(args.listen)
    except ValueError as e:
        sys.stderr.write(f"vesyncd-sim: --listen {args.listen!r}: {e}\n")
        return 2
    plug = SetupModePlug(reactor, firmware=args.firmware, serverPort=args.server_port, speed=args.speed,
                         seed=args.seed, load_w=args.load, onEvent=out)
    listening = plug.listen(host, port)
    address = listening.getHost()
    out({"event": "setup_mode", "listen": f"{address.host}:{address.port}"})
    log.info("sim plug in setup mode on {host}:{port}", host=address.host, port=address.port)
    reactor.run()
    return 0



