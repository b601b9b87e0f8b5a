"""
The energy insight facade the front ends call: a plug's period totals and cost, its always-on power,
its live chart, its history with cost, the month's cost table, an hourly CSV, the house's totals and
a plug's recent relay switches.

It follows the hub (power readings feed the baseline and the chart; a forgotten plug is dropped) and
reads hourly rows from the ledger (L{vesyncd.core.interfaces.IEnergyLedger.hourly}); every figure is
computed by the pure functions of this package, so the control port, HTTP and MQTT all show the
same numbers.  Bad input raises L{InsightError} (a C{ValueError}) naming the field.
"""

from __future__ import annotations

import collections
import math
import re
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Callable, Iterator, Sequence

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime

from vesyncd.core.model import ENERGY, FORGOTTEN, RELAY, RUNTIME, Event, isoTime
from vesyncd.core.periods import parsePeriod
from vesyncd.core.turns import chunksInTurns, cooperator, orderInSteps
from vesyncd.insight.baseline import BaselineTracker, baselineJSON
from vesyncd.insight.chart import PowerHistory, feed
from vesyncd.insight.cost import Row, addCost, dailyCharges, hourSpan, roundCost
from vesyncd.insight.earlier import EarlierHours
from vesyncd.insight.export import hourlyCSV
from vesyncd.insight.ranges import RANGE_NAMES, WH_DIGITS, localToday
from vesyncd.insight.tariff import TariffSchedule

#: Days an hourly CSV may span at most (two years: 17,544 rows, about 1 MB).
MAX_CSV_DAYS = 731
#: Switches kept per plug by L{MemorySwitchLog} (the daemon without a state directory).
MEMORY_SWITCHES = 200
#: Switches L{EnergyInsight.switches} returns at most.
MAX_SWITCHES = 1000
#: Reads of every plug (L{EnergyInsight.totals}, L{EnergyInsight.costTable}) waiting for the store at once.
PERIODS_IN_FLIGHT = 50
#: Baselines L{EnergyInsight.dumpBaselinesInTurns} dumps per reactor turn: each is ~1.6 us (1.4 KB
#: copied), so all of 10,000 plugs in one turn would hold every plug up for ~16 ms.
DUMPS_PER_TURN = 1000


class InsightError(ValueError):
    """Input that cannot be used; C{field} names it (e.g. C{"month"}, C{"start"}), C{str()} is C{"field: message"}."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _day(value: Any, field: str) -> date:
    """A C{YYYY-MM-DD} date, or L{InsightError} naming C{field}."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise InsightError(field, f"{str(value)[:40]!r} is not a date of the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise InsightError(field, f"{value!r}: {e}") from None


