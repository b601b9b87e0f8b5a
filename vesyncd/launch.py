"""
The demo behind C{make run}: C{twistd -n vesyncd} with the demo config and simulated plugs, on
loopback, whatever else the machine runs.

C{python -m vesyncd.launch [--config FILE] [--mqtt] [-- DAEMON OPTIONS...]} moves each default
port another program holds to a free one (a port the user chose that is busy stops it, naming the
option that moves it), with C{--mqtt} starts a private mosquitto and points the daemon at it, and
once the daemon listens prints where everything is and the commands to try.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

from twisted.python import usage

from vesyncd import tap
from vesyncd.sim.demobroker import INSTALL_HINT, BrokerError, DemoBroker, findMosquitto
from vesyncd.sim.demoports import (Listener, PortPlan, givenOptions, isLoopback, listeners, parseTCPEndpoint,
                                   planPorts)

DEMO_CONFIG = "etc/vesyncd-dev.toml"
PREFIX = "vesyncd demo: "


def parseArguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's own options, and the daemon options that follow C{--}."""
    own, daemon = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="python -m vesyncd.launch",
        description="Run the vesyncd demo on loopback: free ports, simulated plugs, optionally a private "
                    "mosquitto. Daemon options go after --.")
    parser.add_argument("--config", default=DEMO_CONFIG,
                        help=f"the demo's config file (default {DEMO_CONFIG}); a --config after -- replaces it")
    parser.add_argument("--mqtt", action="store_true",
                        help="start a private mosquitto on a free loopback port and point the daemon at it")
    parser.add_argument("--mosquitto", default=None, help="the mosquitto program (default: found on PATH or sbin)")
    return parser.parse_args(own), daemon


def daemonOptions(argv: list[str]) -> Any:
    """The daemon's options parsed as twistd will parse them, or None when they do not parse
    (twistd then says what is wrong)."""
    config = tap.Options()
    try:
        config.parseOptions(argv)
    except (usage.UsageError, SystemExit):
        return None
    return config


def _shown(path: str | Path) -> str:
    """A path relative to the working directory when it is inside it, quoted for a shell."""
    text = str(path)
    if os.path.isabs(text) and Path(text).is_relative_to(Path.cwd()):
        text = os.path.relpath(text)
    return shlex.quote(text)


def vesyncctlCommand(stateDir: str | Path) -> str:
    """The C{vesyncctl ... list} line for this demo: the vesyncctl next to this Python, its state dir."""
    beside = Path(os.path.abspath(sys.executable)).parent / "vesyncctl"
    program = _shown(beside) if beside.exists() else "vesyncctl"
    # The state dir as the user or the config gave it, so the line works wherever they gave it from.
    return f"{program} --state-dir {shlex.quote(str(stateDir))} list"


def _where(found: list[Listener], option: str, otherwise: str) -> str:
    """Where a checked listener listens (host:port, after any move), else C{otherwise}."""
    for listener in found:
        if listener.option == option:
            host = f"[{listener.host}]" if ":" in listener.host else listener.host
            return f"{host}:{listener.port}"
    return otherwise


def loopbackOnly(config: Any) -> bool:
    """True when every listener of these options is on loopback or a UNIX socket."""
    for option in ("plugs", "http", "pb", "control"):
        description = config.get(option)
        if not description or (option == "http" and config.get("no-http")):
            continue
        if description.startswith("unix:"):
            continue
        endpoint = parseTCPEndpoint(description)
        if endpoint is None or not isLoopback(endpoint.host):
            return False
    return bool(config.get("no-dns")) or isLoopback(config.get("dns-interface") or "")


