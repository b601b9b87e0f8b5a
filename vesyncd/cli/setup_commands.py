"""
vesyncctl's commands that reach more than the control port: C{doctor} (the daemon and the network)
and C{provision} (a plug in setup mode).
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
from typing import Any

from twisted.internet.defer import ensureDeferred

from vesyncd.cli.output import CLIError, Output
from vesyncd.control.client import ControlClient


async def runDoctor(reactor: Any, args: argparse.Namespace, output: Output, connect: Any) -> int:
    """C{vesyncctl doctor}: the doctor's probes, with the daemon reached through the control port."""
    from vesyncd.doctor import checks as doctor
    from vesyncd.doctor import probes as doctor_probes

    clients: list[ControlClient] = []

    async def client() -> ControlClient:
        if not clients:
            clients.append(await connect(reactor, args))
        return clients[0]

    async def status() -> Any:
        return await (await client()).info()

    async def plugs() -> Any:
        return await (await client()).listPlugs()

    async def pending() -> Any:
        return await (await client()).pending()

    probes = doctor_probes.SystemProbes(reactor, daemonStatus=lambda: ensureDeferred(status()),
                                        plugs=lambda: ensureDeferred(plugs()),
                                        pending=lambda: ensureDeferred(pending()))
    try:
        # Ask the running daemon where its DNS responder listens, so the probes may query it there
        # (the doctor itself judges a responder that is off or on another port).
        info = await status()
        listen = info.get("dns_listen")
        if listen:
            host = "127.0.0.1" if listen[0] in ("0.0.0.0", "") else listen[0]
            probes.responder = (host, int(listen[1]))
    except Exception:
        pass  # the daemon check below reports why it is unreachable
    try:
        checks = await doctor.runDoctor(probes)
    finally:
        for c in clients:
            c.close()
    if output.asJSON:
        output.json(doctor.checksToJSON(checks))
    else:
        output.text(doctor.formatChecks(checks))
    return doctor.exitCode(checks)


async def runProvision(reactor: Any, args: argparse.Namespace, output: Output, connect: Any) -> int:
    """C{vesyncctl provision}: send Wi-Fi settings to a plug in setup mode."""
    from vesyncd.setup import client as P
    from vesyncd.setup.codec import describeReply

    serverIP = args.server_ip
    if not serverIP:
        client = await connect(reactor, args)
        try:
            info = await client.info()
        finally:
            client.close()
        serverIP = info.get("address")
        if not serverIP:
            raise CLIError("the daemon does not know its LAN address: give --server-ip IP")
    try:
        password = args.password if args.password is not None else getpass.getpass("Wi-Fi password: ")
        request = P.buildConfigRequest(args.ssid, password, serverIP, dns=args.dns)
        host, port = P.parsePlugAddress(args.plug_address or f"{P.SETUP_HOST}:{P.SETUP_PORT}")
        if ipaddress.ip_address(serverIP).is_loopback and not _isLoopbackHost(host):
            output.note(f"warning: --server-ip {serverIP} is this machine's loopback address; "
                        "a real plug cannot reach it (give the LAN address)")
        reply = await P.provision(reactor, host, port, request, args.provision_timeout)
    except P.ProvisionError as e:
        raise CLIError(f"provisioning failed: {e}") from None
    if output.asJSON:
        output.json({"reply": reply, "server_ip": serverIP})
    else:
        output.text(f"{describeReply(reply)}; it will connect to vesyncd at {serverIP}:17273.\n"
                    "Next: rejoin your own Wi-Fi; the plug will appear in `vesyncctl list` within a minute.\n")
    return 0


def _isLoopbackHost(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