def _midnight(day: date, zone: tzinfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


class MemorySwitchLog:
    """The last L{MEMORY_SWITCHES} relay switches of each plug, kept in memory from the hub's events
    (the daemon without a state directory; the store keeps them otherwise)."""

    def __init__(self, subscribe: Callable[[Callable[[Event], None]], Any], size: int = MEMORY_SWITCHES) -> None:
        self.size = size
        self._log: dict[str, collections.deque[tuple[float, bool, str | None]]] = {}
        subscribe(self._event)

    def _event(self, event: Event) -> None:
        if event.origin is not None:
            return  # another node's plug: that node keeps its switches
        if event.kind == FORGOTTEN:
            self._log.pop(event.plug, None)
        elif event.kind == RELAY and isinstance(event.data.get("relay"), bool):
            cause = event.data.get("cause")
            self._log.setdefault(event.plug, collections.deque(maxlen=self.size)).append(
                (event.at, event.data["relay"], cause if isinstance(cause, str) else None))

    def switchHistory(self, plugId: str, limit: int) -> Deferred:
        """The plug's latest switches, newest first: C{[{"at", "ts", "relay", "cause"}]}."""
        rows = list(self._log.get(plugId, ()))[::-1][:max(0, limit)]
        return succeed([{"at": isoTime(at), "ts": at, "relay": relay, "cause": cause} for at, relay, cause in rows])


#: The event kinds L{EnergyInsight} follows: power readings and plugs forgotten.
_FOLLOWED = frozenset({RUNTIME, ENERGY, FORGOTTEN})


def _costOrder(line: dict[str, Any]) -> tuple[float, float, str]:
    """A cost table line's place: largest cost first, then largest energy, then by name."""
    return (-(line["cost"] if line["cost"] is not None else 0.0), -line["wh"], line["name"].lower())


class EnergyInsight:
    """What the front ends show about energy, cost, always-on power and switches (see docs/energy.md)."""

    def __init__(self, hub: Any, ledger: Any, zone: tzinfo, clock: IReactorTime,
                 schedule: TariffSchedule | None = None, baselines: BaselineTracker | None = None,
                 history: PowerHistory | None = None, *, switchLog: Any = None) -> None:
        self.hub = hub
        self.zone = zone
        self.clock = clock
        self.baselines = baselines if baselines is not None else BaselineTracker()
        self.powerHistory = history if history is not None else PowerHistory()
        self.switchLog = switchLog if switchLog is not None else MemorySwitchLog(hub.subscribe)
        self.unsubscribe = hub.subscribe(self._event)
        #: Starts the per-plug reads of L{_eachPlug} in slices of ~4 ms per reactor turn.
        self._cooperator = cooperator(self.clock)
        #: Each plug's sums of the hours before the current one, kept until the hour turns.
        self.earlier = EarlierHours(ledger, zone, schedule, self._cooperator)

    @property
    def schedule(self) -> TariffSchedule | None:
        """The tariffs, or None."""
        return self.earlier.schedule

    @property
    def ledger(self) -> Any:
        """The energy ledger the figures are read from."""
        return self.earlier.ledger

    @ledger.setter
    def ledger(self, ledger: Any) -> None:
        self.earlier.ledger = ledger

    def _event(self, event: Event) -> None:
        if event.kind not in _FOLLOWED or event.origin is not None:
            return  # the keep-alive's rssi, most of the hub's events, in one look-up; other nodes' plugs
        feed(event, self.powerHistory, self.baselines)
        if event.kind == FORGOTTEN:
            self.earlier.forget(event.plug)

    @property
    def currency(self) -> str | None:
        """The tariff's currency, or None without a tariff."""
        return self.schedule.currency if self.schedule is not None else None

    def periods(self, plugId: str) -> Deferred:
        """Today, yesterday, this week, month and year in watt-hours and cost (see
        L{vesyncd.insight.ranges.periodTotals}) and the lifetime watt-hours; earlier hours are cached
        until the hour turns."""
        now = self.clock.seconds()
        key, spans = self.earlier.spans(now)
        hourStart = key[0] * 3600

        def withCurrentHour(sums: dict[str, list[float]]) -> Deferred:
            def total(rows: list[Row]) -> dict[str, Any]:
                current = self.earlier.withRows(sums, rows, spans)
                doc: dict[str, Any] = {f"{n}_wh": round(current[n][0], WH_DIGITS) + 0.0 for n in RANGE_NAMES}
                # The ledger's counter, not a sum of rows: it only grows, and forgets nothing older than a year.
                doc["lifetime_wh"] = round(self.ledger.summary(plugId, now).lifetime_wh, WH_DIGITS) + 0.0
                doc["currency"] = self.currency
                for n in RANGE_NAMES:
                    doc[f"{n}_cost"] = roundCost(current[n][1]) if self.schedule is not None else None
                return doc

            return self.ledger.hourly(plugId, hourStart, hourStart + 3600).addCallback(total)

        return self.earlier.sums(plugId, now).addCallback(withCurrentHour)

    def baseline(self, plugId: str) -> dict[str, Any]:
        """The plug's always-on power and its yearly energy and cost (L{baselineJSON})."""
        return baselineJSON(self.baselines, plugId, self.clock.seconds(), self.schedule, self.zone)

    def chart(self, plugId: str) -> dict[str, list[list[float]]]:
        """The live chart: the last hour as read and the last 24 h as 5-minute means."""
        return self.powerHistory.chart(plugId, self.clock.seconds())

    def history(self, plugId: str, period: str, value: str, cost: bool = False) -> Deferred:
        """The ledger's history of a day, month or year; with C{cost}, priced (L{addCost}): C{currency},
        C{total_cost}, C{daily_charge_total} and a C{cost} per bucket, all None without a tariff."""
        try:
            span = hourSpan(period, value, self.zone)
        except ValueError as e:
            return fail(InsightError("period" if period not in ("day", "month", "year") else "value", str(e)))
        d = self.ledger.history(plugId, period, value)
        if not cost:
            return d
        if self.schedule is None:
            def unpriced(doc: dict[str, Any]) -> dict[str, Any]:
                return dict(doc, buckets=[dict(b, cost=None) for b in doc["buckets"]], currency=None,
                            total_cost=None, daily_charge_total=None)

            return d.addCallback(unpriced)
        schedule = self.schedule

        def priced(doc: dict[str, Any]) -> Deferred:
            return self.ledger.hourly(plugId, *span).addCallback(
                lambda rows: addCost(doc, rows, schedule, self.zone, self.clock.seconds()))

        return d.addCallback(priced)

    def hourlyCSV(self, plugId: str, start: str, end: str) -> Deferred:
        """The plug's hourly rows from local date C{start} to C{end} (both included) as CSV text, the
        time zone (and currency, with a tariff) in the header."""
        try:
            first, last = _day(start, "start"), _day(end, "end")
            if last < first:
                raise InsightError("end", f"{end} is before the start {start}")
            if (last - first).days + 1 > MAX_CSV_DAYS:
                raise InsightError("end", f"the range is longer than {MAX_CSV_DAYS} days; export it in parts")
        except InsightError as e:
            return fail(e)
        lo, hi = _midnight(first, self.zone), _midnight(last + timedelta(days=1), self.zone)
        return self.ledger.hourly(plugId, lo, hi).addCallback(
            lambda rows: hourlyCSV(rows, self.zone, self.schedule, lo, hi))

    def switches(self, plugId: str, limit: int = 50) -> Deferred:
        """The plug's latest relay switches, newest first: C{[{"at": ISO UTC, "ts", "relay", "cause"}]}."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SWITCHES:
            return fail(InsightError("limit", f"must be a whole number from 1 to {MAX_SWITCHES}"))
        return self.switchLog.switchHistory(plugId, limit)

    # -- every plug --------------------------------------------------------------------------------

    def costTable(self, month: str | None = None) -> Deferred:
        """Each known plug's energy and cost in a local month (default this one), largest first, with
        the total and the month's daily charges."""
        now = self.clock.seconds()
        month = month if month is not None else localToday(now, self.zone).strftime("%Y-%m")
        try:
            first, after = parsePeriod("month", month)
            lo, hi = hourSpan("month", month, self.zone)
        except ValueError as e:
            return fail(InsightError("month", str(e).split(": ", 1)[-1]))
        names = {p.id: p.name for p in self.hub.plugsInPlace()}
        schedule = self.schedule

        def line(rows: list[Row], plugId: str) -> dict[str, Any]:
            wh = sum(wh for _, wh in rows)
            cost = (roundCost(sum(schedule.hourCost(t, v, self.zone) for t, v in rows))
                    if schedule is not None else None)
            return {"plug": plugId, "name": names[plugId], "wh": round(wh, WH_DIGITS) + 0.0, "cost": cost}

        def table(lines: list[dict[str, Any]], order: list[int] | None = None) -> dict[str, Any]:
            # The order may come worked out (in the cooperator's slices); else it is sorted here.
            if order is None:
                keys = [_costOrder(r) for r in lines]
                order = sorted(range(len(lines)), key=keys.__getitem__)
            lines = [lines[i] for i in order]
            charges = (roundCost(dailyCharges(schedule, first, after, localToday(now, self.zone)))
                       if schedule is not None else None)
            return {"month": month, "currency": self.currency, "plugs": lines,
                    "total_wh": round(sum(r["wh"] for r in lines), WH_DIGITS) + 0.0,
                    "total_cost": roundCost(sum(r["cost"] for r in lines)) if schedule is not None else None,
                    "daily_charge_total": charges}

        sumMany = getattr(self.ledger, "hourSumsMany", None)
        if sumMany is None:
            return self._eachPlug(list(names), lambda plugId: self.ledger.hourly(plugId, lo, hi).addCallback(
                line, plugId)).addCallback(table)

        # Every plug's month as one sum per plug, read at once (10,000 plugs' hourly rows, one read
        # each, were millions of rows), priced by the hour in the writer thread.
        def fromSums(sums: dict[str, list[tuple[int, float]]]) -> Deferred:
            lines: list[dict[str, Any]] = []
            keys: list[tuple[float, float, str]] = []
            order: list[int] = []

            def each() -> Iterator[None]:
                for plugId, name in names.items():
                    ws, weighted = sums.get(plugId, [(0, 0.0)])[0]
                    lines.append({"plug": plugId, "name": name, "wh": round(ws / 3600.0, WH_DIGITS) + 0.0,
                                  "cost": roundCost(weighted / 1000.0) if schedule is not None else None})
                    keys.append(_costOrder(lines[-1]))
                    yield None
                yield from orderInSteps(keys, order)

            return self._cooperator.coiterate(each()).addCallback(lambda _: table(lines, order))

        weight = self.earlier.hourPrices() if schedule is not None else None
        return sumMany(list(names), [(math.ceil(lo / 3600), math.ceil(hi / 3600))], weight).addCallback(fromSums)

    def _eachPlug(self, plugIds: list[str], read: Callable[[str], Deferred]) -> Deferred:
        """C{read(plugId)} for every plug, at most L{PERIODS_IN_FLIGHT} waiting at once, started by
        cooperative workers in slices of ~4 ms per reactor turn (10,000 Deferreds made in one turn
        held every plug up 70-140 ms); fires with the results in C{plugIds}' order, or the first failure."""
        results: dict[str, Any] = {}
        pending = iter(plugIds)

        def keep(value: Any, plugId: str) -> None:
            results[plugId] = value

        def worker() -> Iterator[Deferred]:
            for plugId in pending:
                yield read(plugId).addCallback(keep, plugId)

        workers = [self._cooperator.coiterate(worker()) for _ in range(min(PERIODS_IN_FLIGHT, len(plugIds)))]
        return gatherResults(workers, consumeErrors=True).addCallback(lambda _: [results[p] for p in plugIds])

    def totals(self) -> Deferred:
        """The whole house now: power of the online plugs, today's energy and cost, plugs online."""
        # The figures of every plug, read without copying the plugs (10,000 copies held every plug up
        # ~50 ms; the dashboard asks every few seconds).
        readings = self.hub.readings()
        online = [row for row in readings if row[2]]
        power = sum(row[4] for row in online if isinstance(row[4], (int, float)))
        base = {"power_w": round(power, 1) + 0.0, "currency": self.currency, "plugs_online": len(online)}

        plugIds = [row[0] for row in readings]
        now = self.clock.seconds()
        key, spans = self.earlier.spans(now)
        hourStart = key[0] * 3600
        # The earlier hours come from the cache (read once an hour, for every plug at once where the
        # ledger can); the current hour of every plug in one read, not one per plug (10,000 reads
        # took ~1 s of CPU on every call).
        def withCurrentHour(sums: list[dict[str, list[float]]]) -> Deferred:
            return self.ledger.hourlyMany(plugIds, hourStart, hourStart + 3600).addCallback(add, sums)

        def add(rows: dict[str, list[Row]], sums: list[dict[str, list[float]]]) -> Deferred:
            wh, cost = [0.0], [0.0]

            def sumUp() -> Iterator[None]:
                for plugId, earlier in zip(plugIds, sums):
                    today = self.earlier.withRows(earlier, rows.get(plugId, []), spans, ("today",))["today"]
                    wh[0] += round(today[0], WH_DIGITS)
                    cost[0] += roundCost(today[1])
                    yield None

            def done(_: Any) -> dict[str, Any]:
                base["today_wh"] = round(wh[0], WH_DIGITS) + 0.0
                base["today_cost"] = roundCost(cost[0]) if self.schedule is not None else None
                return base

            return self._cooperator.coiterate(sumUp()).addCallback(done)

        if getattr(self.ledger, "hourSumsMany", None) is not None:
            return self.earlier.sumsMany(plugIds, now).addCallback(withCurrentHour)
        return self._eachPlug(plugIds, lambda plugId: self.earlier.sums(plugId, now)).addCallback(withCurrentHour)

    # -- keeping the baselines ---------------------------------------------------------------------

    def dumpBaselines(self) -> dict[str, bytes]:
        """Every plug's baseline samples as bytes, to be stored (L{loadBaselines} takes them back)."""
        return {plug: self.baselines.dump(plug) for plug in list(self.baselines.plugs())}

    def dumpBaselinesInTurns(self, perTurn: int = DUMPS_PER_TURN) -> Deferred:
        """L{dumpBaselines} spread over reactor turns, C{perTurn} plugs each, so plugs are answered in
        between; fires with the dumps.  A plug forgotten meanwhile is left out; one that reports
        meanwhile is dumped as it is when its turn comes."""
        dumps: dict[str, bytes] = {}

        def dump(plugs: Sequence[str]) -> None:
            for plug in plugs:
                try:
                    dumps[plug] = self.baselines.dump(plug)
                except KeyError:
                    continue  # forgotten since the list was taken

        return chunksInTurns(self.clock, list(self.baselines.plugs()), perTurn, dump).addCallback(lambda _: dumps)

    def loadBaselines(self, stored: dict[str, bytes]) -> int:
        """Take back stored baseline samples; a plug whose bytes are not a dump starts afresh.  Returns
        how many were loaded."""
        loaded = 0
        for plug, data in stored.items():
            try:
                self.baselines.load(plug, data)
                loaded += 1
            except ValueError:
                continue
        return loaded
