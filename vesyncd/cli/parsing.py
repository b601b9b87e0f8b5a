"""
Building vesyncctl's parser: commands that may have commands of their own, each given the global
options after its own, and plug arguments that shells complete from the daemon's plug names.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

#: Title of the global options' group in each command's help.
GLOBAL_TITLE = "global options (also accepted before the command)"

#: How shells complete a plug argument: functions of the completion script (vesyncd.cli.completion).
PLUG_COMPLETION = {"bash": "_vesyncctl_plugs", "zsh": "_vesyncctl_plugs"}


def plugArg(parser: argparse.ArgumentParser, help: str = "id, unique id prefix or alias") -> None:
    """Add the positional PLUG argument, completed from the daemon's plug names."""
    parser.add_argument("plug", help=help).complete = PLUG_COMPLETION  # type: ignore[attr-defined]


class Commands:
    """The command parsers, noting each command that runs (not a group such as C{schedule}), so every
    one gets the global options after its own."""

    def __init__(self, subparsers: Any) -> None:
        self.subparsers = subparsers
        self.leaves: list[tuple[str, argparse.ArgumentParser]] = []

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        """A command that runs."""
        parser = self.subparsers.add_parser(name, **kw)
        self.leaves.append((name, parser))
        return parser

    def group(self, name: str, dest: str, **kw: Any) -> "Commands":
        """A command with commands of its own (C{schedule add}, C{rule rm}): their L{Commands}."""
        parser = self.subparsers.add_parser(name, **kw)
        nested = Commands(parser.add_subparsers(dest=dest, required=True, metavar="ACTION"))
        nested.leaves = self.leaves
        return nested

    def addGlobals(self, addOptions: Callable[[Any, str], None]) -> None:
        """Give every command the global options (C{addOptions(group, name)}), in one group after its own."""
        for name, parser in self.leaves:
            addOptions(parser.add_argument_group(GLOBAL_TITLE), name)
