"""Where vesyncd keeps its state by default, shared by the daemon and C{vesyncctl}."""

from __future__ import annotations

import os
from pathlib import Path

TOKEN_FILE = "control.token"
CONTROL_SOCKET = "control.sock"
DATABASE = "vesyncd.sqlite3"


def defaultStateDir() -> Path:
    """C{/var/lib/vesyncd} for root, else C{$XDG_STATE_HOME/vesyncd} (C{~/.local/state/vesyncd})."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/vesyncd")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vesyncd"


def controlEndpoint(stateDir: Path) -> str:
    """The default control endpoint: a UNIX socket in the state directory, mode 0660."""
    return f"unix:{stateDir / CONTROL_SOCKET}:mode=660"
