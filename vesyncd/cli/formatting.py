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
from datetime import datetime, timezone
from typing import Any

from vesyncd.escape import printable

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


def displayNames(plugs: list[dict[str, Any]]) -> dict[str, str]:
    """Each plug's id and the name to show for it: its alias, else its id; a name that is also another
    plug's name or id gets the start of its own id, e.g. C{Lamp (3fa8c1d2)}, so no name is ambiguous."""
    taken: dict[str, int] = {}
    for p in plugs:
        for key in {str(p.get("alias") or p["id"]).lower(), str(p["id"]).lower()}:
            taken[key] = taken.get(key, 0) + 1
    names = {}
    for p in plugs:
        name = str(p.get("alias") or p["id"])
        names[p["id"]] = f"{name} ({str(p['id'])[:8]})" if p.get("alias") and taken[name.lower()] > 1 else name
    return names


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


def duration(seconds: Any) -> str:
    """Seconds as C{45 s}, C{12 min 5 s}, C{3 h 12 min} or C{2 d 4 h}; C{-} when unknown."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    if s < 86400:
        return f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")
    return f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 // 3600 else "")


#: Keys C{info} shows first, in this order (the daemon sends keys sorted).
INFO_ORDER = ("version", "pid", "uptime", "started", "state_dir", "address", "listeners", "plugs_known",
              "plugs_online", "plugs_pending")
#: Figures of a counter dict shown in C{info}; the rest are summed up as "N more".
INFO_FIGURES = 8


def infoValue(value: Any) -> str:
    """One C{info} value on one short line: numbers plain, dicts as C{name N, ...}, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v not in (0, None, {}, [], "")]
        if not items:
            return "none" if not value else "all 0"
        parts = [f"{printable(k).replace('_', ' ')} {infoValue(v)}" for k, v in items[:INFO_FIGURES]]
        more = len(items) - INFO_FIGURES
        return ", ".join(parts) + (f", {more} more" if more > 0 else "")
    if isinstance(value, (list, tuple)):
        return ":".join(infoValue(v) for v in value) if len(value) == 2 and isinstance(value[1], int) \
            else ", ".join(infoValue(v) for v in value)
    return printable(value)


def formatInfo(info: dict[str, Any]) -> str:
    """The daemon's facts as aligned C{key value} lines with units: the uptime in hours and minutes,
    one line per listener, counters summed up (zeros left out), no raw dicts."""
    rows: list[tuple[str, str]] = []
    first = [k for k in INFO_ORDER if k in info]
    for key, value in [(k, info[k]) for k in first] + [(k, v) for k, v in info.items() if k not in first]:
        if key == "uptime_s":
            continue  # the same as uptime
        label = printable(key).replace("_", " ") + ":"
        if key == "uptime":
            rows.append((label, duration(value)))
        elif key == "listeners" and isinstance(value, dict):
            for i, (name, address) in enumerate(value.items()):
                rows.append((label if i == 0 else "", f"{printable(name) + ':':<10} {printable(address)}"))
            if not value:
                rows.append((label, "none"))
        else:
            rows.append((label, infoValue(value)))
    width = max((len(k) for k, _ in rows), default=0) + 2
    return "".join(f"{k:<{width}}{v}".rstrip() + "\n" for k, v in rows)


def _cost(value: Any, currency: Any) -> str:
    """A cost for the energy table: two decimals and the currency, or C{-}."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not currency:
        return "-"
    return f"{value:.2f} {printable(currency)}"


def formatEnergy(history: dict[str, Any], name: str) -> str:
    """Per-hour, per-day or per-month buckets in kWh, with the total (and a cost column when priced)."""
    priced = "total_cost" in history
    currency = history.get("currency")
    rows = [[b["label"], f"{b['wh'] / 1000:.3f} kWh"] + ([_cost(b.get("cost"), currency)] if priced else [])
            for b in history["buckets"]]
    rows.append(["total", f"{history['total_wh'] / 1000:.3f} kWh"]
                + ([_cost(history.get("total_cost"), currency)] if priced else []))
    title = f"{printable(name)}: energy per {printable(history.get('unit', ''))} of " \
            f"{printable(history['period'])} {printable(history['value'])} ({printable(history.get('timezone', ''))})\n"
    header = [str(history.get("unit", "")).upper(), "ENERGY"] + (["COST"] if priced else [])
    text = title + table(rows, header, right={1, 2})
    if priced and not currency:
        text += "no tariff: start vesyncd with --currency and --price-kwh to see cost\n"
    elif priced and history.get("daily_charge_total"):
        text += f"plus daily charges of {_cost(history['daily_charge_total'], currency)} for the house\n"
    return text


def energyCSV(history: dict[str, Any]) -> str:
    """Buckets as CSV: C{start,label,wh} (and C{cost} when priced) and a C{total} row."""
    priced = "total_cost" in history
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", "label", "wh"] + [f"cost ({printable(history.get('currency') or '-')})"] * priced)
    for b in history["buckets"]:
        writer.writerow([printable(b["start"]), printable(b["label"]), b["wh"]] + [b.get("cost")] * priced)
    writer.writerow(["", "total", history["total_wh"]] + [history.get("total_cost")] * priced)
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


def ruleEventText(kind: str, data: dict[str, Any]) -> str:
    """A rule firing (C{rule r08b2de at 2150 W: off}) or a done rule's cycle (C{running} / C{finished})."""
    if kind == "rule_running":
        return f"rule {printable(data.get('rule'))} " + ("running" if data.get("running") else "finished")
    text = f"rule {printable(data.get('rule'))} at {num(data.get('power_w'), 'W')}: {printable(data.get('action'))}"
    if data.get("ok") is False:
        text += f" failed ({printable(data.get('error'))})"
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
    elif kind in ("rule", "rule_running"):
        detail, kind = ruleEventText(kind, data), None
    return " ".join(printable(part) for part in (event.get("at"), name, kind, detail) if part)
