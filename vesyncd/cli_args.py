"""
vesyncctl's command line: its options, commands and where it looks for the daemon.

Options common to every command are accepted before and after the command name
(C{vesyncctl --json list} and C{vesyncctl list --json}); environment variables give their defaults.
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path
from typing import Any

from vesyncd import paths


def _addCommonOptions(p: argparse.ArgumentParser, defaults: dict[str, Any] | None, timeout: bool = True) -> None:
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


def buildParser() -> argparse.ArgumentParser:
    """The command line of vesyncctl."""
    env = os.environ
    p = argparse.ArgumentParser(prog="vesyncctl", description="Control vesyncd, the local VeSync plug server.")
    _addCommonOptions(p, {
        "connect": env.get("VESYNCD_CONNECT"), "token_file": env.get("VESYNCD_TOKEN_FILE"),
        "state_dir": env.get("VESYNCD_STATE_DIR"), "json": env.get("VESYNCD_JSON", "") not in ("", "0"),
        "ca": None, "fingerprint": None, "timeout": 10.0,
    })
    # The same options are accepted after the command too (`vesyncctl list --json`).
    common = argparse.ArgumentParser(add_help=False)
    _addCommonOptions(common, None)
    # provision's own --timeout is how long to wait for the plug.
    commonNoTimeout = argparse.ArgumentParser(add_help=False)
    _addCommonOptions(commonNoTimeout, None, timeout=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = sub.add_parser

    def addParser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return add(name, parents=[commonNoTimeout if name == "provision" else common], **kw)

    sub.add_parser = addParser  # type: ignore[method-assign]
    sub.add_parser("list", help="all plugs")
    for name, text in [("status", "one plug in detail"), ("on", "switch on"), ("off", "switch off"),
                       ("toggle", "switch over"), ("refresh", "read power and voltage now"),
                       ("forget", "forget a plug"), ("approve", "accept a plug held by --new-plugs hold"),
                       ("clear-conflict", "accept the identity of a plug's latest login as its own")]:
        sub.add_parser(name, help=text).add_argument("plug", help="id, unique id prefix or alias")
    rename = sub.add_parser("rename", help="set a plug's alias (\"\" clears it)")
    rename.add_argument("plug")
    rename.add_argument("alias")
    power = sub.add_parser("power-on", help="what a plug does after a power cut")
    power.add_argument("plug")
    power.add_argument("policy", choices=["on", "off", "last", "none"])
    sub.add_parser("pending", help="plugs held until approved (--new-plugs hold)")
    sub.add_parser("watch", help="print events as they happen")
    sub.add_parser("info", help="daemon version, uptime, listeners, counters")
    energy = sub.add_parser("energy", help="energy history (default: today per hour)")
    energy.add_argument("plug")
    when = energy.add_mutually_exclusive_group()
    when.add_argument("--day", help="YYYY-MM-DD: per hour")
    when.add_argument("--month", help="YYYY-MM: per day")
    when.add_argument("--year", help="YYYY: per month")
    energy.add_argument("--csv", action="store_true", help="CSV output")
    prov = sub.add_parser("provision", help="send Wi-Fi settings to a plug in setup mode")
    prov.add_argument("--ssid", required=True)
    prov.add_argument("--password", help="Wi-Fi password (prompted for when left out, so it stays out of `ps`)")
    prov.add_argument("--server-ip", help="address plugs connect to (default: the daemon's address)")
    prov.add_argument("--dns", help="DNS server sent to the plug")
    prov.add_argument("--plug-address", default=None, help="HOST[:PORT] of the plug (default 192.168.4.1:41234)")
    prov.add_argument("--timeout", dest="provision_timeout", type=float, default=15.0)
    sub.add_parser("doctor", help="find out why plugs do not reach vesyncd")
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
