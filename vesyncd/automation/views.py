"""
The JSON shapes the engine hands to front ends (documented in C{docs/automation.md}): one function per
item kind, so the control port, HTTP, the web page and MQTT all show the same fields.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from vesyncd.automation.model import Away, Rule, Schedule, Timer
from vesyncd.automation.parse import formatClock, formatDays


def localTime(ts: float | None, zone: tzinfo) -> str | None:
    """POSIX time as local ISO 8601 with its offset (e.g. C{"2026-03-29T03:00:00+02:00"}), or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds")


def switchText(on: bool) -> str:
    """C{"on"} or C{"off"}."""
    return "on" if on else "off"


def timerJSON(timer: Timer, now: float, zone: tzinfo, waiting: bool) -> dict[str, Any]:
    """C{{"plug", "switch", "at", "ts", "left_s", "waiting", "created_ts"}}; C{waiting} is true once the
    deadline passed while the plug was offline (it is switched when it comes back)."""
    return {"plug": timer.plug, "switch": switchText(timer.on), "at": localTime(timer.due, zone), "ts": timer.due,
            "left_s": max(0.0, timer.due - now), "waiting": waiting, "created_ts": timer.created}


def scheduleJSON(schedule: Schedule, nextTs: float | None, zone: tzinfo) -> dict[str, Any]:
    """C{{"id", "plug", "switch", "at", "days", "once", "enabled", "next", "next_ts", "last_run_ts"}}."""
    return {"id": schedule.id, "plug": schedule.plug, "switch": switchText(schedule.on), "at": schedule.at.text(),
            "days": formatDays(schedule.days) if schedule.once is None else [],
            "once": schedule.once.isoformat() if schedule.once else None, "enabled": schedule.enabled,
            "next": localTime(nextTs, zone), "next_ts": nextTs, "last_run_ts": schedule.last_run}


def ruleJSON(rule: Rule, state: str, running: bool | None) -> dict[str, Any]:
    """C{{"id", "plug", "when", "watts", "for_s", "then", "enabled", "state", "running"}}."""
    return {"id": rule.id, "plug": rule.plug, "when": rule.when, "watts": rule.watts, "for_s": rule.seconds,
            "then": rule.then, "enabled": rule.enabled, "state": state, "running": running}


def awayJSON(away: Away, window: tuple[float, float] | None, change: tuple[float, bool] | None,
             zone: tzinfo) -> dict[str, Any]:
    """C{{"plug", "from", "to", "window_start", "window_end", "next_change", "next_switch", "next_ts"}}."""
    return {"plug": away.plug, "from": formatClock(away.start), "to": formatClock(away.end),
            "window_start": localTime(window[0], zone) if window else None,
            "window_end": localTime(window[1], zone) if window else None,
            "next_change": localTime(change[0], zone) if change else None,
            "next_switch": switchText(change[1]) if change else None,
            "next_ts": change[0] if change else None}


def actionJSON(ts: float, on: bool, cause: str, zone: tzinfo) -> dict[str, Any]:
    """C{{"switch", "at", "ts", "cause"}}: the next thing automation will do to a plug."""
    return {"switch": switchText(on), "at": localTime(ts, zone), "ts": ts, "cause": cause}
