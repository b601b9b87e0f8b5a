"""
vesyncctl's plain output for automation (timers, schedules, away mode, rules) and energy insight
(cost, period totals, the always-on baseline, the cost table, switch history).

Every field goes through L{printable} (directly or through L{table}): plug names come from the network.
"""

from __future__ import annotations

from typing import Any

from vesyncd.cli.formatting import duration, num, table
from vesyncd.escape import printable

#: ISO 4217 currencies shown without decimals (the rest with two).
_NO_DECIMALS = frozenset({"JPY", "KRW", "ISK", "CLP", "VND", "UGX", "PYG", "XOF", "XAF"})


def money(value: Any, currency: Any) -> str:
    """A cost with its currency (C{0.42 EUR}), or C{-} without a tariff."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not currency:
        return "-"
    digits = 0 if currency in _NO_DECIMALS else 2
    return f"{value:.{digits}f} {printable(currency)}"


def localTime(iso: Any) -> str:
    """A local ISO time as C{2026-12-02 18:30} (seconds shown only when not zero)."""
    if not isinstance(iso, str) or len(iso) < 19:
        return printable(iso) if iso else "-"
    text = iso[:19].replace("T", " ")
    return text[:16] if text.endswith(":00") else text


def timerText(timer: dict[str, Any] | None) -> str:
    """A countdown as C{off at 2026-12-02 12:30 (in 29 min 40 s)}, or C{none}."""
    if not timer:
        return "none"
    if timer.get("waiting"):
        return f"{printable(timer.get('switch'))} when the plug is back (due {localTime(timer.get('at'))})"
    return f"{printable(timer.get('switch'))} at {localTime(timer.get('at'))} (in {duration(timer.get('left_s'))})"


def scheduleWhen(schedule: dict[str, Any]) -> str:
    """When a schedule runs: C{18:30 mon-fri}, C{sunset-30m daily}, C{07:00 once 2026-12-24}."""
    at = str(schedule.get("at") or "")
    at = at[:5] if at.endswith(":00") and at[:2].isdigit() else at
    if schedule.get("once"):
        return f"{at} once {schedule['once']}"
    days = schedule.get("days") or []
    return f"{at} " + ("daily" if len(days) == 7 else ",".join(str(d) for d in days))


def formatSchedules(schedules: list[dict[str, Any]], names: dict[str, str]) -> str:
    """The table of C{schedule list}."""
    if not schedules:
        return "no schedules: add one with `vesyncctl schedule add PLUG on --at 18:30`\n"
    rows = [[s.get("id") or "-", names.get(s.get("plug") or "", s.get("plug") or "-"), s.get("switch") or "-",
             scheduleWhen(s), "yes" if s.get("enabled") else "no", localTime(s.get("next"))] for s in schedules]
    return table(rows, ["ID", "PLUG", "SWITCH", "WHEN", "ENABLED", "NEXT"])


def ruleWhen(rule: dict[str, Any]) -> str:
    """A rule's condition: C{above 2000 W for 1 min}, C{done below 5 W for 3 min}."""
    kind = str(rule.get("when") or "").replace("_", " ")
    return f"{printable(kind)} {num(rule.get('watts'), 'W', 0)} for {duration(rule.get('for_s'))}"


def formatRules(rules: list[dict[str, Any]], names: dict[str, str]) -> str:
    """The table of C{rule list}."""
    if not rules:
        return "no rules: add one with `vesyncctl rule add PLUG --above 2000 --for 1m --then off`\n"
    rows = [[r.get("id") or "-", names.get(r.get("plug") or "", r.get("plug") or "-"), ruleWhen(r),
             r.get("then") or "-", r.get("state") or "-"] for r in rules]
    return table(rows, ["ID", "PLUG", "WHEN", "THEN", "STATE"])


