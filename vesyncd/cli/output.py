"""
Where vesyncctl's commands write, and how a failure is told: one escaped line on standard error, and
with C{--json} also the object C{{"error": {"code": ..., "message": ...}}} on standard output, with the
same exit code either way (docs/control.md lists the codes).
"""

from __future__ import annotations

import json
from typing import Any, Callable, TextIO

from vesyncd.escape import printable, printableLines

#: Exit codes: a command done, failed (refused, unknown plug, daemon unreachable), or used wrongly.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """The command failed; the message is printed on one line.  C{code} is the JSON error code and
    C{exitCode} the exit code (1, or 2 for a usage error)."""

    def __init__(self, message: str, code: str = "failed", exitCode: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.exitCode = exitCode


class Output:
    """Where a command writes: plain text escaped for the terminal, JSON as ASCII-only JSON."""

    def __init__(self, out: TextIO, err: TextIO, asJSON: bool) -> None:
        self.out, self.err, self.asJSON = out, err, asJSON

    def text(self, text: str) -> None:
        """Write plain output (every line escaped, so no control character reaches the terminal)."""
        self.out.write(printableLines(text))
        self.out.flush()

    def json(self, doc: Any, indent: int | None = 2) -> None:
        """Write one JSON document; non-ASCII and control characters are JSON escapes."""
        separators = (",", ":") if indent is None else None
        self.out.write(json.dumps(doc, indent=indent, separators=separators, ensure_ascii=True) + "\n")
        self.out.flush()

    def show(self, doc: Any, plain: Callable[[Any], str]) -> None:
        """JSON with C{--json}, else the plain rendering of C{doc}."""
        if self.asJSON:
            self.json(doc)
        else:
            self.text(plain(doc))

    def note(self, text: str) -> None:
        """A line on standard error (warnings, progress), escaped."""
        self.err.write(f"vesyncctl: {printable(text)}\n")
        self.err.flush()

    def error(self, code: str, message: str, usage: str = "") -> None:
        """Tell a failure: one line on standard error (after the usage, for a usage error in plain mode),
        and with C{--json} also C{{"error": {"code", "message"}}} on standard output for scripts."""
        if self.asJSON:
            self.json({"error": {"code": code, "message": message}})
        elif usage:
            self.err.write(printableLines(usage))
        self.note(message)
