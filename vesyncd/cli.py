"""
vesyncctl: control vesyncd from the command line (through its control port).

Exit codes: 0 done, 1 the command failed (unknown or offline plug, timeout, refused, daemon not
reachable), 2 usage error.  Errors go to standard error as one line.  C{--json} output follows
the schema of C{docs/control.md}.
"""

from __future__ import annotations

import argparse
import getpass
import csv
import io
import ipaddress
import json
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred

from vesyncd import paths
from vesyncd.auth import readToken
from vesyncd.control.client import ControlConnectError, connect
from vesyncd.control.commands import ControlError


class CLIError(Exception):
    """The command failed; the message is printed on one line and the exit code is 1."""


# --- formatting ---------------------------------------------------------------------------------


def ago(iso: str | None, now: datetime | None = None) -> str:
    """An ISO 8601 time as C{"just now"}, C{"2 min ago"}, C{"3 h ago"}, C{"4 d ago"} or C{"never"}."""
    if not iso:
        return "never"
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    seconds = ((now or datetime.now(timezone.utc)) - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def _num(value: Any, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}"


def table(rows: list[list[str]], header: list[str], right: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    """Rows aligned in columns under a header (columns in C{right} right-aligned)."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for row in [header] + rows:
        cells = [str(cell).rjust(widths[i]) if i in right else str(cell).ljust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def formatPlugs(plugs: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The human table of C{vesyncctl list}."""
    if not plugs:
        return "no plugs yet: point a plug at this server (see `vesyncctl doctor`)\n"
    rows = [[p.get("alias") or "-", p["id"], "online" if p.get("online") else "offline", p.get("relay") or "-",
             _num(p.get("power_w"), "W"), _num(p.get("voltage_v"), "V"),
             "-" if p.get("rssi_dbm") is None else f"{p['rssi_dbm']} dBm",
             _num(p.get("energy_today_kwh"), "kWh", 3), _num(p.get("energy_lifetime_kwh"), "kWh", 3),
             ago(p.get("last_seen"), now)] for p in plugs]
    return table(rows, ["NAME", "ID", "STATUS", "RELAY", "POWER", "VOLTAGE", "RSSI", "TODAY", "LIFETIME",
                        "LAST SEEN"], right={4, 5, 6, 7, 8})


def formatPlug(p: dict[str, Any], now: datetime | None = None) -> str:
    """The human form of one plug (C{vesyncctl status})."""
    fields = [
        ("Name", p.get("alias") or "-"), ("ID", p["id"]), ("Online", "yes" if p.get("online") else "no"),
        ("Relay", f"{p.get('relay') or '-'}" + (f" ({p['relay_cause']})" if p.get("relay_cause") else "")),
        ("Power", _num(p.get("power_w"), "W")), ("Voltage", _num(p.get("voltage_v"), "V")),
        ("RSSI", "-" if p.get("rssi_dbm") is None else f"{p['rssi_dbm']} dBm"),
        ("Today", _num(p.get("energy_today_kwh"), "kWh", 3)),
        ("Lifetime", _num(p.get("energy_lifetime_kwh"), "kWh", 3)),
        ("Power-on", p.get("power_on") or "none"), ("Firmware", p.get("firmware") or "-"),
        ("Model", p.get("model") or "-"), ("Address", p.get("address") or "-"),
        ("First seen", p.get("first_seen") or "-"), ("Last seen", ago(p.get("last_seen"), now)),
    ]
    return "".join(f"{k + ':':<12}{v}\n" for k, v in fields)


def formatEnergy(history: dict[str, Any], name: str) -> str:
    """Per-hour, per-day or per-month buckets in kWh, with the total."""
    rows = [[b["label"], f"{b['wh'] / 1000:.3f} kWh"] for b in history["buckets"]]
    rows.append(["total", f"{history['total_wh'] / 1000:.3f} kWh"])
    title = f"{name}: energy per {history.get('unit', '')} of {history['period']} {history['value']} " \
            f"({history.get('timezone', '')})\n"
    return title + table(rows, [history.get("unit", "").upper(), "ENERGY"], right={1})


def energyCSV(history: dict[str, Any]) -> str:
    """Buckets as CSV: C{start,label,wh} and a C{total} row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", "label", "wh"])
    for b in history["buckets"]:
        writer.writerow([b["start"], b["label"], b["wh"]])
    writer.writerow(["", "total", history["total_wh"]])
    return out.getvalue()


def _relayWord(value: Any) -> str:
    return "-" if value is None else ("on" if value else "off")


def _energyText(data: dict[str, Any]) -> str:
    """An energy report as Wh over its seconds, with the average power."""
    ws, seconds = data.get("watt_seconds"), data.get("seconds")
    if not isinstance(ws, (int, float)):
        return "-"
    wh = ws / 3600.0
    text = f"energy {wh:.{2 if wh < 10 else 1}f} Wh over {seconds} s"
    average = data.get("average_w")
    if isinstance(average, (int, float)):
        text += f" (avg {average:.0f} W)" if average >= 10 else f" (avg {average:.1f} W)"
    return text


def formatEvent(event: dict[str, Any]) -> str:
    """One human line per event (the event shape of docs/control.md)."""
    name = event.get("name") or event.get("alias") or event.get("plug")
    kind = event.get("event")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    detail = ""
    if kind == "relay":
        detail = f"{_relayWord(data.get('relay'))} ({data.get('cause')})"
    elif kind == "runtime":
        detail = f"{_num(data.get('power_w'), 'W')} {_num(data.get('voltage_v'), 'V')}"
    elif kind == "energy":
        detail = _energyText(data)
        kind = None
    elif kind == "rssi":
        detail = f"{data.get('rssi_dbm')} dBm"
    elif kind == "alias":
        detail = repr(data.get("alias"))
    elif kind in ("online", "plug_new", "plug_pending"):
        detail = str(data.get("address") or "")
    elif kind == "offline":
        detail = str(data.get("reason") or "")
    elif kind == "power_on":
        detail = str(data.get("power_on") or "none")
    elif kind == "plug_conflict":
        detail = "differs in " + ", ".join(str(f) for f in data.get("fields") or [])
    return " ".join(str(part) for part in (event.get("at"), name, kind, detail) if part)


# --- arguments ----------------------------------------------------------------------------------


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
                       ("forget", "forget a plug")]:
        sub.add_parser(name, help=text).add_argument("plug", help="id, unique id prefix or alias")
    rename = sub.add_parser("rename", help="set a plug's alias (\"\" clears it)")
    rename.add_argument("plug")
    rename.add_argument("alias")
    power = sub.add_parser("power-on", help="what a plug does after a power cut")
    power.add_argument("plug")
    power.add_argument("policy", choices=["on", "off", "last", "none"])
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


async def connectFromArgs(reactor: Any, args: argparse.Namespace) -> Any:
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


def _period(args: argparse.Namespace) -> tuple[str, str]:
    if args.day:
        return "day", args.day
    if args.month:
        return "month", args.month
    if args.year:
        return "year", args.year
    return "day", date.today().isoformat()


async def run(reactor: Any, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Carry out one command; returns the exit code (errors raise CLIError or ControlError)."""
    if args.command == "provision":
        return await runProvision(reactor, args, out)
    if args.command == "doctor":
        return await runDoctor(reactor, args, out)
    client = await connectFromArgs(reactor, args)
    try:
        return await _runCommand(client, args, out)
    finally:
        if args.command != "watch":
            client.close()


def _print(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()


async def _runCommand(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    asJSON = args.json
    dump: Callable[[Any], None] = lambda doc: _print(out, json.dumps(doc, indent=2) + "\n")  # noqa: E731
    command = args.command
    if command == "list":
        plugs = await client.listPlugs()
        dump(plugs) if asJSON else _print(out, formatPlugs(plugs))
    elif command == "status":
        plug = await client.getPlug(args.plug)
        dump(plug) if asJSON else _print(out, formatPlug(plug))
    elif command in ("on", "off", "toggle"):
        plug = await client.switch(args.plug, command)
        dump(plug) if asJSON else _print(out, f"{plug.get('alias') or plug['id']} is {plug['relay']}\n")
    elif command == "refresh":
        plug = await client.refresh(args.plug)
        dump(plug) if asJSON else _print(out, formatPlug(plug))
    elif command == "rename":
        plug = await client.rename(args.plug, args.alias)
        dump(plug) if asJSON else _print(out, f"{plug['id']} is now called {plug.get('alias') or '(no alias)'}\n")
    elif command == "forget":
        plug = await client.forget(args.plug)
        dump(plug) if asJSON else _print(out, f"forgot {plug.get('alias') or plug['id']}\n")
    elif command == "power-on":
        plug = await client.setPowerOn(args.plug, args.policy)
        dump(plug) if asJSON else _print(out, f"{plug.get('alias') or plug['id']}: power-on "
                                              f"{plug.get('power_on') or 'none'}\n")
    elif command == "info":
        info = await client.info()
        if asJSON:
            dump(info)
        else:
            _print(out, "".join(f"{k + ':':<16}{json.dumps(v) if isinstance(v, (dict, list)) else v}\n"
                                for k, v in info.items()))
    elif command == "energy":
        period, value = _period(args)
        plug = await client.getPlug(args.plug)
        history = await client.energy(plug["id"], period, value)
        if asJSON:
            dump(history)
        elif args.csv:
            _print(out, energyCSV(history))
        else:
            _print(out, formatEnergy(history, plug.get("alias") or plug["id"]))
    elif command == "watch":
        def show(event: dict[str, Any]) -> None:
            _print(out, (json.dumps(event, separators=(",", ":")) if asJSON else formatEvent(event)) + "\n")

        await client.watch(show)
        await client.protocol.lost
        raise CLIError("the connection to vesyncd was closed")
    return 0


async def runDoctor(reactor: Any, args: argparse.Namespace, out: TextIO) -> int:
    """C{vesyncctl doctor}: the doctor's probes, with the daemon reached through the control port."""
    from vesyncd.doctor import checks as doctor
    from vesyncd.doctor import probes as doctor_probes

    clients: list[Any] = []

    async def client() -> Any:
        if not clients:
            clients.append(await connectFromArgs(reactor, args))
        return clients[0]

    async def status() -> Any:
        return await (await client()).info()

    async def plugs() -> Any:
        return await (await client()).listPlugs()

    probes = doctor_probes.SystemProbes(reactor, daemonStatus=lambda: ensureDeferred(status()),
                                        plugs=lambda: ensureDeferred(plugs()))
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
    _print(out, json.dumps(doctor.checksToJSON(checks), indent=2) + "\n" if args.json
           else doctor.formatChecks(checks))
    return doctor.exitCode(checks)


async def runProvision(reactor: Any, args: argparse.Namespace, out: TextIO) -> int:
    """C{vesyncctl provision}: send Wi-Fi settings to a plug in setup mode."""
    from vesyncd.setup import client as P

    serverIP = args.server_ip
    if not serverIP:
        client = await connectFromArgs(reactor, args)
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
            sys.stderr.write(f"vesyncctl: warning: --server-ip {serverIP} is this machine's loopback address; "
                             "a real plug cannot reach it (give the LAN address)\n")
        reply = await P.provision(reactor, host, port, request, args.provision_timeout)
    except P.ProvisionError as e:
        raise CLIError(f"provisioning failed: {e}") from None
    if args.json:
        _print(out, json.dumps({"reply": reply, "server_ip": serverIP}, indent=2) + "\n")
    else:
        _print(out, f"{P.describeReply(reply)}; it will connect to vesyncd at {serverIP}:17273.\n"
                    "Next: rejoin your own Wi-Fi; the plug will appear in `vesyncctl list` within a minute.\n")
    return 0


def _isLoopbackHost(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> None:
    """Run vesyncctl and exit with its code."""
    args = buildParser().parse_args(argv)  # exits 2 on usage errors

    async def go(reactor: Any) -> None:
        try:
            code = await run(reactor, args)
        except (CLIError, ControlError) as e:
            sys.stderr.write(f"vesyncctl: {e}\n")
            code = 1
        if code:
            raise SystemExit(code)

    def start(reactor: Any) -> Deferred:
        return ensureDeferred(go(reactor))

    task.react(start)


if __name__ == "__main__":  # pragma: no cover - `python -m vesyncd.cli`
    main()
