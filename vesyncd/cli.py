"""
vesyncctl: control vesyncd from the command line (through its control port).

Exit codes: 0 done, 1 the command failed (unknown, ambiguous or offline plug, timeout, refused,
daemon not reachable), 2 usage error.  Errors go to standard error as one line.  C{--json} output
follows the schema of C{docs/control.md}; plain output is escaped for the terminal
(L{vesyncd.cli_format.printable}).

L{execute} runs one command line with an injectable C{connect}, so the commands are tested against
the real AMP server in memory; L{main} is the console entry point.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import sys
from typing import Any, Awaitable, Callable, TextIO

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionClosed
from twisted.protocols import amp

from vesyncd.auth import readToken
from vesyncd.cli_args import buildParser, locate, period
from vesyncd.cli_format import (
    energyCSV, formatEnergy, formatEvent, formatInfo, formatPending, formatPlug, formatPlugs, plugName,
    printable, printableLines)
from vesyncd.control.client import ControlClient, ControlConnectError, connect
from vesyncd.control.commands import ControlError

#: How a command gets a logged-in client: C{await connect(reactor, args)}.
Connector = Callable[[Any, argparse.Namespace], Awaitable[ControlClient]]


class CLIError(Exception):
    """The command failed; the message is printed on one line and the exit code is 1."""


class Output:
    """Where a command writes: plain text escaped for the terminal, JSON as ASCII-only JSON."""

    def __init__(self, out: TextIO, err: TextIO, asJSON: bool) -> None:
        self.out, self.err, self.asJSON = out, err, asJSON

    def text(self, text: str) -> None:
        """Write plain output (every line escaped, so no control character reaches the terminal)."""
        self.out.write(printableLines(text))
        self.out.flush()

    def json(self, doc: Any, indent: int | None = 2) -> None:
        """Write one JSON document; non-ASCII and control characters are JSON escapes."""
        separators = (",", ":") if indent is None else None
        self.out.write(json.dumps(doc, indent=indent, separators=separators, ensure_ascii=True) + "\n")
        self.out.flush()

    def show(self, doc: Any, plain: Callable[[Any], str]) -> None:
        """JSON with C{--json}, else the plain rendering of C{doc}."""
        if self.asJSON:
            self.json(doc)
        else:
            self.text(plain(doc))

    def note(self, text: str) -> None:
        """A line on standard error (warnings, progress), escaped."""
        self.err.write(f"vesyncctl: {printable(text)}\n")
        self.err.flush()


async def connectFromArgs(reactor: Any, args: argparse.Namespace) -> ControlClient:
    """A logged-in control client, or CLIError saying where we looked."""
    description, tokenFile = locate(args)
    try:
        token = readToken(tokenFile)
    except OSError as e:
        raise CLIError(f"cannot read the control token {tokenFile}: {e.strerror or e} (is vesyncd running with "
                       f"this state directory? use --state-dir or --token-file)") from None
    try:
        return await connect(reactor, description, token, ca=args.ca, fingerprint=args.fingerprint,
                             timeout=args.timeout)
    except ControlConnectError as e:
        raise CLIError(str(e) + ("" if "refused" in str(e) and "certificate" in str(e) else
                                 " (is vesyncd running? use --state-dir or --connect)")) from None


# --- commands on a connected client (each: async (client, args, output) -> exit code) -----------


async def cmdList(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{list}: every plug."""
    output.show(await client.listPlugs(), formatPlugs)
    return 0


