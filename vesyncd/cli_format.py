"""
vesyncctl's plain (non-JSON) output: tables, plug details, energy, events.

Every string that reaches the terminal goes through L{printable}: plug names, firmware and model
texts come from the network, and a control character in one (an escape sequence, a bell, a
bidirectional override) must never act on the user's terminal.  Formatters escape each field, and
L{printableLines} escapes whole output once more, keeping only the line breaks the formatters made.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from datetime import datetime, timezone
from typing import Any

#: Unicode categories shown escaped: controls (C0, DEL, C1), format characters (bidirectional
#: overrides and isolates, zero-width joiners), surrogates, private use, unassigned, and the line
#: and paragraph separators that would start a new line.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: Any) -> str:
    """C{text} (any value, as its C{str}) with every control, format and separator character written
    as a visible escape such as C{\\x1b} or C{\\u202e}; other text, accents and emoji unchanged."""
    text = "" if text is None else str(text)
    if text.isascii() and text.isprintable():
        return text  # the common case, checked at C speed
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)


def printableLines(text: str) -> str:
    """Whole output made safe for a terminal: every line through L{printable}, line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def ago(iso: str | None, now: datetime | None = None) -> str:
    """An ISO 8601 time as C{"just now"}, C{"2 min ago"}, C{"3 h ago"}, C{"4 d ago"} or C{"never"}."""
    if not iso:
        return "never"
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return printable(iso)
    seconds = ((now or datetime.now(timezone.utc)) - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def num(value: Any, unit: str, digits: int = 1) -> str:
    """A number with its unit, or C{-} when unknown."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:.{digits}f} {unit}"


def table(rows: list[list[str]], header: list[str], right: frozenset[int] | set[int] = frozenset()) -> str:
    """Rows aligned in columns under a header (columns in C{right} right-aligned); cells are escaped."""
    cells = [[printable(cell) for cell in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        lines.append("  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines) + "\n"


def plugName(plug: dict[str, Any]) -> str:
    """A plug's alias, else its id, escaped."""
    return printable(plug.get("alias") or plug.get("id"))


def formatPlugs(plugs: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The human table of C{vesyncctl list}."""
    if not plugs:
        return "no plugs yet: point a plug at this server (see `vesyncctl doctor`)\n"
    rows = [[p.get("alias") or "-", p["id"], "online" if p.get("online") else "offline", p.get("relay") or "-",
             num(p.get("power_w"), "W"), num(p.get("voltage_v"), "V"),
             "-" if p.get("rssi_dbm") is None else f"{p['rssi_dbm']} dBm",
             num(p.get("energy_today_kwh"), "kWh", 3), num(p.get("energy_lifetime_kwh"), "kWh", 3),
             ago(p.get("last_seen"), now)] for p in plugs]
    return table(rows, ["NAME", "ID", "STATUS", "RELAY", "POWER", "VOLTAGE", "RSSI", "TODAY", "LIFETIME",
                        "LAST SEEN"], right={4, 5, 6, 7, 8})


def formatConflict(conflict: dict[str, Any]) -> str:
    """A takeover warning: which login fields differ from the first seen, and since when."""
    fields = [str(f) for f in conflict.get("fields") or []]
    first, now = conflict.get("first") or {}, conflict.get("now") or {}
    changes = ", ".join(f"{f} {first.get(f, '-')!s} -> {now.get(f, '-')!s}" for f in fields) or "login differs"
    return (f"{changes} (at {conflict.get('at') or '?'}): another device may use this id "
            f"(`vesyncctl clear-conflict` accepts the new login)")


def formatPlug(p: dict[str, Any], now: datetime | None = None) -> str:
    """The human form of one plug (C{vesyncctl status}), with a conflict and refused energy when present."""
    fields = [
        ("Name", p.get("alias") or "-"), ("ID", p["id"]), ("Online", "yes" if p.get("online") else "no"),
        ("Relay", f"{p.get('relay') or '-'}" + (f" ({p['relay_cause']})" if p.get("relay_cause") else "")),
        ("Power", num(p.get("power_w"), "W")), ("Voltage", num(p.get("voltage_v"), "V")),
        ("RSSI", "-" if p.get("rssi_dbm") is None else f"{p['rssi_dbm']} dBm"),
        ("Today", num(p.get("energy_today_kwh"), "kWh", 3)),
        ("Lifetime", num(p.get("energy_lifetime_kwh"), "kWh", 3)),
        ("Power-on", p.get("power_on") or "none"), ("Firmware", p.get("firmware") or "-"),
        ("Model", p.get("model") or "-"), ("Address", p.get("address") or "-"),
        ("First seen", p.get("first_seen") or "-"), ("Last seen", ago(p.get("last_seen"), now)),
    ]
    refused = p.get("energy_refused_wh")
    if isinstance(refused, (int, float)) and refused:
        fields.append(("Refused", f"{refused:.1f} Wh of energy reports exceeded the time they covered"))
    if isinstance(p.get("conflict"), dict):
        fields.append(("Conflict", formatConflict(p["conflict"])))
    return "".join(f"{k + ':':<12}{printable(v)}\n" for k, v in fields)


def formatPending(pending: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The table of C{vesyncctl pending}: plugs held until approved."""
    if not pending:
        return "no plugs wait for approval\n"
    rows = [[p.get("id") or "-", p.get("address") or "-", p.get("firmware") or "-", p.get("model") or "-",
             ago(p.get("first_seen") or p.get("since"), now)] for p in pending]
    return table(rows, ["ID", "ADDRESS", "FIRMWARE", "MODEL", "SEEN"]) + \
        "approve one with `vesyncctl approve ID`\n"


def formatInfo(info: dict[str, Any]) -> str:
    """The daemon's facts, one per line."""
    return "".join(f"{printable(k) + ':':<16}{printable(json.dumps(v) if isinstance(v, (dict, list)) else v)}\n"
                   for k, v in info.items())


def formatEnergy(history: dict[str, Any], name: str) -> str:
    """Per-hour, per-day or per-month buckets in kWh, with the total."""
    rows = [[b["label"], f"{b['wh'] / 1000:.3f} kWh"] for b in history["buckets"]]
    rows.append(["total", f"{history['total_wh'] / 1000:.3f} kWh"])
    title = f"{printable(name)}: energy per {printable(history.get('unit', ''))} of " \
            f"{printable(history['period'])} {printable(history['value'])} ({printable(history.get('timezone', ''))})\n"
    return title + table(rows, [str(history.get("unit", "")).upper(), "ENERGY"], right={1})


def energyCSV(history: dict[str, Any]) -> str:
    """Buckets as CSV: C{start,label,wh} and a C{total} row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", "label", "wh"])
    for b in history["buckets"]:
        writer.writerow([printable(b["start"]), printable(b["label"]), b["wh"]])
    writer.writerow(["", "total", history["total_wh"]])
    return out.getvalue()


def _relayWord(value: Any) -> str:
    return "-" if value is None else ("on" if value else "off")


def energyText(data: dict[str, Any]) -> str:
    """An energy report as Wh over its seconds, with the average power: C{energy 0.74 Wh over 133 s (avg 20 W)}."""
    ws, seconds = data.get("watt_seconds"), data.get("seconds")
    if not isinstance(ws, (int, float)):
        return "energy -"
    wh = ws / 3600.0
    text = f"energy {wh:.{2 if wh < 10 else 1}f} Wh over {printable(seconds)} s"
    average = data.get("average_w")
    if isinstance(average, (int, float)) and not isinstance(average, bool):
        text += f" (avg {average:.0f} W)" if average >= 10 else f" (avg {average:.1f} W)"
    return text


def formatEvent(event: dict[str, Any]) -> str:
    """One human line per event (the event shape of docs/control.md)."""
    name = event.get("name") or event.get("alias") or event.get("plug")
    kind = event.get("event")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    detail = ""
    if kind == "relay":
        detail = f"{_relayWord(data.get('relay'))} ({printable(data.get('cause'))})"
    elif kind == "runtime":
        detail = f"{num(data.get('power_w'), 'W')} {num(data.get('voltage_v'), 'V')}"
    elif kind == "energy":
        detail, kind = energyText(data), None
    elif kind == "rssi":
        detail = f"{printable(data.get('rssi_dbm'))} dBm"
    elif kind == "alias":
        detail = printable(repr(data.get("alias")))
    elif kind in ("online", "plug_new", "plug_pending"):
        detail = printable(data.get("address") or "")
    elif kind == "offline":
        detail = printable(data.get("reason") or "")
    elif kind == "power_on":
        detail = printable(data.get("power_on") or "none")
    elif kind == "plug_conflict":
        detail = printable(formatConflict(data)) if data.get("fields") else "cleared"
    return " ".join(printable(part) for part in (event.get("at"), name, kind, detail) if part)
