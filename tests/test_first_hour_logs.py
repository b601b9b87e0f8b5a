"""
Tests of what the daemon's log says and how twistd reports a bad option: C{--log-level} filters the
log twistd writes, Twisted's per-connection chatter and plug logins are debug, a plug going online
is one info line, and a mistake on the command line is one line first with a hint to C{--help}.
The unit tests run in memory; a few run C{twistd -n vesyncd} on loopback as a subprocess.
"""

from __future__ import annotations

import io
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogBeginner, Logger, LogLevel, LogPublisher, formatEvent
from twisted.python import usage

from vesyncd import logconfig, tap
from vesyncd.config import reportUsageError
from vesyncd.core.model import ALIAS, FORGOTTEN, OFFLINE, ONLINE, RELAY, RSSI, Event

from tests.twistd_helpers import BIN, START_TIMEOUT, Twistd


# --- in memory ----------------------------------------------------------------------------------


def test_parseLogLevel() -> None:
    """The four level names are accepted in any case (and warning for warn); another is refused."""
    assert logconfig.parseLogLevel("DEBUG") is LogLevel.debug
    assert logconfig.parseLogLevel("info") is LogLevel.info
    assert logconfig.parseLogLevel("warning") is LogLevel.warn
    assert logconfig.parseLogLevel("error") is LogLevel.error
    with pytest.raises(ValueError, match="debug, info, warn, error"):
        logconfig.parseLogLevel("loud")


def test_logLevelOption(tmp_path: Path) -> None:
    """--log-level defaults to info, takes a level and the config key log-level; a bad one names the option."""
    options = tap.Options()
    options.parseOptions([])
    assert options["log-level"] == "info"
    options = tap.Options()
    options.parseOptions(["--log-level", "WARN"])
    assert options["log-level"] == "warn"
    config = tmp_path / "vesyncd.toml"
    config.write_text('log-level = "debug"\n')
    options = tap.Options()
    options.parseOptions(["--config", str(config)])
    assert options["log-level"] == "debug"
    with pytest.raises(usage.UsageError, match="--log-level 'loud'"):
        tap.Options().parseOptions(["--log-level", "loud"])


def test_badListenerEndpointNamesItsOption() -> None:
    """A listener endpoint Twisted cannot parse is refused while parsing options, naming the option."""
    with pytest.raises(usage.UsageError, match="^--plugs 'nonsense:::' is not a listening endpoint"):
        tap.Options().parseOptions(["--plugs", "nonsense:::"])
    with pytest.raises(usage.UsageError, match="^--control 'bogus:1'"):
        tap.Options().parseOptions(["--control", "bogus:1"])
    tap.Options().parseOptions(["--http", "bogus:1", "--no-http"])  # not used, not checked


def test_chatterIsDebugOnly() -> None:
    """Starting factory, AMP's connection lines and a port's starting-on line are dropped above debug."""
    chatter = [
        {"log_format": "Starting factory {factory!r}", "log_level": LogLevel.info},
        {"log_format": "Stopping factory {factory!r}", "log_level": LogLevel.info},
        {"log_format": "{cls} connection established (HOST:{host} PEER:{peer})", "log_level": LogLevel.info},
        {"log_format": "dropping connection to peer {peer} with abort={abort}: {reason}", "log_level": LogLevel.warn},
        {"message": ("PlugServerFactory starting on 17273",), "log_level": LogLevel.info},
        {"message": ("Starting protocol <x>",), "log_level": LogLevel.info},
        {"message": ("(UDP Port 5353 Closed)",), "log_level": LogLevel.info},
    ]
    plain = {"log_format": "plug {plug} online", "log_level": LogLevel.info}
    quiet = logconfig.ChatterPredicate(LogLevel.info)
    loud = logconfig.ChatterPredicate(LogLevel.debug)
    for event in chatter:
        assert logconfig.isChatter(event), event
        assert quiet(event).name == "no" and loud(event).name == "maybe"
    assert not logconfig.isChatter(plain) and quiet(plain).name == "maybe"
    assert not logconfig.isChatter({"message": ("a plug is starting on its own",)})


def _beginner() -> tuple[LogBeginner, Logger]:
    """A private log beginner and a logger that publishes to it (the global ones stay untouched)."""
    publisher = LogPublisher()
    stdio = type("Stdio", (), {"stdout": io.StringIO(), "stderr": io.StringIO()})()
    return LogBeginner(publisher, io.StringIO(), stdio, warnings), Logger(namespace="test", observer=publisher)


def test_filterGlobalLogWrapsWhatTheRunnerBegins() -> None:
    """The observers twistd hands the beginner see only the chosen level and up, without chatter,
    including what was logged before logging began; a second beginning is not wrapped again."""
    beginner, log = _beginner()
    logconfig.filterGlobalLog(LogLevel.warn, beginner)
    log.info("buffered info")
    log.warn("buffered warn")
    seen: list[dict[str, Any]] = []
    beginner.beginLoggingTo([seen.append], redirectStandardIO=False)
    log.debug("debug")
    log.info("Starting factory {factory!r}", factory=object())
    log.error("error")
    assert [formatEvent(e) for e in seen] == ["buffered warn", "error"]
    assert "beginLoggingTo" not in vars(beginner)


