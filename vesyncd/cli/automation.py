"""
vesyncctl's automation commands: C{on|off|toggle PLUG --for D}, C{timer}, C{schedule ...}, C{away} and
C{rule ...}.  Each is C{async (client, args, output) -> exit code}; errors are the daemon's (a
L{UsageError} naming the option, exit 2; L{Refused}, exit 1).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from vesyncd.cli.formatting import displayNames, plugName
from vesyncd.escape import printable
from vesyncd.cli.formatting_features import (
    awayText, formatRules, localTime, formatSchedules, ruleWhen, scheduleWhen, timerText)
from vesyncd.cli.output import EXIT_USAGE, CLIError, Output
from vesyncd.control.client import ControlClient


async def plugNames(client: ControlClient) -> dict[str, str]:
    """Every plug's id and the name to show (its alias, else its id; with a short id when ambiguous)."""
    return displayNames(await client.listPlugs())


async def cmdSwitch(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{on}, C{off}, C{toggle}: answers once the plug confirmed; with C{--for}, sets the switch back."""
    if not getattr(args, "duration", None):
        plug = await client.switch(args.plug, args.command)
        output.show(plug, lambda p: f"{plugName(p)} is {p['relay']}\n")
        return 0
    answer = await client.switchFor(args.plug, args.command, args.duration)
    output.show(answer, lambda a: f"{plugName(a['plug'])} is {a['plug']['relay']}; "
                                  f"{timerText(a['timer'])}\n")
    return 0


async def cmdTimer(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{timer PLUG [--cancel]}: the pending countdown, or cancel it."""
    plug = await client.getPlug(args.plug)
    name = plugName(plug)
    if args.cancel:
        cancelled = await client.cancelTimer(plug["id"])
        output.show({"plug": plug["id"], "cancelled": cancelled},
                    lambda d: f"{name}: countdown cancelled\n" if cancelled else f"{name}: no countdown to cancel\n")
        return 0
    timer = await client.timer(plug["id"])
    output.show(timer, lambda t: f"{name}: countdown {timerText(t)}\n")
    return 0


def _scheduleLine(schedule: dict[str, Any], name: str) -> str:
    """One schedule on one line: C{s3fa9c1: Kettle on at 18:30 mon,tue (next 2026-12-02 18:30)}."""
    state = "" if schedule.get("enabled") else ", disabled"
    nxt = schedule.get("next")
    return (f"{printable(schedule.get('id'))}: {printable(name)} {printable(schedule.get('switch'))} at "
            f"{printable(scheduleWhen(schedule))}" + (f" (next {localTime(nxt)}{state})"
                                                      if nxt else f" (not planned{state})"))


async def cmdSchedule(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{schedule add|list|rm|enable|disable}."""
    action = args.action
    if action == "list":
        return await _listItems(client, args, output, client.schedules, "schedules", formatSchedules)
    if action == "add":
        plug = await client.getPlug(args.plug)
        schedule = await client.addSchedule(plug["id"], args.switch, args.at, args.days, args.once)
        output.show(schedule, lambda s: "added " + _scheduleLine(s, plug.get("alias") or plug["id"]) + "\n")
        return 0
    if action == "rm":
        schedule = await client.removeSchedule(args.id)
    else:
        schedule = await client.enableSchedule(args.id, action == "enable")
    return await _changed(client, output, action, schedule, _scheduleLine)


async def _listItems(client: ControlClient, args: argparse.Namespace, output: Output,
                     fetch: Callable[[str | None], Any], key: str,
                     formatter: Callable[[list[dict[str, Any]], dict[str, str]], str]) -> int:
    """C{schedule list} / C{rule list}: one plug's items, or everyone's, with a note when some are cut."""
    plug = await client.getPlug(args.plug) if args.plug else None
    answer = await fetch(plug["id"] if plug else None)
    names = {plug["id"]: plug.get("alias") or plug["id"]} if plug else await plugNames(client)
    output.show(answer[key], lambda items: formatter(items, names))
    if answer["total"] > len(answer[key]):
        output.note(f"{answer['total'] - len(answer[key])} more {key} are not shown: name a plug")
    return 0


async def _changed(client: ControlClient, output: Output, action: str, item: dict[str, Any],
                   line: Callable[[dict[str, Any], str], str]) -> int:
    """Say which schedule or rule was removed, enabled or disabled, naming its plug."""
    names = await plugNames(client)
    verb = {"rm": "removed", "enable": "enabled", "disable": "disabled"}[action]
    output.show(item, lambda i: f"{verb} " + line(i, names.get(i.get("plug"), i.get("plug"))) + "\n")
    return 0


async def cmdAway(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{away PLUG --from HH:MM --to HH:MM}, C{away PLUG --off}, or C{away PLUG} to see it."""
    if args.off and (args.start or args.end):
        raise CLIError("--off: give either --off or --from and --to", "usage", EXIT_USAGE)
    if bool(args.start) != bool(args.end):
        missing = "--to" if args.start else "--from"
        raise CLIError(f"{missing}: away mode needs both --from and --to (or --off)", "usage", EXIT_USAGE)
    plug = await client.getPlug(args.plug)
    name = plugName(plug)
    if args.off:
        stopped = await client.awayOff(plug["id"])
        output.show({"plug": plug["id"], "stopped": stopped},
                    lambda d: f"{name}: away mode " + ("stopped\n" if stopped else "was not on\n"))
        return 0
    if args.start:
        away = await client.setAway(plug["id"], args.start, args.end)
    else:
        away = (await client.automation(plug["id"])).get("away")
    output.show(away, lambda a: f"{name}: away mode {awayText(a)}\n")
    return 0


def _ruleLine(rule: dict[str, Any], name: str) -> str:
    """One rule on one line: C{r08b2de: Heater above 2000 W for 1 min: off (idle)}."""
    return (f"{printable(rule.get('id'))}: {printable(name)} {ruleWhen(rule)}: {printable(rule.get('then'))} "
            f"({printable(rule.get('state'))})")


async def cmdRule(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{rule add|list|rm|enable|disable}."""
    action = args.action
    if action == "list":
        return await _listItems(client, args, output, client.rules, "rules", formatRules)
    if action == "add":
        plug = await client.getPlug(args.plug)
        when, watts = next((w, v) for w, v in (("above", args.above), ("below", args.below),
                                               ("done_below", args.done_below)) if v is not None)
        rule = await client.addRule(plug["id"], when, watts, args.duration, args.then)
        output.show(rule, lambda r: "added " + _ruleLine(r, plug.get("alias") or plug["id"]) + "\n")
        return 0
    if action == "rm":
        rule = await client.removeRule(args.id)
    else:
        rule = await client.enableRule(args.id, action == "enable")
    return await _changed(client, output, action, rule, _ruleLine)


COMMANDS = {"timer": cmdTimer, "schedule": cmdSchedule, "away": cmdAway, "rule": cmdRule}