def awayText(away: dict[str, Any] | None) -> str:
    """Away mode as C{18:00 to 23:30, next: on at 2026-12-02 18:07}, or C{off}."""
    if not away:
        return "off"
    start, end = str(away.get("from") or "")[:5], str(away.get("to") or "")[:5]
    text = f"{printable(start)} to {printable(end)}"
    if away.get("next_change"):
        text += f", next: {printable(away.get('next_switch'))} at {localTime(away.get('next_change'))}"
    return text


def automationFields(auto: dict[str, Any]) -> list[tuple[str, str]]:
    """C{status}'s automation lines: timer, schedules, rules, away and the next action."""
    fields = [("Timer", timerText(auto.get("timer")))]
    schedules = auto.get("schedules") or []
    fields.append(("Schedules", "; ".join(f"{s.get('id')} {s.get('switch')} {scheduleWhen(s)}"
                                          + ("" if s.get("enabled") else " (disabled)") for s in schedules)
                   or "none"))
    rules = auto.get("rules") or []
    fields.append(("Rules", "; ".join(f"{r.get('id')} {ruleWhen(r)}: {r.get('then')} ({r.get('state')})"
                                      for r in rules) or "none"))
    fields.append(("Away", awayText(auto.get("away"))))
    nxt = auto.get("next")
    fields.append(("Next", f"{printable(nxt.get('switch'))} at {localTime(nxt.get('at'))} "
                           f"({printable(nxt.get('cause'))})" if isinstance(nxt, dict) else "nothing planned"))
    return fields


def energyFields(periods: dict[str, Any], baseline: dict[str, Any]) -> list[tuple[str, str]]:
    """C{status}'s energy lines: yesterday to this year with cost, and the always-on baseline."""
    currency = periods.get("currency")
    fields = []
    for key, label in (("yesterday", "Yesterday"), ("week", "This week"), ("month", "This month"),
                       ("year", "This year")):
        wh = periods.get(f"{key}_wh")
        text = num(wh / 1000 if isinstance(wh, (int, float)) else None, "kWh", 3)
        cost = periods.get(f"{key}_cost")
        fields.append((label, text + (f"  {money(cost, currency)}" if cost is not None else "")))
    watts = baseline.get("baseline_w")
    if isinstance(watts, (int, float)):
        text = f"{num(watts, 'W')} ({num(baseline.get('baseline_yearly_kwh'), 'kWh', 0)} a year"
        yearly = baseline.get("baseline_yearly_cost")
        text += f", {money(yearly, baseline.get('currency'))})" if yearly is not None else ")"
    else:
        text = "not known yet (needs a day of readings)"
    fields.append(("Always on", text))
    return fields


def formatCostTable(doc: dict[str, Any]) -> str:
    """The table of C{vesyncctl cost}: one row per plug, largest first, and the total."""
    currency = doc.get("currency")
    plugs = doc.get("plugs") or []
    title = f"energy and cost in {printable(doc.get('month'))}\n"
    if not plugs:
        return title + "no energy recorded in this month\n"
    rows = [[p.get("name") or p.get("plug") or "-", num((p.get("wh") or 0) / 1000, "kWh", 3),
             money(p.get("cost"), currency)] for p in plugs]
    rows.append(["total", num((doc.get("total_wh") or 0) / 1000, "kWh", 3), money(doc.get("total_cost"), currency)])
    text = title + table(rows, ["PLUG", "ENERGY", "COST"], right={1, 2})
    charge = doc.get("daily_charge_total")
    if isinstance(charge, (int, float)) and charge:
        text += f"plus daily charges of {money(charge, currency)} for the house\n"
    if not currency:
        text += "no tariff: start vesyncd with --currency and --price-kwh to see cost\n"
    return text


def formatSwitches(switches: list[dict[str, Any]], name: str) -> str:
    """The table of C{vesyncctl history}: newest first, each switch with its cause."""
    if not switches:
        return f"{printable(name)}: no switches recorded\n"
    rows = [[s.get("at") or "-", "-" if s.get("relay") is None else ("on" if s.get("relay") else "off"),
             s.get("cause") or "-"] for s in switches]
    return f"{printable(name)}: latest switches\n" + table(rows, ["TIME", "RELAY", "CAUSE"])
