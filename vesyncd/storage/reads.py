"""
The store's reads of plug rows and energy totals, each a plain function of a connection (SQLite or
L{vesyncd.storage.postgres}): run blocking at start-up, before the reactor, or in the writer thread
through L{vesyncd.storage.store.Store.read}.
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any

from twisted.logger import Logger

from vesyncd.core.model import PlugState
from vesyncd.storage.schema import PLUG_COLUMNS, localDay, plugFromRow

log = Logger()


def loadPlugs(conn: Any) -> list[PlugState]:
    """Every stored plug as an offline L{PlugState}; unreadable rows are logged and skipped."""
    plugs = []
    for row in conn.execute(f"SELECT {', '.join(PLUG_COLUMNS)} FROM plugs"):
        try:
            plugs.append(plugFromRow(row))
        except Exception:
            log.failure("store: skipping an unreadable plug row")
    return plugs


def readPlug(conn: Any, plugId: str) -> PlugState | None:
    """The plug's row as an offline L{PlugState}, or None when it has none."""
    row = conn.execute(f"SELECT {', '.join(PLUG_COLUMNS)} FROM plugs WHERE id = ?", (plugId,)).fetchone()
    return None if row is None else plugFromRow(row)


def loadEnergy(conn: Any, now: float, zone: tzinfo) -> tuple[dict[str, int], dict[str, int], date]:
    """Lifetime and today's watt-seconds per plug from the rollups, and today's local date in C{zone}.

    Each plug's months are summed and its row of today looked up on the daily table's key (every
    daily row has its month's row, written in the same transaction); a query on the day alone would
    scan every daily row: plugs x days of history.
    """
    today = localDay(now, zone)
    lifetime: dict[str, int] = {}
    todays: dict[str, int] = {}
    # The LEFT JOIN keeps the grouped months as the outer loop: days is searched, never scanned.
    rows = conn.execute(
        "SELECT m.plug, m.ws, d.ws FROM (SELECT plug, SUM(ws) AS ws FROM months GROUP BY plug) AS m"
        " LEFT JOIN days AS d ON d.plug = m.plug AND d.day = ?", (today.isoformat(),))
    for plug, total, ws in rows:
        lifetime[plug] = int(total)
        if ws is not None:
            todays[plug] = int(ws)
    return lifetime, todays, today


def readEnergy(conn: Any, plugId: str, day: date) -> tuple[int, int]:
    """The plug's lifetime and C{day}'s watt-seconds in the rollups."""
    (lifetime,) = conn.execute("SELECT COALESCE(SUM(ws), 0) FROM months WHERE plug = ?", (plugId,)).fetchone()
    row = conn.execute("SELECT ws FROM days WHERE plug = ? AND day = ?", (plugId, day.isoformat())).fetchone()
    return int(lifetime), int(row[0]) if row is not None else 0