def test_filterGlobalLogAtDebugKeepsChatter() -> None:
    """At debug everything passes, chatter included; a later call replaces the level."""
    beginner, log = _beginner()
    logconfig.filterGlobalLog(LogLevel.error, beginner)
    logconfig.filterGlobalLog(LogLevel.debug, beginner)
    seen: list[dict[str, Any]] = []
    beginner.beginLoggingTo([seen.append], redirectStandardIO=False)
    log.debug("Starting factory {factory!r}", factory="F")
    log.info("info")
    assert [formatEvent(e) for e in seen] == ["Starting factory 'F'", "info"]


def test_plugStateLog() -> None:
    """Online, offline, a switch other than at login, a rename and a forget are one info line each,
    with the alias; other events none; control characters from the network are escaped."""
    from twisted.logger import globalLogPublisher

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        stateLog = logconfig.PlugStateLog({"p1": "Lamp"}.get)
        stateLog(Event(ONLINE, "p1", 0.0, {"address": "127.0.0.1:5000", "firmware": "1.89"}))
        stateLog(Event(RELAY, "p1", 0.0, {"relay": True, "cause": "login"}))
        stateLog(Event(RELAY, "p1", 0.0, {"relay": False, "cause": "command"}))
        stateLog(Event(RSSI, "p1", 0.0, {"rssi_dbm": -60}))
        stateLog(Event(ALIAS, "p1", 0.0, {"alias": "Lamp", "previous": None}))
        stateLog(Event(FORGOTTEN, "p3", 0.0, {"alias": "Fan"}))
        stateLog(Event(OFFLINE, "p2\x1b[2J", 0.0, {"reason": "connection closed"}))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    mine = [e for e in seen if e.get("log_namespace") == "vesyncd.plugs"]
    assert {e["log_level"] for e in mine} == {LogLevel.info}
    assert [formatEvent(e) for e in mine] == [
        "plug Lamp (p1) online from 127.0.0.1:5000 (firmware 1.89)",
        "plug Lamp (p1) switched off (command)",
        "plug Lamp (p1) renamed (was no alias)",
        "plug Fan (p3) forgotten",
        "plug p2\\x1b[2J offline (connection closed)",
    ]


def test_usageErrorFirstOnlyUnderARunner() -> None:
    """Parsed as twistd's subcommand, an error is written as one line and a hint, exit status 2;
    parsed alone, the caller gets the exception."""
    options = tap.Options()
    out = io.StringIO()
    reportUsageError(options, usage.UsageError("no"), out)  # no parent: returns
    assert out.getvalue() == ""
    options.parent = usage.Options()
    with pytest.raises(SystemExit) as exit:
        reportUsageError(options, usage.UsageError("--plugs 'x' is wrong"), out)
    assert exit.value.code == 2
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("vesyncd: --plugs 'x' is wrong") and lines[1].endswith("vesyncd --help")


# --- twistd and twist as subprocesses, on loopback ------------------------------------------------


@pytest.mark.parametrize("runner", ["twistd", "twist"])
@pytest.mark.parametrize("argv, option", [(["--plugs", "nonsense:::"], "--plugs"),
                                          (["--log-level", "loud"], "--log-level"),
                                          (["--no-such-option"], "--no-such-option")])
def test_badOptionIsOneLineFirst(tmp_path: Path, runner: str, argv: list[str], option: str) -> None:
    """C{twistd -n vesyncd} / C{twist vesyncd} with a bad option: exit status 2, the first line is the
    error naming the option, then a hint to --help, and no usage text."""
    program = [str(BIN / "twistd"), "-n", "--pidfile="] if runner == "twistd" else [str(BIN / "twist")]
    out = subprocess.run([*program, "vesyncd", "--state-dir", str(tmp_path / "state"), *argv],
                         capture_output=True, text=True, cwd=tmp_path, timeout=START_TIMEOUT)
    assert out.returncode == 2, out
    lines = (out.stderr + out.stdout).splitlines()
    assert lines[0].startswith(f"{runner} vesyncd: ") and option in lines[0], lines
    assert lines[1:] == [f"see: {runner} vesyncd --help"], lines
    assert not (tmp_path / "state").exists()


#: Lines that only debugging needs: each would repeat for every vesyncctl call or plug connection.
CHATTER = ("Starting factory", "Stopping factory", "connection established", "connection lost",
           "control connection from", "control client", "logged in from", "starting on", "dropping connection")


def test_infoLogHasNoPerConnectionLines(tmp_path: Path) -> None:
    """At the default level a plug coming online is one line, a switch by command another, and
    vesyncctl calls add nothing else."""
    daemon = Twistd(tmp_path)
    try:
        daemon.waitFor("control port listening on")
        online = daemon.waitFor("online from")
        plug = online.split("] plug ", 1)[1].split(" ", 1)[0]
        for _ in range(3):
            assert daemon.vesyncctl("list").returncode == 0
        assert daemon.vesyncctl("toggle", plug).returncode == 0
        assert f"plug {plug} switched " in daemon.waitFor("switched")
    finally:
        lines = daemon.stop()
    noisy = [line for line in lines if any(text in line for text in CHATTER)]
    assert noisy == [], "\n".join(noisy)
    assert any("[vesyncd.plugs#info] plug " in line and " online from " in line for line in lines)


def test_debugLogBringsThemBack(tmp_path: Path) -> None:
    """With --log-level debug, Twisted's factory lines, plug logins and each control connection are logged."""
    daemon = Twistd(tmp_path, "--log-level", "debug")
    try:
        daemon.waitFor("control port listening on")
        daemon.waitFor("logged in from")
        assert daemon.vesyncctl("list").returncode == 0
        daemon.waitFor("control connection from")
    finally:
        lines = daemon.stop()
    assert any("Starting factory" in line for line in lines)
