"""
C{vesyncctl nodes}: the nodes of a cluster as the daemon asked sees them (docs/scaling.md).

L{addParser} adds the command to vesyncctl's parser; L{run} carries it out on a logged-in control client.
Plain output is one row per node (its plugs, leases and the oldest lease's age, its heartbeat's age,
alive or dead) and a line for the database and the broker; C{--json} prints the control port's answer as
it is.  On a daemon running alone it fails with the control port's C{not_clustered} error (exit code 1).
"""

from __future__ import annotations

import argparse
from typing import Any

from vesyncd.cli.formatting import duration, table
from vesyncd.cli.output import EXIT_OK, Output
from vesyncd.control.client import ControlClient


def addParser(sub: Any) -> argparse.ArgumentParser:
    """Add C{nodes} to vesyncctl's commands (before the global options are given to every command)."""
    return sub.add_parser("nodes", help="the nodes of a cluster: their plugs, lease ages, alive or dead")


def _count(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "-"


def _status(name: str, doc: Any) -> str | None:
    """One line about the database or the broker from the answer's object, or None when it says nothing."""
    if not isinstance(doc, dict) or not doc:
        return None
    parts = []
    kind = doc.get("kind") or doc.get("url") or doc.get("broker")
    if kind:
        parts.append(str(kind))
    for key, yes, no in (("reachable", "reachable", "NOT REACHABLE"), ("connected", "connected", "NOT CONNECTED")):
        if key in doc:
            parts.append(yes if doc[key] else no)
    if doc.get("schema") is not None:
        parts.append(f"schema {doc['schema']}")
    if doc.get("error"):
        parts.append(f"({doc['error']})")
    return f"{name}: {', '.join(parts) or 'unknown'}"


def formatNodes(cluster: dict[str, Any]) -> str:
    """The C{nodes} answer as a table and a summary (every cell escaped by L{table})."""
    rows = []
    for node in cluster.get("nodes") or []:
        name = str(node.get("name") or "?") + (" (this node)" if node.get("self") else "")
        rows.append([
            name,
            str(node.get("plug_address") or node.get("address") or "-"),
            _count(node.get("plugs")),
            _count(node.get("leases")),
            duration(node.get("lease_age_max")),
            duration(node.get("heartbeat_age")),
            "alive" if node.get("alive") else "DEAD",
        ])
    text = table(rows, ["NODE", "PLUG ADDRESS", "PLUGS", "LEASES", "OLDEST LEASE", "HEARTBEAT", "STATE"],
                 right={2, 3, 4, 5})
    text += (f"{_count(cluster.get('alive'))} alive, {_count(cluster.get('dead'))} dead, "
             f"{_count(cluster.get('plugs'))} plugs owned\n")
    for name in ("database", "broker"):
        line = _status(name, cluster.get(name))
        if line:
            text += line + "\n"
    return text


async def run(client: ControlClient, args: argparse.Namespace, output: Output) -> int:
    """C{vesyncctl nodes}: the control port's C{nodes} answer, as a table or JSON."""
    output.show(await client.nodes(), formatNodes)
    return EXIT_OK


#: The commands of this module, as vesyncctl's command table takes them.
COMMANDS = {"nodes": run}
