"""
The SQLite L{IEnergyLedger}: every report stored raw and rolled up per hour, day and month.

It gives the same figures as L{vesyncd.core.energy.MemoryLedger}.  C{summary} is synchronous, so the
lifetime and today's totals live in memory (loaded from the rollups at start, exact integer
watt-seconds); C{history} reads the rollups in the store's writer thread after writing what is
queued, so a report accounted a moment ago is in the answer.
"""

from __future__ import annotations

import math
from datetime import date, tzinfo
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from vesyncd.core.model import EnergySummary
from vesyncd.core.interfaces import IEnergyLedger
from vesyncd.core.periods import UNITS, LocalDays, buckets, zoneName
from vesyncd.storage.calendarspans import CalendarParts, calendarParts
from vesyncd.storage.store import Store

log = Logger()

#: Plug ids per query of L{SQLiteLedger.hourlyMany} (SQLite allows 32,766 parameters; PostgreSQL 65,535).
IDS_PER_QUERY = 500


#: Runs of one price at most in a priced span that L{SQLiteLedger.hourSumsMany} sums from the
#: rollups run by run; a span with more (time-of-use windows) has its hourly rows priced by a join.
MAX_PRICE_RUNS = 16


def _priceRuns(lo: int, prices: list[float]) -> list[tuple[int, int, float]]:
    """The hours C{lo, lo + 1, ...} with C{prices} as C{(first, after, price)} runs of one price."""
    runs: list[tuple[int, int, float]] = []
    for offset, price in enumerate(prices):
        if runs and runs[-1][2] == price:
            runs[-1] = (runs[-1][0], lo + offset + 1, price)
        else:
            runs.append((lo + offset, lo + offset + 1, price))
    return runs


