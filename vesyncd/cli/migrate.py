"""
C{vesyncctl migrate --to postgresql://...}: copy the state directory's SQLite database into an empty
PostgreSQL database and verify the copy (L{vesyncd.storage.migrate}), with vesyncd stopped.

It runs on this machine without the daemon: a daemon that answers on the state directory's control
socket, or that is writing to the database, makes it refuse.  The password of the URL is never shown.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from vesyncd import paths
from vesyncd.cli.output import EXIT_OK, EXIT_USAGE, CLIError, Output


def addParser(sub: Any) -> None:
    """The C{migrate} command's arguments (C{--state-dir} is a global option)."""
    migrate = sub.add_parser("migrate", help="copy the SQLite state into an empty PostgreSQL database (vesyncd stopped)")
    migrate.add_argument("--to", dest="to", required=True, metavar="URL",
                         help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    migrate.add_argument("--force", action="store_true", help="replace what the target database already holds")


def daemonAnswers(stateDir: Path, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the state directory's control socket."""
    path = stateDir / paths.CONTROL_SOCKET
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def formatSummary(doc: dict[str, Any]) -> str:
    """The plain summary: what was copied where, and that it verified."""
    rows = doc["rows"]
    lines = [f"copied {doc['source']} to {doc['target']} in {doc['seconds']:.1f} s",
             "  " + ", ".join(f"{table} {n}" for table, n in rows.items()),
             f"verified: row counts of {len(rows)} tables and the energy of {doc['plugs']} plugs match "
             f"({doc['energy_wh'] / 1000:.3f} kWh in all)",
             f"start vesyncd with --database {doc['target']} (with the real password)"]
    return "\n".join(lines) + "\n"


def runMigrate(args: argparse.Namespace, output: Output) -> int:
    """Carry out C{migrate}; raises L{CLIError} with one line when it cannot or the check fails."""
    from vesyncd.storage import migrate, postgres

    if not postgres.isDatabaseURL(args.to):
        raise CLIError(f"--to {postgres.redact(str(args.to))[:120]!r} is not a PostgreSQL URL: give "
                       f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE", "usage", EXIT_USAGE)
    stateDir = Path(args.state_dir).expanduser() if args.state_dir else paths.defaultStateDir()
    if daemonAnswers(stateDir):
        raise CLIError(f"vesyncd is running with state directory {stateDir} (its control socket answers): "
                       f"stop it before migrating", "running")
    try:
        summary = migrate.migrateToPostgres(stateDir / paths.DATABASE, args.to, force=args.force)
    except migrate.MigrationError as e:
        raise CLIError(postgres.scrub(str(e), args.to), "migrate") from None
    output.show(summary.asDict(), formatSummary)
    return EXIT_OK
