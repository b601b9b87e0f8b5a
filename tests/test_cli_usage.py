"""vesyncctl's first-hour details: --version, each command's help with its own options first, JSON
errors, info as aligned lines with units, one way to name a plug, watch stopped by the user, plug names
for completion, and the bash and zsh completion scripts."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.trial import unittest

from vesyncd import __version__
from vesyncd.cli.main import execute
from vesyncd.cli.completion import completionScript
from vesyncd.cli.formatting import duration, formatInfo
from vesyncd.plugs import codec as m

from control_helpers import CLIHarness, World


def runLocal(*argv: str) -> tuple[int, str, str]:
    """Run a command line that never reaches the daemon; returns (exit code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    d = defer.ensureDeferred(execute(task.Clock(), list(argv), out, err))
    results: list[Any] = []
    d.addBoth(results.append)
    return results[0], out.getvalue(), err.getvalue()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`vesyncctl --version` prints the version and exits 0."""
    code, out, _ = runLocal("--version")
    printed = capsys.readouterr().out
    assert code == 0 and f"vesyncctl {__version__}" in out + printed


def test_helpShowsOwnOptionsFirstAndGlobalsOnce(capsys: pytest.CaptureFixture[str]) -> None:
    """A command's --help lists its own options, then the global options once, under their own title."""
    assert runLocal("energy", "--help")[0] == 0
    text = capsys.readouterr().out
    body = text[text.index("\n\n"):]  # after the usage line
    assert body.index("--cost") < body.index("global options") < body.index("--connect")
    assert body.count("--connect CONNECT") == 1
    assert runLocal("schedule", "add", "--help")[0] == 0
    text = capsys.readouterr().out
    assert text.index("--at TIME") < text.index("global options")


def test_usageErrorAsJSON() -> None:
    """With --json a usage error is an error object on standard output with exit code 2."""
    code, out, err = runLocal("--json", "power-on", "x", "sometimes")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["code"] == "usage" and "sometimes" in error["message"]
    assert "sometimes" in err
    code, out, err = runLocal("power-on", "x", "sometimes")
    assert (code, out) == (2, "") and err.startswith("usage: vesyncctl power-on")


def test_infoIsAlignedLinesWithUnits() -> None:
    """info: the uptime in hours and minutes once, one listener a line, counters summed up, no raw dicts."""
    info = {"version": "1.0", "pid": 42, "uptime": 11523.4, "uptime_s": 11523.4, "started": "T",
            "listeners": {"control": "unix:/run/vesyncd/control.sock", "plugs": "0.0.0.0:17273"},
            "counters": {"logins": 3, "commands": 0, "energy_reports": 12},
            "control": {"logins": 2, "bad_tokens": 0, "watchers": 1},
            "dns": {f"counter_{i}": i for i in range(20)}, "dns_listen": ["0.0.0.0", 5353], "gc": None}
    text = formatInfo(info)
    lines = text.splitlines()
    assert "uptime:" in text and "3 h 12 min" in text and "11523" not in text
    assert sum(line.startswith("uptime") for line in lines) == 1
    assert "{" not in text and "}" not in text
    listener = [i for i, line in enumerate(lines) if "control:" in line and "unix:" in line][0]
    assert lines[listener].startswith("listeners:") and lines[listener + 1].lstrip().startswith("plugs:")
    assert "logins 3, energy reports 12" in text and "commands 0" not in text
    assert "dns listen:" in text and "0.0.0.0:5353" in text
    assert [line for line in lines if line.startswith("dns:")][0].endswith("counter 8 8, 11 more")
    column = len(lines[0]) - len(lines[0][len("version:"):].lstrip())
    assert all(line[column - 1] == " " and line[column] != " " for line in lines), text  # values in one column
    assert [duration(s) for s in (5, 65, 3600, 90061)] == ["5 s", "1 min 5 s", "1 h", "1 d 1 h"]


def test_bashCompletionCompletesCommandsOptionsAndPlugs(tmp_path: Path) -> None:
    """The bash script completes commands, a command's options, and plug names from `vesyncctl list --names`."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "vesyncctl.bash"
    script.write_text(completionScript("bash"))
    fake = tmp_path / "bin" / "vesyncctl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = 'list --names' ] && printf 'Kettle\\nDesk lamp\\n'\n")
    fake.chmod(0o755)

    def complete(*words: str) -> list[str]:
        shell = (f"source {script}; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
                 "_shtab_vesyncctl; printf '%s\\n' \"${COMPREPLY[@]}\"")
        env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")
        done = subprocess.run([bash, "-c", shell], capture_output=True, text=True, env=env, timeout=30)
        assert done.returncode == 0, done.stderr
        return [w for w in done.stdout.splitlines() if w]

    assert complete("vesyncctl", "sch") == ["schedule"]
    assert complete("vesyncctl", "status", "K") == ["Kettle"]
    assert complete("vesyncctl", "rule", "add", "x", "--do") == ["--done-below"]
    assert "--cost" in complete("vesyncctl", "energy", "x", "--c")


def test_zshCompletionScript() -> None:
    """The zsh script is a compdef for vesyncctl whose plug completer asks `vesyncctl list --names`."""
    text = completionScript("zsh")
    assert text.startswith("#compdef vesyncctl")
    assert "vesyncctl list --names" in text and "_vesyncctl_plugs" in text and "schedule" in text
    zsh = shutil.which("zsh")
    if zsh is not None:
        done = subprocess.run([zsh, "-n"], input=text, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


class NamingAndWatchTests(CLIHarness, unittest.TestCase):
    """Names in messages, `list --names`, and stopping `watch`."""

    def setUp(self) -> None:
        self.world = World()

    def test_renameNamesThePlugAsBefore(self) -> None:
        """rename says which plug by its name before the change, as every other message names plugs."""
        self.assertEqual(self.run_("rename", "00aa", "Tea")[1], "00aa-plug-0 is now called Tea\n")
        self.assertEqual(self.run_("rename", "tea", "Kettle")[1], "Tea is now called Kettle\n")
        self.assertEqual(self.run_("rename", "kettle", "")[1], "Kettle has no alias now; its id is 00aa-plug-0\n")

    def test_listNames(self) -> None:
        """`list --names` prints each plug's alias (else its id) on its own line."""
        self.world.hub.rename("10aa", "Desk lamp")
        self.assertEqual(self.run_("list", "--names")[1], "00aa-plug-0\nDesk lamp\n")

    def test_userStoppingWatchExitsZeroQuietly(self) -> None:
        """Ctrl-C or SIGTERM (the reactor shutting down) ends `watch` with exit 0 and no error text;
        the daemon closing the connection is still an error."""
        reactor = ShutdownReactor(self.world.clock)
        d, out, err = self.start("watch", reactor=reactor)
        self.world.sessions[0].received(m.State(relay=True))
        self.flush()
        self.assertIn("relay on", out.getvalue())
        reactor.shutdown()
        self.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(err.getvalue(), "vesyncctl: watching events (Ctrl-C stops)\n")


class ShutdownReactor:
    """A clock with the reactor's system event triggers, so a test can shut it down like Ctrl-C does."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.triggers: dict[int, Any] = {}

    def callLater(self, *args: Any, **kw: Any) -> Any:
        """The clock's."""
        return self.clock.callLater(*args, **kw)

    def seconds(self) -> float:
        """The clock's."""
        return self.clock.seconds()

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> int:
        """Remember a trigger; returns its id."""
        self.triggers[len(self.triggers) + 1] = (phase, event, f)
        return len(self.triggers)

    def removeSystemEventTrigger(self, ident: int) -> None:
        """Forget a trigger."""
        del self.triggers[ident]

    def shutdown(self) -> None:
        """Run the "before shutdown" triggers, as reactor.stop() does first."""
        for phase, event, f in list(self.triggers.values()):
            if (phase, event) == ("before", "shutdown"):
                f()


def test_displayNamesAddAShortIdWhenAmbiguous() -> None:
    """A plug is shown by its alias, else its id; an alias that is also another plug's id gets its own
    short id, so a listing never names two plugs the same."""
    from vesyncd.cli.formatting import displayNames

    plugs = [{"id": "3fa8c1d2e4", "alias": "b77e01"}, {"id": "b77e01", "alias": None},
             {"id": "c0ffee0000", "alias": "Kettle"}]
    assert displayNames(plugs) == {"3fa8c1d2e4": "b77e01 (3fa8c1d2)", "b77e01": "b77e01", "c0ffee0000": "Kettle"}