@implementer(IEnergyLedger)
class SQLiteLedger:
    """Energy accounting persisted through a L{Store}; lifetime totals only ever grow."""

    def __init__(self, store: Store, now: float) -> None:
        self.store = store
        self.zone: tzinfo = store.zone
        self._localDay = LocalDays(self.zone)
        self._lifetime, todays, today = store.loadEnergy(now)
        self._today: dict[str, tuple[date, int]] = {p: (today, ws) for p, ws in todays.items()}
        #: Hour spans cut into months, days and hours (L{calendarParts}), used by the writer thread only.
        self._parts: dict[tuple[int, int], CalendarParts] = {}

    def record(self, plugId: str, at: float, wattSeconds: int, seconds: int) -> None:
        """Count one report in memory at once and queue it for the database."""
        try:
            ws, secs = int(wattSeconds), int(seconds)
        except (TypeError, ValueError):
            ws = secs = -1
        if ws < 0 or secs < 0 or not isinstance(at, (int, float)) or at != at:
            # Never subtract: a negative or malformed report would shrink the lifetime counter.
            self.store.stats["reports_refused"] += 1
            log.warn("store: refusing a malformed report from {plug}: e={e!r} t={t!r}", plug=plugId,
                     e=wattSeconds, t=seconds)
            return
        self._lifetime[plugId] = self._lifetime.get(plugId, 0) + ws
        day = self._localDay(at)
        previous = self._today.get(plugId)
        self._today[plugId] = (day, (previous[1] if previous and previous[0] == day else 0) + ws)
        self.store.addReport(plugId, float(at), ws, secs)

    def summary(self, plugId: str, now: float) -> EnergySummary:
        """Today's watt-hours (zero once the day has turned) and lifetime watt-hours, from memory."""
        today = self._today.get(plugId)
        todayWs = today[1] if today and today[0] == self._localDay(now) else 0
        return EnergySummary(today_wh=todayWs / 3600.0, lifetime_wh=self._lifetime.get(plugId, 0) / 3600.0)

    def lifetime(self, plugId: str) -> float:
        """Lifetime watt-hours alone, from memory."""
        return self._lifetime.get(plugId, 0) / 3600.0

    def history(self, plugId: str, period: str, value: str) -> Deferred:
        """Every bucket of a day, month or year from the rollups (see L{IEnergyLedger.history})."""
        try:
            spans = buckets(period, value, self.zone)
        except ValueError as e:
            return fail(e)
        if not isinstance(plugId, str):
            return fail(ValueError("plug id must be text"))
        d = self.store.flush()
        d.addErrback(lambda f: None)  # a failing write must not hide what is already stored
        d.addCallback(lambda _: self.store.read(self._read, plugId, period, spans))
        d.addCallback(lambda rows: self._document(plugId, period, value, rows))
        return d

    def hourly(self, plugId: str, startTs: float, endTs: float) -> Deferred:
        """The plug's hourly rows in C{[startTs, endTs)} from the C{hours} table, after writing what is
        queued (see L{IEnergyLedger.hourly})."""
        if not isinstance(plugId, str):
            return fail(ValueError("plug id must be text"))
        lo, hi = math.ceil(startTs / 3600), math.ceil(endTs / 3600)
        d = self.store.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.store.read(self._readHours, plugId, lo, hi))
        return d

    def _readHours(self, plugId: str, lo: int, hi: int) -> list[tuple[float, float]]:
        """Rows of hour numbers C{[lo, hi)} (writer thread)."""
        rows = self.store.connection().execute(
            "SELECT hour, ws FROM hours WHERE plug = ? AND hour >= ? AND hour < ? ORDER BY hour", (plugId, lo, hi))
        return [(float(hour * 3600), ws / 3600.0) for hour, ws in rows]

    def hourlyMany(self, plugIds: Sequence[str], startTs: float, endTs: float) -> Deferred:
        """L{hourly} of many plugs in one read of the writer thread (see L{IEnergyLedger.hourlyMany})."""
        ids = [p for p in plugIds if isinstance(p, str)]
        lo, hi = math.ceil(startTs / 3600), math.ceil(endTs / 3600)
        d = self.store.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.store.read(self._readHoursMany, ids, lo, hi))
        return d

    def _readHoursMany(self, plugIds: list[str], lo: int, hi: int) -> dict[str, list[tuple[float, float]]]:
        """Rows of hour numbers C{[lo, hi)} of the plugs, by plug, in chunks of L{IDS_PER_QUERY} ids
        (writer thread)."""
        conn = self.store.connection()
        out: dict[str, list[tuple[float, float]]] = {}
        for start in range(0, len(plugIds), IDS_PER_QUERY):
            chunk = plugIds[start:start + IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            for plug, hour, ws in conn.execute(
                    f"SELECT plug, hour, ws FROM hours WHERE plug IN ({marks}) AND hour >= ? AND hour < ?"
                    " ORDER BY plug, hour", (*chunk, lo, hi)):
                out.setdefault(plug, []).append((float(hour * 3600), ws / 3600.0))
        return out

    def _read(self, plugId: str, period: str, spans: list[Any]) -> list[int]:
        """Watt-seconds per bucket (writer thread): hours for a day, days for a month, months for a year."""
        conn = self.store.connection()
        if period == "day":
            lo = int(spans[0][0].timestamp() // 3600)
            hi = int(spans[-1][1].timestamp() // 3600)
            hours = dict(conn.execute("SELECT hour, ws FROM hours WHERE plug = ? AND hour >= ? AND hour < ?",
                                      (plugId, lo, hi)))
            return [sum(hours.get(h, 0) for h in range(int(s.timestamp() // 3600), int(e.timestamp() // 3600)))
                    for s, e, _ in spans]
        table, column = ("days", "day") if period == "month" else ("months", "month")
        labels = [label for _, _, label in spans]
        found = dict(conn.execute(f"SELECT {column}, ws FROM {table} WHERE plug = ? AND {column} >= ?"
                                  f" AND {column} <= ?", (plugId, labels[0], labels[-1])))
        return [found.get(label, 0) for label in labels]

    def _document(self, plugId: str, period: str, value: str, values: list[int]) -> dict[str, Any]:
        spans = buckets(period, value, self.zone)
        rows = [{"start": start.isoformat(), "label": label, "wh": round(ws / 3600.0, 6)}
                for (start, _end, label), ws in zip(spans, values)]
        return {"plug": plugId, "period": period, "value": value, "unit": UNITS[period],
                "timezone": zoneName(self.zone), "buckets": rows,
                "total_wh": round(sum(r["wh"] for r in rows), 6)}

    def reloadPlug(self, plugId: str) -> Deferred:
        """Re-read the plug's lifetime and today's totals from the rollups (after writing what is
        queued) and make the in-memory totals what the database holds plus what this node has
        queued for the plug but not yet written; fires with None.

        For a plug taken over from another node sharing the database: its reports counted there are
        in the rollups, and reports this node counted meanwhile are neither lost nor counted twice.
        A failed read leaves the totals as they were and fails the Deferred.
        """
        if not isinstance(plugId, str):
            return fail(ValueError("plug id must be text"))
        day = self._localDay(self.store.clock.seconds())
        d = self.store.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.store.read(self.store.readEnergy, plugId, day))

        def apply(stored: tuple[int, int]) -> None:
            queuedTotal, queuedToday = self.store.unwritten(plugId, day)
            lifetime, today = stored[0] + queuedTotal, stored[1] + queuedToday
            if lifetime:
                self._lifetime[plugId] = lifetime
            else:
                self._lifetime.pop(plugId, None)
            if today:
                self._today[plugId] = (day, today)
            else:
                self._today.pop(plugId, None)

        return d.addCallback(apply)

    def forget(self, plugId: str) -> None:
        """Drop the plug's totals now and its rows with the next write."""
        self._lifetime.pop(plugId, None)
        self._today.pop(plugId, None)
        self.store.deletePlug(plugId)

    def hourSums(self, plugId: str, spans: Sequence[tuple[int, int]],
                 weight: Callable[[int], float] | None = None) -> Deferred:
        """Per span C{[lo, hi)} of hour numbers, the plug's C{(watt-seconds, weighted)}: an SQL sum on
        the C{(plug, hour)} key, and with C{weight} also the sum of each hour's watt-hours x
        C{weight(hour)} (called in the writer thread); read after writing what is queued."""
        if not isinstance(plugId, str):
            return fail(ValueError("plug id must be text"))
        d = self.store.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.store.read(self._sumHours, plugId, [(int(lo), int(hi)) for lo, hi in spans],
                                               weight))
        return d

    def _sumHours(self, plugId: str, spans: list[tuple[int, int]],
                  weight: Callable[[int], float] | None) -> list[tuple[int, float]]:
        """The sums of L{hourSums} (writer thread)."""
        conn = self.store.connection()
        out: list[tuple[int, float]] = []
        for lo, hi in spans:
            if weight is None:
                out.append((self._sumCalendar(conn, plugId, lo, hi), 0.0))
                continue
            total, weighted = 0, 0.0
            for hour, ws in conn.execute("SELECT hour, ws FROM hours WHERE plug = ? AND hour >= ? AND hour < ?"
                                         " ORDER BY hour", (plugId, lo, hi)):
                total += ws
                weighted += ws / 3600.0 * weight(hour)
            out.append((total, weighted))
        return out

    def hourSumsMany(self, plugIds: Sequence[str], spans: Sequence[tuple[int, int]],
                     weight: Callable[[int], float] | None = None) -> Deferred:
        """L{hourSums} of many plugs over the same spans in one read of the writer thread, the plugs
        taken L{IDS_PER_QUERY} at a time (a few statements per span instead of a few per plug and
        span); fires with C{{plugId: [(watt-seconds, weighted), ...]}} for every text id given."""
        ids = [p for p in plugIds if isinstance(p, str)]
        d = self.store.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.store.read(self._sumHoursMany, ids, [(int(lo), int(hi)) for lo, hi in spans],
                                               weight))
        return d

    def _sumHoursMany(self, plugIds: list[str], spans: list[tuple[int, int]],
                      weight: Callable[[int], float] | None) -> dict[str, list[tuple[int, float]]]:
        """The sums of L{hourSumsMany} (writer thread)."""
        conn = self.store.connection()
        totals = {p: [[0, 0.0] for _ in spans] for p in plugIds}
        postgres = getattr(conn, "backend", "sqlite") == "postgresql"
        for n, (lo, hi) in enumerate(spans):
            if hi <= lo:
                continue
            if weight is None:
                # Unpriced: the span's watt-seconds from the rollups, as one run at no price.
                self._sumRuns(conn, plugIds, [(lo, hi, 0.0)], totals, n)
                continue
            hours = list(range(lo, hi))
            prices = [float(weight(h)) for h in hours]
            runs = _priceRuns(lo, prices)
            if len(runs) <= MAX_PRICE_RUNS:
                # Few prices in a row (a flat price that changed on a date): each run of one
                # price summed from the rollups, like an unpriced span, then priced.
                self._sumRuns(conn, plugIds, runs, totals, n)
                continue
            # Priced by the hour inside the database: each hour's price joined to its rows, so a
            # year of 10,000 plugs' hours (87 million rows) never passes through Python.
            if postgres:
                source, head = "unnest(?::bigint[], ?::double precision[]) AS p (hour, price)", [hours, prices]
            else:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS hour_prices"
                             " (hour INTEGER PRIMARY KEY, price REAL NOT NULL)")
                conn.execute("DELETE FROM temp.hour_prices")
                conn.executemany("INSERT INTO temp.hour_prices (hour, price) VALUES (?, ?)", zip(hours, prices))
                source, head = "temp.hour_prices AS p", []
            for start in range(0, len(plugIds), IDS_PER_QUERY):
                chunk = plugIds[start:start + IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                for plug, ws, weighted in conn.execute(
                        f"SELECT h.plug, SUM(h.ws), SUM(h.ws * p.price) FROM hours AS h JOIN {source}"
                        f" ON p.hour = h.hour WHERE h.plug IN ({marks}) AND h.hour >= ? AND h.hour < ?"
                        " GROUP BY h.plug", (*head, *chunk, lo, hi)):
                    totals[plug][n] = [int(ws), float(weighted) / 3600.0]
        return {p: [(ws, weighted) for ws, weighted in sums] for p, sums in totals.items()}

    def _sumRuns(self, conn: Any, plugIds: list[str], runs: list[tuple[int, int, float]],
                 totals: dict[str, list[list[Any]]], n: int) -> None:
        """Add to each plug's span C{n} the watt-seconds of every run C{(lo, hi, price)} of hours of
        one price, summed from the rollups, and those watt-hours at that price (0.0 for an unpriced
        span) (writer thread)."""
        for lo, hi, price in runs:
            for start in range(0, len(plugIds), IDS_PER_QUERY):
                chunk = plugIds[start:start + IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                for table, column, first, last in self._calendarPieces(lo, hi):
                    for plug, ws in conn.execute(
                            f"SELECT plug, SUM(ws) FROM {table} WHERE plug IN ({marks}) AND {column} >= ?"
                            f" AND {column} <= ? GROUP BY plug", (*chunk, first, last)):
                        acc = totals[plug][n]
                        acc[0] += int(ws)
                        acc[1] += int(ws) / 3600.0 * price

    def _calendarPieces(self, lo: int, hi: int) -> list[tuple[str, str, Any, Any]]:
        """Hours C{[lo, hi)} as inclusive C{(table, column, first, last)} ranges of the hour, day and
        month rollups (L{calendarParts}, cached)."""
        parts = self._parts.get((lo, hi))
        if parts is None:
            if len(self._parts) >= 64:
                self._parts.clear()
            parts = self._parts[(lo, hi)] = calendarParts(lo, hi, self.zone)
        return [(table, column, first, last)
                for table, column, pieces in (("hours", "hour", [(a, b - 1) for a, b in parts.hours]),
                                              ("days", "day", parts.days), ("months", "month", parts.months))
                for first, last in pieces]

    def _sumCalendar(self, conn: Any, plugId: str, lo: int, hi: int) -> int:
        """The plug's watt-seconds in hours C{[lo, hi)} from the month, day and hour rollups (writer thread)."""
        total = 0
        for table, column, first, last in self._calendarPieces(lo, hi):
            (ws,) = conn.execute(f"SELECT COALESCE(SUM(ws), 0) FROM {table} WHERE plug = ? AND {column} >= ?"
                                 f" AND {column} <= ?", (plugId, first, last)).fetchone()
            total += int(ws)
        return total
