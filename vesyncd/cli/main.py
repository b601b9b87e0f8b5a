"""
vesyncctl: control vesyncd from the command line (through its control port).

Exit codes: 0 done, 1 the command failed (unknown, ambiguous or offline plug, timeout, refused,
daemon not reachable), 2 usage error.  Errors go to standard error as one line, or with C{--json} as
C{{"error": {"code", "message"}}} on standard output.  C{--json} output follows the schema of
C{docs/control.md}; plain output is escaped for the terminal (L{vesyncd.escape.printable}).

L{execute} runs one command line with an injectable C{connect}, so the commands are tested against
the real AMP server in memory; L{main} is the console entry point.  The automation commands live in
L{vesyncd.cli.automation}, the energy ones and C{status} in L{vesyncd.cli.energy}.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Awaitable, Callable, TextIO

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionClosed
from twisted.protocols import amp

from vesyncd.cli import automation as cli_automation
from vesyncd.cli import cluster as cli_cluster
from vesyncd.cli import energy as cli_energy
from vesyncd.cli import migrate as cli_migrate
from vesyncd.auth import readToken
from vesyncd.cli.args import UsageProblem, buildParser, locate
from vesyncd.cli.formatting import formatEvent, formatInfo, formatPending, formatPlugs, plugName
from vesyncd.cli.completion import completionScript
from vesyncd.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CLIError, Output
from vesyncd.cli.setup_commands import runDoctor, runProvision
from vesyncd.control.client import ControlClient, ControlConnectError, connect
from vesyncd.control.commands import ControlError

__all__ = ["CLIError", "Output", "execute", "main"]

#: How a command gets a logged-in client: C{await connect(reactor, args)}.
Connector = Callable[[Any, argparse.Namespace], Awaitable[ControlClient]]


async def connectFromArgs(reactor: Any, args: argparse.Namespace) -> ControlClient:
    """A logged-in control client, or CLIError saying where we looked."""
    description, tokenFile = locate(args)
    try:
        token = readToken(tokenFile)
    except OSError as e:
        raise CLIError(f"cannot read the control token {tokenFile}: {e.strerror or e} (is vesyncd running with "
                       f"this state directory? use --state-dir or --token-file)", "unreachable") from None
    try:
        return await connect(reactor, description, token, ca=args.ca, fingerprint=args.fingerprint,
                             timeout=args.timeout)
    except ControlConnectError as e:
        raise CLIError(str(e) + ("" if "refused" in str(e) and "certificate" in str(e) else
                                 " (is vesyncd running? use --state-dir or --connect)"), "unreachable") from None


# --- commands on a connected client (each: async (client, args, output) -> exit code) -----------


async def cmdList(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{list}: every plug (with C{--names}, only their names, one a line: for shell completion)."""
    plugs = await client.listPlugs()
    if args.names:
        names = [p.get("alias") or p["id"] for p in plugs]
        output.show(names, lambda ns: "".join(f"{n}\n" for n in ns))
    else:
        output.show(plugs, formatPlugs)
    return 0


async def cmdRename(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{rename PLUG ALIAS}: named as before the change (its alias, else its id), like every message."""
    before = plugName(await client.getPlug(args.plug))
    plug = await client.rename(args.plug, args.alias)
    output.show(plug, lambda p: f"{before} is now called {plugName(p)}\n" if p.get("alias")
                else f"{before} has no alias now; its id is {plugName(p)}\n")
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


async def cmdWatch(client: ControlClient, args: argparse.Namespace, output: Output, reactor: Any = None) -> int:
    """C{watch}: one line (or JSON object) per event until the connection ends; a user stopping it
    (Ctrl-C or SIGTERM, which shut the reactor down) ends it quietly with exit code 0."""
    stopping: list[bool] = []

    def stop() -> None:
        stopping.append(True)
        client.close()

    # Before the reactor's own shutdown closes the connection, so the loss is known to be ours.
    addTrigger = getattr(reactor, "addSystemEventTrigger", None)
    trigger = addTrigger("before", "shutdown", stop) if addTrigger is not None else None

    def show(event: dict[str, Any]) -> None:
        if output.asJSON:
            output.json(event, indent=None)
        else:
            output.text(formatEvent(event) + "\n")

    try:
        await client.watch(show)
        output.note("watching events (Ctrl-C stops)")
        await client.lost()
    finally:
        if trigger is not None and not stopping:
            reactor.removeSystemEventTrigger(trigger)
    if stopping:
        return EXIT_OK
    raise CLIError("the connection to vesyncd was closed", "closed")


COMMANDS: dict[str, Callable[[ControlClient, argparse.Namespace, Output], Awaitable[int]]] = {
    "list": cmdList, "on": cli_automation.cmdSwitch, "off": cli_automation.cmdSwitch,
    "toggle": cli_automation.cmdSwitch, "rename": cmdRename, "forget": cmdForget, "power-on": cmdPowerOn,
    "info": cmdInfo, "pending": cmdPending, "approve": cmdApprove, "clear-conflict": cmdClearConflict,
    **cli_automation.COMMANDS, **cli_energy.COMMANDS, **cli_cluster.COMMANDS,
}


async def run(reactor: Any, args: argparse.Namespace, output: Output,
              connect: Connector = connectFromArgs) -> int:
    """Carry out one parsed command; returns the exit code (errors raise CLIError or ControlError)."""
    if args.command == "provision":
        return await runProvision(reactor, args, output, connect)
    if args.command == "doctor":
        return await runDoctor(reactor, args, output, connect)
    if args.command == "migrate":
        return cli_migrate.runMigrate(args, output)
    if args.command == "completion":
        output.out.write(completionScript(args.shell))
        return EXIT_OK
    client = await connect(reactor, args)
    try:
        if args.command == "watch":
            return await cmdWatch(client, args, output, reactor)
        return await COMMANDS[args.command](client, args, output)
    finally:
        client.close()


def _wantsJSON(argv: list[str]) -> bool:
    """Whether a command line asks for JSON output (before it is parsed: its usage errors are JSON too)."""
    return "--json" in argv or os.environ.get("VESYNCD_JSON", "") not in ("", "0")


async def execute(reactor: Any, argv: list[str] | None, out: TextIO | None = None, err: TextIO | None = None,
                  connect: Connector = connectFromArgs) -> int:
    """Run one vesyncctl command line; returns its exit code, errors written to C{err} as one line (or
    with C{--json} as C{{"error": {"code", "message"}}} to C{out})."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = buildParser().parse_args(argv)
    except UsageProblem as e:
        Output(out, err, _wantsJSON(argv)).error("usage", str(e), e.usage)
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version have printed what was asked
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    output = Output(out, err, args.json)
    try:
        return await run(reactor, args, output, connect)
    except CLIError as e:
        output.error(e.code, str(e))
        return e.exitCode
    except ControlError as e:
        output.error(e.code, str(e))
        return EXIT_USAGE if e.code == "usage" else EXIT_FAILED
    except ConnectionClosed:
        output.error("closed", "the connection to vesyncd was closed before it answered")
        return EXIT_FAILED
    except amp.RemoteAmpError as e:  # an error the daemon sent that this vesyncctl does not know
        output.error("failed", f"vesyncd refused: {e}")
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    """Run vesyncctl and exit with its code."""

    async def go(reactor: Any) -> None:
        code = await execute(reactor, argv)
        if code:
            raise SystemExit(code)

    def start(reactor: Any) -> Deferred:
        return ensureDeferred(go(reactor))

    task.react(start)


if __name__ == "__main__":  # pragma: no cover - `python -m vesyncd.cli.main`
    main()
