"""
vesyncctl's energy commands and C{status}: C{energy PLUG [--cost]}, C{cost}, C{export}, C{history}, and
a plug's status with its energy, cost, always-on baseline and automation when the daemon has them.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any, Awaitable

from twisted.protocols import amp

from vesyncd.cli.args import period
from vesyncd.cli.formatting import energyCSV, formatEnergy, formatPlug, plugName
from vesyncd.escape import printable
from vesyncd.cli.formatting_features import automationFields, energyFields, formatCostTable, formatSwitches
from vesyncd.cli.output import EXIT_USAGE, CLIError, Output
from vesyncd.control import commands as c
from vesyncd.control.client import ControlClient


async def optional(client: ControlClient, method: str, *args: Any) -> Any:
    """C{client.method(*args)}, or None when the client or the daemon does not offer it (a daemon
    without automation or energy insight, or one older than this vesyncctl)."""
    call = getattr(client, method, None)
    if call is None:
        return None
    try:
        result: Awaitable[Any] = call(*args)
        return await result
    except c.Refused:
        return None
    except amp.RemoteAmpError as e:
        if e.errorCode == amp.UNHANDLED_ERROR_CODE:
            return None
        raise


async def cmdStatus(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{status PLUG}: the plug, its energy and cost by period, its always-on power and its automation
    (C{refresh PLUG} asks for fresh readings and shows the plug alone)."""
    if args.command == "refresh":
        output.show(await client.refresh(args.plug), formatPlug)
        return 0
    plug = await client.getPlug(args.plug)
    summary = await optional(client, "energySummary", plug["id"])
    automation = await optional(client, "automation", plug["id"])
    doc = dict(plug)
    if summary is not None:
        doc["energy"], doc["baseline"] = summary.get("periods") or {}, summary.get("baseline") or {}
    if automation is not None:
        doc["automation"] = automation

    def plain(d: dict[str, Any]) -> str:
        fields: list[tuple[str, str]] = []
        if summary is not None:
            fields += energyFields(d["energy"], d["baseline"])
        if automation is not None:
            fields += automationFields(automation)
        return formatPlug(plug) + "".join(f"{k + ':':<12}{printable(v)}\n" for k, v in fields)

    output.show(doc, plain)
    return 0


async def cmdEnergy(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{energy PLUG}: one period's buckets as a table, CSV or JSON (with C{--cost}, priced)."""
    kind, value = period(args)
    plug = await client.getPlug(args.plug)
    if args.cost:
        history = await client.pricedEnergy(plug["id"], kind, value)
    else:
        history = await client.energy(plug["id"], kind, value)
    if args.csv and not output.asJSON:
        output.text(energyCSV(history))
    else:
        output.show(history, lambda h: formatEnergy(h, plug.get("alias") or plug["id"]))
    return 0


async def cmdCost(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{cost [--month M]}: every plug's energy and cost in a month, largest first, with a total."""
    output.show(await client.costTable(args.month), formatCostTable)
    return 0


async def cmdExport(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{export PLUG --from D --to D}: hourly energy (and cost) as CSV, the time zone in the header."""
    first, last = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if last < first:
        raise CLIError("--to: the last day comes before --from", "usage", EXIT_USAGE)
    if (last - first).days > 3660:
        raise CLIError("--to: export at most ten years at once", "usage", EXIT_USAGE)
    plug = await client.getPlug(args.plug)
    text = await client.export(plug["id"], first, last)
    lines = text.splitlines()
    if output.asJSON:
        output.json({"plug": plug["id"], "from": args.start, "to": args.end, "csv": text})
    else:
        output.text("".join(line + "\n" for line in lines))
    return 0


async def cmdHistory(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{history PLUG}: the latest switches, newest first, each with what made it."""
    if not 1 <= args.limit <= c.MAX_HISTORY:
        raise CLIError(f"--limit: 1 to {c.MAX_HISTORY}", "usage", EXIT_USAGE)
    plug = await client.getPlug(args.plug)
    switches = await client.switchHistory(plug["id"], args.limit)
    output.show(switches, lambda s: formatSwitches(s, plugName(plug)))
    return 0


COMMANDS = {"status": cmdStatus, "refresh": cmdStatus, "energy": cmdEnergy, "cost": cmdCost,
            "export": cmdExport, "history": cmdHistory}
