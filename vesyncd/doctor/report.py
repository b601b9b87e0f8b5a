"""
What C{vesyncctl doctor} found and how it is shown: L{Check}s with a L{Level}, as lines for a
terminal (L{formatChecks}, every field escaped: names and versions come from plugs and processes),
as JSON (L{checksToJSON}), and as an exit status (L{exitCode}).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Sequence

from vesyncd.escape import printable


class Level(enum.Enum):
    """How bad a finding is; the value is the JSON spelling."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One finding: a stable C{name}, a L{Level}, what was found, and how to fix it (or None)."""

    name: str
    level: Level
    message: str
    fix: str | None = None



_LABELS = {Level.OK: "OK  ", Level.WARN: "WARN", Level.FAIL: "FAIL"}


def formatChecks(checks: Sequence[Check]) -> str:
    """One line per check: C{OK  }/C{WARN}/C{FAIL}, name, message, and C{-- fix: ...} if any;
    control characters in any field are shown escaped, never sent to the terminal."""
    lines = []
    for check in checks:
        line = f"{_LABELS[check.level]} {printable(check.name)}: {printable(check.message)}"
        if check.fix and check.level is not Level.OK:
            line += f" -- fix: {printable(check.fix)}"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def checksToJSON(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """Checks as JSON-ready dicts: C{{"name": str, "level": "OK"|"WARN"|"FAIL", "message": str,
    "fix": str|None}}, always these four keys, in check order."""
    return [
        {"name": c.name, "level": c.level.value, "message": c.message, "fix": c.fix}
        for c in checks
    ]


def exitCode(checks: Sequence[Check]) -> int:
    """A process exit status for C{vesyncctl doctor}: 1 if any check failed, else 0."""
    return 1 if any(c.level is Level.FAIL for c in checks) else 0