def banner(config: Any, found: list[Listener], plan: PortPlan, broker: DemoBroker | None,
           mqttNote: str | None) -> list[str]:
    """The lines printed once the demo listens: each listener, what moved, and the commands to try."""
    stateDir = Path(config["state-dir"])
    scope = "loopback only, fine for trying" if loopbackOnly(config) else "ARGS opened listeners beyond loopback"
    lines = ["", f"{PREFIX}{scope} (Ctrl-C stops it)"]
    if config.get("no-http"):
        lines.append("  web page      off (--no-http)")
    else:
        url = _where(found, "http", "")
        url = f"http://{url}/" if url else str(config.get("http"))
        lines.append(f"  web page      {url}  (sign in with the token in {shlex.quote(str(stateDir / 'control.token'))})")
    plugs = config.get("demo-plugs") or 0
    where = _where(found, "plugs", str(config.get("plugs")))
    lines.append(f"  plug server   {where}, {plugs} simulated plug{'s' if plugs != 1 else ''}")
    if config.get("no-dns"):
        lines.append("  DNS           off (--no-dns)")
    else:
        where = _where(found, "dns-port", f"{config.get('dns-interface')}:{config.get('dns-port')}")
        lines.append(f"  DNS           {where} (udp+tcp), answers server2.vesync.com")
    control = config.get("control") or ""
    socketPath = control.split(":")[1] if control.startswith("unix:") else None
    lines.append(f"  control port  {shlex.quote(socketPath) if socketPath else control}")
    if broker is not None:
        lines.append(f"  MQTT          {broker.url} (a private mosquitto, stopped with the demo)")
    elif mqttNote:
        lines.append(f"  MQTT          {mqttNote}")
    else:
        lines.append("  MQTT          off (make run MQTT=1 adds a private mosquitto and Home Assistant discovery)")
    lines += [f"  {note}" for note in plan.moved]
    lines.append("Try in another terminal:")
    lines.append(f"  {vesyncctlCommand(stateDir)}")
    if broker is not None:
        prefixes = (config.get("mqtt-prefix") or "vesyncd", config.get("ha-discovery-prefix") or "homeassistant")
        lines.append(f"  {broker.watchCommand(*prefixes)}")
    return lines + [""]


def _write(stream: TextIO, lines: list[str]) -> None:
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()


def runTwistd(argv: list[str], lines: list[str], broker: DemoBroker | None) -> int:
    """Run C{twistd -n vesyncd ARGV} in this process; print C{lines} once the reactor runs (every
    listener is bound by then); stop the broker when the daemon stops."""
    from twisted.internet import reactor
    from twisted.scripts import twistd

    # twistd sends standard output to its log; the banner goes to the terminal as it is.
    terminal = sys.__stdout__ or sys.stdout
    reactor.callWhenRunning(_write, terminal, lines)  # type: ignore[attr-defined]
    if broker is not None:
        # After a signal twistd ends the process by that signal, so cleanup cannot wait for run() to return.
        reactor.addSystemEventTrigger("after", "shutdown", broker.stop)  # type: ignore[attr-defined]
    sys.argv = ["twistd", "-n", "--pidfile=", "vesyncd", *argv]
    try:
        twistd.run()
    finally:
        if broker is not None:
            broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Plan the ports, start the broker if asked, and run the daemon; 1 when the demo cannot start."""
    args, user = parseArguments(sys.argv[1:] if argv is None else argv)
    chosen = givenOptions(user)
    daemonArgs = ([] if "config" in chosen else ["--config", args.config]) + user
    # --help and --version print and exit while parsing: twistd does that, once.
    config = None if chosen & {"help", "version"} else daemonOptions(daemonArgs)
    if config is None:
        return runTwistd(daemonArgs, [], None)
    found = listeners(config, chosen)
    plan = planPorts(found)
    if plan.blocked:
        _write(sys.stderr, [PREFIX + problem for problem in plan.blocked])
        return 1
    broker, mqttNote = None, None
    if args.mqtt and config.get("mqtt"):
        # The URL may hold a password: the banner does not repeat it.
        mqttNote = "the broker given with --mqtt (MQTT=1 started none)"
    elif args.mqtt:
        program = args.mosquitto or findMosquitto()
        if program is None or not os.access(program, os.X_OK):
            missing = f"{program} is not a program" if args.mosquitto else "mosquitto is not installed"
            _write(sys.stderr, [f"{PREFIX}MQTT=1 runs a private mosquitto, and {missing}: {INSTALL_HINT}"])
            return 1
        broker = DemoBroker(program)
        try:
            broker.start()
        except BrokerError as e:
            _write(sys.stderr, [f"{PREFIX}{e}"])
            return 1
        plan.args += ["--mqtt", broker.url]
    return runTwistd(daemonArgs + plan.args, banner(config, found, plan, broker, mqttNote), broker)


if __name__ == "__main__":
    sys.exit(main())
