"""
vesyncctl's automation commands on the command line: C{timer}, C{schedule}, C{away} and C{rule}.

Times, durations, days, dates and watts are passed to the daemon as typed: its automation engine
parses them and names the option in any error, so every front end refuses the same input the same way.
"""

from __future__ import annotations

from typing import Any

from vesyncd.cli.parsing import PLUG_COMPLETION, Commands, plugArg


def addFeatureCommands(commands: Commands) -> None:
    """Add C{timer}, C{schedule ...}, C{away} and C{rule ...} to vesyncctl's commands."""
    timer = commands.add_parser("timer", help="a plug's countdown (set one with `on PLUG --for 30m`)")
    plugArg(timer)
    timer.add_argument("--cancel", action="store_true", help="cancel the countdown")

    schedule = commands.group("schedule", "action", help="switch plugs at set times: add, list, rm, enable, disable")
    add = schedule.add_parser("add", help="switch a plug on or off at a time of day or at sunrise/sunset")
    plugArg(add)
    add.add_argument("switch", choices=["on", "off"])
    add.add_argument("--at", required=True, metavar="TIME",
                     help="HH:MM[:SS], sunrise or sunset with an offset (sunset-30m, sunrise+1h)")
    when = add.add_mutually_exclusive_group()
    when.add_argument("--days", help="mon,tue,... or mon-fri, weekdays, weekends, daily (default)")
    when.add_argument("--once", metavar="YYYY-MM-DD", help="run once, on this date")
    listing = schedule.add_parser("list", help="schedules, soonest first")
    _optionalPlug(listing)
    for name, text in [("rm", "remove a schedule"), ("enable", "enable a schedule"),
                       ("disable", "disable a schedule (it stays listed)")]:
        schedule.add_parser(name, help=text).add_argument("id", help="the schedule's id (s......)")

    away = commands.add_parser("away", help="switch a plug on and off at random in an evening window")
    plugArg(away)
    away.add_argument("--from", dest="start", metavar="HH:MM", help="window start")
    away.add_argument("--to", dest="end", metavar="HH:MM", help="window end (before --from: past midnight)")
    away.add_argument("--off", action="store_true", help="stop away mode")

    rule = commands.group("rule", "action", help="act on a plug's power: add, list, rm, enable, disable")
    add = rule.add_parser("add", help="switch off (or on, or notify) when the power stays above or below a level")
    plugArg(add)
    level = add.add_mutually_exclusive_group(required=True)
    level.add_argument("--above", metavar="WATTS", help="when the power stays above WATTS")
    level.add_argument("--below", metavar="WATTS", help="when the power stays below WATTS")
    level.add_argument("--done-below", metavar="WATTS",
                       help="an appliance's cycle finished: it ran, then stayed below WATTS (notifies)")
    add.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="how long: 90s, 3m, 1h")
    add.add_argument("--then", choices=["off", "on", "notify"],
                     help="what to do (default: off; notify for --done-below)")
    listing = rule.add_parser("list", help="rules in the order they were added")
    _optionalPlug(listing)
    for name, text in [("rm", "remove a rule"), ("enable", "enable a rule"), ("disable", "disable a rule")]:
        rule.add_parser(name, help=text).add_argument("id", help="the rule's id (r......)")


def _optionalPlug(parser: Any) -> None:
    """An optional PLUG argument (all plugs when left out)."""
    parser.add_argument("plug", nargs="?", help="only this plug").complete = PLUG_COMPLETION