async def cmdStatus(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{status PLUG} (and C{refresh PLUG}, which asks for fresh readings first)."""
    plug = await (client.refresh(args.plug) if args.command == "refresh" else client.getPlug(args.plug))
    output.show(plug, formatPlug)
    return 0


async def cmdSwitch(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{on}, C{off}, C{toggle}: answers once the plug confirmed."""
    plug = await client.switch(args.plug, args.command)
    output.show(plug, lambda p: f"{plugName(p)} is {p['relay']}\n")
    return 0


async def cmdRename(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{rename PLUG ALIAS}."""
    plug = await client.rename(args.plug, args.alias)
    output.show(plug, lambda p: f"{p['id']} is now called {p.get('alias') or '(no alias)'}\n")
    return 0


async def cmdForget(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{forget PLUG}."""
    plug = await client.forget(args.plug)
    output.show(plug, lambda p: f"forgot {plugName(p)}\n")
    return 0


async def cmdPowerOn(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{power-on PLUG POLICY}."""
    plug = await client.setPowerOn(args.plug, args.policy)
    output.show(plug, lambda p: f"{plugName(p)}: power-on {p.get('power_on') or 'none'}\n")
    return 0


async def cmdInfo(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{info}: the daemon's facts and counters."""
    output.show(await client.info(), formatInfo)
    return 0


async def cmdEnergy(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{energy PLUG}: one period's buckets as a table, CSV or JSON."""
    kind, value = period(args)
    plug = await client.getPlug(args.plug)
    history = await client.energy(plug["id"], kind, value)
    if args.csv and not output.asJSON:
        output.text(energyCSV(history))
    else:
        output.show(history, lambda h: formatEnergy(h, plug.get("alias") or plug["id"]))
    return 0


async def cmdPending(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{pending}: plugs held until approved."""
    answer = await client.pending()
    held, total = answer["pending"], answer["total"]
    output.show(held, formatPending)
    if total > len(held):
        output.note(f"{total - len(held)} more held plugs are not shown: approve some to see the rest")
    return 0


async def cmdApprove(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{approve PLUG}: accept a held plug."""
    plug = await client.approve(args.plug)
    output.show(plug, lambda p: f"approved {plugName(p)}\n")
    return 0


async def cmdClearConflict(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{clear-conflict PLUG}: the latest login is the plug itself (e.g. after a firmware update)."""
    plug = await client.clearConflict(args.plug)
    output.show(plug, lambda p: f"{plugName(p)}: conflict cleared; its latest login is now its identity\n")
    return 0


async def cmdWatch(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{watch}: one line (or JSON object) per event until the connection ends."""

    def show(event: dict[str, Any]) -> None:
        if output.asJSON:
            output.json(event, indent=None)
        else:
            output.text(formatEvent(event) + "\n")

    await client.watch(show)
    output.note("watching events (Ctrl-C stops)")
    await client.lost()
    raise CLIError("the connection to vesyncd was closed")


COMMANDS: dict[str, Callable[[ControlClient, argparse.Namespace, Output], Awaitable[int]]] = {
    "list": cmdList, "status": cmdStatus, "refresh": cmdStatus, "on": cmdSwitch, "off": cmdSwitch,
    "toggle": cmdSwitch, "rename": cmdRename, "forget": cmdForget, "power-on": cmdPowerOn, "info": cmdInfo,
    "energy": cmdEnergy, "pending": cmdPending, "approve": cmdApprove,
    "clear-conflict": cmdClearConflict, "watch": cmdWatch,
}


async def run(reactor: Any, args: argparse.Namespace, output: Output,
              connect: Connector = connectFromArgs) -> int:
    """Carry out one parsed command; returns the exit code (errors raise CLIError or ControlError)."""
    if args.command == "provision":
        return await runProvision(reactor, args, output, connect)
    if args.command == "doctor":
        return await runDoctor(reactor, args, output, connect)
    client = await connect(reactor, args)
    try:
        return await COMMANDS[args.command](client, args, output)
    finally:
        client.close()


async def execute(reactor: Any, argv: list[str] | None, out: TextIO | None = None, err: TextIO | None = None,
                  connect: Connector = connectFromArgs) -> int:
    """Run one vesyncctl command line; returns its exit code, errors written to C{err} as one line."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        args = buildParser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage error
        return e.code if isinstance(e.code, int) else 2
    output = Output(out, err, args.json)
    try:
        return await run(reactor, args, output, connect)
    except (CLIError, ControlError) as e:
        output.note(str(e))
        return 1
    except ConnectionClosed:
        output.note("the connection to vesyncd was closed before it answered")
        return 1
    except amp.RemoteAmpError as e:  # an error the daemon sent that this vesyncctl does not know
        output.note(f"vesyncd refused: {e}")
        return 1


# --- commands that reach more than the control port ---------------------------------------------


async def runDoctor(reactor: Any, args: argparse.Namespace, output: Output, connect: Connector) -> int:
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
    dnsOff = False
    try:
        # Ask the running daemon where its DNS responder listens (or whether it has one).
        info = await status()
        listen = info.get("dns_listen")
        if listen:
            host = "127.0.0.1" if listen[0] in ("0.0.0.0", "") else listen[0]
            probes.responder = (host, int(listen[1]))
        dnsOff = "dns_listen" in info and not listen
    except Exception:
        pass  # the daemon check below reports why it is unreachable
    try:
        checks = await doctor.runDoctor(probes)
    finally:
        for c in clients:
            c.close()
    if dnsOff:
        checks = [doctor.Check(c.name, doctor.Level.WARN, "vesyncd's DNS responder is off (--no-dns)",
                               "fine when the router or provisioning sends plugs here")
                  if c.name == "dns vesyncd responder" else c for c in checks]
    if output.asJSON:
        output.json(doctor.checksToJSON(checks))
    else:
        output.text(doctor.formatChecks(checks))
    return doctor.exitCode(checks)


async def runProvision(reactor: Any, args: argparse.Namespace, output: Output, connect: Connector) -> int:
    """C{vesyncctl provision}: send Wi-Fi settings to a plug in setup mode."""
    from vesyncd.setup import client as P

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
        output.text(f"{P.describeReply(reply)}; it will connect to vesyncd at {serverIP}:17273.\n"
                    "Next: rejoin your own Wi-Fi; the plug will appear in `vesyncctl list` within a minute.\n")
    return 0


def _isLoopbackHost(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> None:
    """Run vesyncctl and exit with its code."""

    async def go(reactor: Any) -> None:
        code = await execute(reactor, argv)
        if code:
            raise SystemExit(code)

    def start(reactor: Any) -> Deferred:
        return ensureDeferred(go(reactor))

    task.react(start)


if __name__ == "__main__":  # pragma: no cover - `python -m vesyncd.cli`
    main()
