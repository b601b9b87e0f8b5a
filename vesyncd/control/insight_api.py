"""
The control plane's energy-insight requests (cost, period totals, the always-on baseline, the cost
table, the hourly CSV export and the switch history), a part of L{vesyncd.control.api.ControlCore}.

They call C{self.insight} (an C{EnergyInsight}, docs/energy.md); a daemon built without it answers
with L{c.Refused}.  Dates are checked here, so a malformed one is a L{c.UsageError} naming the option.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred

from vesyncd.control import commands as c
from vesyncd.control.validate import optionalText, text

_MONTH = re.compile(r"\d{4}-\d{2}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parseDay(value: Any, field: str) -> date:
    """A C{YYYY-MM-DD} date; L{c.UsageError} naming C{field} otherwise."""
    value = text(value, field, 16)
    try:
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise c.UsageError(f"{field}: {str(value)[:16]!r} is not a date (YYYY-MM-DD)") from None


def parseMonth(value: str | None) -> str | None:
    """A C{YYYY-MM} month (None: this month); L{c.UsageError} naming C{--month} otherwise."""
    if value is None:
        return None
    if not _MONTH.fullmatch(value) or not 1 <= int(value[5:]) <= 12:
        raise c.UsageError(f"--month: {value[:16]!r} is not a month (YYYY-MM)")
    return value


class InsightRequests:
    """Energy-insight requests over C{self.insight} (an C{EnergyInsight} or None) and C{self.hub}."""

    insight: Any
    hub: Any
    _call: Callable[..., Deferred]
    plugId: Callable[[Any], str]

    def energyInsight(self) -> Any:
        """The energy insight; L{c.Refused} when the daemon runs without it."""
        if self.insight is None:
            raise c.Refused("cost: this vesyncd runs without energy insight")
        return self.insight

    def pricedHistory(self, plugId: str, period: str, value: str) -> Deferred:
        """A plug's history of one period with the cost of each bucket (see docs/energy.md)."""
        return maybeDeferred(self.energyInsight().history, plugId, period, value, cost=True)

    def energySummary(self, ref: str) -> Deferred:
        """C{{"periods": ..., "baseline": ...}}: today to this year's energy and cost, and the baseline."""

        def go() -> Deferred:
            insight = self.energyInsight()
            plugId = self.plugId(ref)
            return maybeDeferred(insight.periods, plugId).addCallback(
                lambda periods: {"periods": periods, "baseline": insight.baseline(plugId)})

        return self._call(go)

    def costTable(self, month: str | None = None) -> Deferred:
        """Every plug's energy and cost in a month, largest first, with the totals."""
        return self._call(lambda: self.energyInsight().costTable(parseMonth(optionalText(month, "--month", 16))))

    def export(self, ref: str, start: str, end: str) -> Deferred:
        """A plug's hourly CSV for local dates C{start} to C{end}, both included (at most
        L{c.MAX_EXPORT_DAYS} days: clients ask in pieces)."""

        def go() -> Deferred:
            first, last = parseDay(start, "--from"), parseDay(end, "--to")
            if last < first:
                raise c.UsageError("--to: the last day comes before --from")
            if (last - first).days >= c.MAX_EXPORT_DAYS:
                raise c.InvalidArgument(f"one export request covers at most {c.MAX_EXPORT_DAYS} days")
            return maybeDeferred(self.energyInsight().hourlyCSV, self.plugId(ref), first.isoformat(),
                                 last.isoformat())

        return self._call(go)

    def switchHistory(self, ref: str, limit: int | None = None) -> Deferred:
        """A plug's latest relay changes with their causes, newest first."""

        def go() -> Deferred:
            wanted = c.MAX_HISTORY if limit is None else limit
            if not isinstance(wanted, int) or not 1 <= wanted <= c.MAX_HISTORY:
                raise c.InvalidArgument(f"limit is 1 to {c.MAX_HISTORY}")
            return maybeDeferred(self.energyInsight().switches, self.plugId(ref), wanted)

        return self._call(go)
