"""
Tests that C{etc/vesyncd.service} and README.md's "Running it for real" steps agree (the venv, the
user, the config and state paths, the installed README), that the unit carries its hardening, and
that C{systemd-analyze verify} accepts it where systemd is installed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "etc" / "vesyncd.service"
README = ROOT / "README.md"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def parseUnit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (comments and blank lines dropped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, eq, value = line.partition("=")
        assert eq and current is not None, f"line {number} of the unit is not key=value in a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def installSteps() -> list[list[str]]:
    """The commands of the systemd code block in README.md's "Running it for real", split as a shell does."""
    text = README.read_text()
    section = text.split("## Running it for real", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    steps = next((block for block in blocks if "systemctl enable" in block), None)
    assert steps is not None, "README's 'Running it for real' has no block of systemd steps"
    commands = []
    for line in steps.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words[1:] if words[0] == "sudo" else words)
    return commands


def _step(commands: list[list[str]], *start: str) -> list[str]:
    """The first README command that begins with C{start}."""
    found = next((c for c in commands if c[:len(start)] == list(start)), None)
    assert found is not None, f"README's steps have no `{' '.join(start)} ...`: {commands}"
    return found


def _option(words: list[str], name: str) -> str:
    """The value of C{--name VALUE} in a command line."""
    assert name in words, f"{name} missing from {words}"
    return words[words.index(name) + 1]


def test_execStartIsTheReadmesVenv() -> None:
    """ExecStart runs twist from the venv the README creates, with the config it installs, as the user it adds."""
    unit = parseUnit(UNIT.read_text())
    service = unit["Service"]
    steps = installSteps()
    venv = _step(steps, "python3", "-m", "venv")[3]
    assert _step(steps, f"{venv}/bin/pip", "install")[2] == "."
    (execStart,) = service["ExecStart"]
    command = shlex.split(execStart)
    assert command[:2] == [f"{venv}/bin/twist", "vesyncd"]
    config = _option(command, "--config")
    assert _step(steps, "install", "-D", "-m", "0640", "-g", "vesyncd")[-2:] == ["etc/vesyncd.toml.example", config]
    useradd = _step(steps, "useradd")
    assert service["User"] == [useradd[-1]] == service["Group"] and "--system" in useradd
    assert _option(command, "--state-dir") == f"/var/lib/{service['StateDirectory'][0]}"
    assert _option(useradd, "--home-dir") == _option(command, "--state-dir")
    assert _step(steps, "install", "-m", "0644")[-2:] == ["etc/vesyncd.service",
                                                         "/etc/systemd/system/vesyncd.service"]
    assert _step(steps, "systemctl", "enable")[-1] == "vesyncd"
    assert "DynamicUser" not in service


def test_documentationIsTheInstalledReadme() -> None:
    """Documentation= names the file the README's steps install (no web page that may not exist)."""
    (documentation,) = parseUnit(UNIT.read_text())["Unit"]["Documentation"]
    assert documentation.startswith("file:")
    installed = _step(installSteps(), "install", "-D", "-m", "0644", "README.md")
    assert installed[-1] == documentation[len("file:"):]


def test_hardening() -> None:
    """The unit runs unprivileged and confined; the only capability is binding port 53 for DNS."""
    service = parseUnit(UNIT.read_text())["Service"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes"),
                       ("SystemCallFilter", "@system-service"), ("Restart", "on-failure")]:
        assert service.get(key) == [value], key
    assert service["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"] == service["CapabilityBoundingSet"]
    assert "root" not in service["User"]


def test_configExampleNamesTheUnitsPath() -> None:
    """The example config tells the same start command as the unit and the README."""
    head = (ROOT / "etc" / "vesyncd.toml.example").read_text().splitlines()[:3]
    assert any("--config /etc/vesyncd/vesyncd.toml" in line for line in head)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (it comes with the "
                                                    "systemd package: apt-get install systemd; .ci/run installs it)")
def test_systemdAnalyzeVerify(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about the unit (ExecStart pointed at a stand-in twist)."""
    # verify insists that ExecStart's program exists; /opt/vesyncd is not installed here.
    twist = tmp_path / "twist"
    twist.write_text("#!/bin/sh\n")
    twist.chmod(0o755)
    unit = tmp_path / "vesyncd.service"
    text = UNIT.read_text()
    assert "/opt/vesyncd/bin/twist " in text
    unit.write_text(text.replace("/opt/vesyncd/bin/twist ", f"{twist} "))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    about = [line for line in (result.stdout + result.stderr).splitlines() if "vesyncd.service" in line]
    assert result.returncode == 0 and not about, result.stdout + result.stderr
