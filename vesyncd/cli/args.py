"""
vesyncctl's command line: its options, commands and where it looks for the daemon.

Options common to every command are accepted before and after the command name
(C{vesyncctl --json list} and C{vesyncctl list --json}); environment variables give their defaults.
Each command's C{--help} lists its own arguments first and the global options once, at the end.
A usage error raises L{UsageProblem} instead of exiting, so the caller can answer it as JSON.
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn

from vesyncd import __version__, paths
from vesyncd.cli import cluster as cli_cluster
from vesyncd.cli import migrate as cli_migrate
from vesyncd.cli.args_features import addFeatureCommands
from vesyncd.cli.parsing import Commands, plugArg

class UsageProblem(Exception):
    """A usage error (exit code 2); C{usage} is the usage line of the parser that found it."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """An argument parser that raises L{UsageProblem} rather than printing and exiting on an error."""

    def error(self, message: str) -> NoReturn:
        """Raise the error for the caller to show (as text or as JSON)."""
        raise UsageProblem(message, self.format_usage())


def _addCommonOptions(p: Any, defaults: dict[str, Any] | None, timeout: bool = True) -> None:
    """The options every command takes; with C{defaults} None they leave earlier values alone."""

    def d(name: str) -> Any:
        return argparse.SUPPRESS if defaults is None else defaults[name]

    p.add_argument("--connect", default=d("connect"),
                   help="control endpoint: unix:PATH, ssl:HOST:PORT, tcp:HOST:PORT (env VESYNCD_CONNECT; "
                        "default: the socket in the state directory)")
    p.add_argument("--token-file", default=d("token_file"),
                   help="file with the control token (env VESYNCD_TOKEN_FILE; default: in the state directory)")
    p.add_argument("--state-dir", default=d("state_dir"), help="the daemon's --state-dir (env VESYNCD_STATE_DIR)")
    p.add_argument("--json", action="store_true", default=d("json"),
                   help="JSON output, see docs/control.md (env VESYNCD_JSON=1)")
    p.add_argument("--ca", default=d("ca"), help="CA certificate (PEM) that signed the daemon's TLS certificate")
    p.add_argument("--fingerprint", default=d("fingerprint"),
                   help="pinned SHA-256 fingerprint of the daemon's TLS certificate")
    if timeout:
        p.add_argument("--timeout", type=float, default=d("timeout"),
                       help="seconds to wait for the daemon (default 10)")


# --- dates as users write them ---------------------------------------------------------------------


def dayArg(text: str, today: date | None = None) -> str:
    """C{YYYY-MM-DD}, C{today} or C{yesterday} as an ISO date; argparse reports anything else (exit 2)."""
    today = today or date.today()
    words = {"today": today, "yesterday": today - timedelta(days=1)}
    if text in words:
        return words[text].isoformat()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a date: YYYY-MM-DD, today or yesterday")


def monthArg(text: str, today: date | None = None) -> str:
    """C{YYYY-MM}, C{this-month} or C{last-month} as C{YYYY-MM}; argparse reports anything else (exit 2)."""
    today = today or date.today()
    if text == "this-month":
        return today.strftime("%Y-%m")
    if text == "last-month":
        return (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    if re.fullmatch(r"\d{4}-\d{2}", text) and 1 <= int(text[5:]) <= 12 and int(text[:4]) >= 1:
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a month: YYYY-MM, this-month or last-month")


def yearArg(text: str, today: date | None = None) -> str:
    """C{YYYY}, C{this-year} or C{last-year}; argparse reports anything else (exit 2)."""
    today = today or date.today()
    words = {"this-year": today.year, "last-year": today.year - 1}
    if text in words:
        return str(words[text])
    if re.fullmatch(r"\d{4}", text) and int(text) >= 1:
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a year: YYYY, this-year or last-year")


# --- the parser -----------------------------------------------------------------------------------------------------------------------------------------------------------------------


def buildParser() -> Parser:
    """The command line of vesyncctl."""
    env = os.environ
    p = Parser(prog="vesyncctl", description="Control vesyncd, the local VeSync plug server.")
    p.add_argument("--version", action="version", version=f"vesyncctl {__version__}")
    _addCommonOptions(p, {
        "connect": env.get("VESYNCD_CONNECT"), "token_file": env.get("VESYNCD_TOKEN_FILE"),
        "state_dir": env.get("VESYNCD_STATE_DIR"), "json": env.get("VESYNCD_JSON", "") not in ("", "0"),
        "ca": None, "fingerprint": None, "timeout": 10.0,
    })
    commands = Commands(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    sub = commands
    sub.add_parser("list", help="all plugs").add_argument(
        "--names", action="store_true", help="only the plugs' names (alias, else id), one a line")
    for name, text in [("status", "one plug in detail, with its energy, cost and automation"),
                       ("refresh", "read power and voltage now"),
                       ("forget", "forget a plug"), ("approve", "accept a plug held by --new-plugs hold"),
                       ("clear-conflict", "accept the identity of a plug's latest login as its own")]:
        plugArg(sub.add_parser(name, help=text))
    for name, text in [("on", "switch on"), ("off", "switch off"), ("toggle", "switch over")]:
        switch = sub.add_parser(name, help=text)
        plugArg(switch)
        switch.add_argument("--for", dest="duration", metavar="DURATION",
                            help="switch back after this long: 90s, 30m, 1h30m")
    rename = sub.add_parser("rename", help="set a plug's alias (\"\" clears it)")
    plugArg(rename)
    rename.add_argument("alias")
    power = sub.add_parser("power-on", help="what a plug does after a power cut")
    plugArg(power)
    power.add_argument("policy", choices=["on", "off", "last", "none"])
    sub.add_parser("pending", help="plugs held until approved (--new-plugs hold)")
    sub.add_parser("watch", help="print events as they happen (with each switch's cause)")
    sub.add_parser("info", help="daemon version, uptime, listeners, counters")
    energy = sub.add_parser("energy", help="energy history (default: today per hour)")
    plugArg(energy)
    when = energy.add_mutually_exclusive_group()
    when.add_argument("--day", type=dayArg, help="YYYY-MM-DD, today or yesterday: per hour")
    when.add_argument("--month", type=monthArg, help="YYYY-MM, this-month or last-month: per day")
    when.add_argument("--year", type=yearArg, help="YYYY, this-year or last-year: per month")
    energy.add_argument("--csv", action="store_true", help="CSV output")
    energy.add_argument("--cost", action="store_true", help="add the cost of each row (the daemon's tariff)")
    cost = sub.add_parser("cost", help="every plug's energy and cost in a month, largest first")
    cost.add_argument("--month", type=monthArg, help="YYYY-MM, this-month (default) or last-month")
    export = sub.add_parser("export", help="hourly energy of a plug as CSV (time zone in the header)")
    plugArg(export)
    export.add_argument("--from", dest="start", type=dayArg, required=True, help="first day: YYYY-MM-DD")
    export.add_argument("--to", dest="end", type=dayArg, required=True, help="last day (included): YYYY-MM-DD")
    history = sub.add_parser("history", help="a plug's latest switches, with what made each")
    plugArg(history)
    history.add_argument("--limit", type=int, default=50, help="how many (default 50, at most 200)")
    addFeatureCommands(commands)
    cli_cluster.addParser(sub)
    prov = sub.add_parser("provision", help="send Wi-Fi settings to a plug in setup mode")
    prov.add_argument("--ssid", required=True)
    prov.add_argument("--password", help="Wi-Fi password (prompted for when left out, so it stays out of `ps`)")
    prov.add_argument("--server-ip", help="address plugs connect to (default: the daemon's address)")
    prov.add_argument("--dns", help="DNS server sent to the plug")
    prov.add_argument("--plug-address", default=None, help="HOST[:PORT] of the plug (default 192.168.4.1:41234)")
    prov.add_argument("--timeout", dest="provision_timeout", type=float, default=15.0,
                      help="seconds to wait for the plug (default 15)")
    sub.add_parser("doctor", help="find out why plugs do not reach vesyncd")
    cli_migrate.addParser(sub)
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    commands.addGlobals(lambda group, name: _addCommonOptions(group, None, timeout=name != "provision"))
    return p


def locate(args: argparse.Namespace) -> tuple[str, Path]:
    """The control endpoint and token file to use, from options, environment and the state directory."""
    stateDir = Path(args.state_dir).expanduser() if args.state_dir else paths.defaultStateDir()
    description = args.connect or f"unix:{stateDir / paths.CONTROL_SOCKET}"
    tokenFile = Path(args.token_file).expanduser() if args.token_file else stateDir / paths.TOKEN_FILE
    return description, tokenFile


def period(args: argparse.Namespace) -> tuple[str, str]:
    """The energy period and value asked for: today per hour unless --day, --month or --year."""
    if args.day:
        return "day", args.day
    if args.month:
        return "month", args.month
    if args.year:
        return "year", args.year
    return "day", date.today().isoformat()
