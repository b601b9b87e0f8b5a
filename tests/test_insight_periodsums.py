"""EnergyInsight.periods from sums per range (SQLite ledger) gives the row-walking figures, DST and tariffs included."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from vesyncd.insight.periodsums import HourPrices, clip, rangeHours, spanSums
from vesyncd.insight.ranges import RANGE_NAMES, periodTotals
from vesyncd.insight.service import EnergyInsight
from vesyncd.insight.tariff import Tariff, TariffSchedule
from vesyncd.storage.calendarspans import calendarParts
from vesyncd.storage.ledger import SQLiteLedger
from vesyncd.storage.store import Store
from vesyncd.storage.runner import inlineRunner
from tests.fakes import result

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")

FLAT = TariffSchedule([Tariff.flat(0.30, "EUR", 0.5)])
DATED = TariffSchedule([Tariff.flat(0.30, "EUR"), Tariff.flat(0.35, "EUR", start=date(2026, 7, 1))])


def _touSegments(day: float, peak: float) -> tuple[tuple[int, float], ...]:
    """Weekdays: cheap until 07:00, peak to 17:30 (an edge at :30), cheap again; weekends one price."""
    segments: list[tuple[int, float]] = []
    for d in range(7):
        if d < 5:
            segments += [(d * 1440, day), (d * 1440 + 420, peak), (d * 1440 + 1050, day)]
        else:
            segments.append((d * 1440, day * 0.9))
    return tuple(segments)


TOU = TariffSchedule([Tariff(None, "EUR", 0.4, _touSegments(0.21, 0.37)),
                      Tariff(date(2026, 10, 1), "EUR", 0.4, _touSegments(0.23, 0.41))])
SCHEDULES = {"none": None, "flat": FLAT, "dated": DATED, "tou": TOU}


class FakeHub:
    """Just enough hub for EnergyInsight: subscriptions that are never called."""

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        """Accept a listener; nothing is ever announced."""
        return lambda: None


class CountingLedger:
    """A ledger wrapper recording the spans of every C{hourly} read (to prove no year of rows is read)."""

    def __init__(self, ledger: SQLiteLedger) -> None:
        self.ledger = ledger
        self.hourlySpans: list[float] = []

    def hourly(self, plugId: str, startTs: float, endTs: float) -> Any:
        """Record the span, then read."""
        self.hourlySpans.append(endTs - startTs)
        return self.ledger.hourly(plugId, startTs, endTs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)



def ts(text: str, zone: Any) -> float:
    """POSIX time of a local wall-clock time."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def ledgerFrom(first: datetime) -> tuple[Path, int, Store, SQLiteLedger]:
    """A new directory, the whole hour of C{first} (a zoned time) as POSIX seconds, and a SQLite
    store writing inline with its ledger, its clock at that hour."""
    tmp = Path(tempfile.mkdtemp(prefix="vesyncd-periodsums-test-"))
    clock = Clock()
    start = int(first.timestamp()) // 3600 * 3600
    clock.advance(start)
    store = Store.open(tmp / "vesyncd.sqlite3", first.tzinfo, clock, run=inlineRunner)
    return tmp, start, store, SQLiteLedger(store, clock.seconds())


@pytest.fixture(scope="module", params=[BERLIN, KOLKATA, NEW_YORK], ids=["berlin", "kolkata", "new-york"])
def filled(request: Any) -> Iterator[tuple[Any, SQLiteLedger]]:
    """A SQLite ledger (writing inline) with a report every hour, 2025-11-20 to 2026-12-05, of uneven energy."""
    zone = request.param
    tmp, start, store, ledger = ledgerFrom(datetime(2025, 11, 20, tzinfo=zone))
    end = int(datetime(2026, 12, 5, tzinfo=zone).timestamp())
    for n, at in enumerate(range(start + 1000, end, 3600)):
        ledger.record("p1", at, (n * 7919) % 5003 + 13, 3600)  # never a round figure
        if n % 997 == 0:
            ledger.record("p1", at + 1200, 777, 60)  # a second report in some hours
    result(store.flush())
    yield zone, ledger
    store.connection().close()
    shutil.rmtree(tmp, ignore_errors=True)


NOWS = ["2026-03-29T12:10", "2026-03-30T00:20", "2026-10-25T02:30", "2026-10-25T23:59", "2026-01-01T00:05",
        "2026-01-04T05:00", "2026-06-01T00:15", "2026-11-01T01:30", "2026-12-02T10:00"]


def insightAt(ledger: Any, zone: Any, now: float, schedule: TariffSchedule | None) -> tuple[Clock, EnergyInsight]:
    """A facade over C{ledger} whose clock reads C{now}."""
    clock = Clock()
    clock.advance(now)
    return clock, EnergyInsight(FakeHub(), ledger, zone, clock, schedule)


def rowWalk(ledger: SQLiteLedger, zone: Any, now: float, schedule: TariffSchedule | None) -> dict[str, Any]:
    """The figures from every hourly row, as periodTotals gives them."""
    rows = result(ledger.hourly("p1", 0, (now // 3600 + 1) * 3600))
    return periodTotals(rows, now, zone, schedule)


@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
def test_sums_per_range_equal_the_row_walk(filled: tuple[Any, SQLiteLedger], schedule: str) -> None:
    """On DST days, week, month and year turns, half-hour zones and every kind of tariff, periods equals
    periodTotals over the hourly rows, and reads no more than one hour of rows."""
    zone, ledger = filled
    for text in NOWS:
        now = ts(text, zone)
        counting = CountingLedger(ledger)
        _, insight = insightAt(counting, zone, now, SCHEDULES[schedule])
        doc = result(insight.periods("p1"))
        expected = rowWalk(ledger, zone, now, SCHEDULES[schedule])
        assert {k: v for k, v in doc.items() if k != "lifetime_wh"} == expected, text
        assert counting.hourlySpans and max(counting.hourlySpans) <= 3600, text
    assert doc["year_wh"] > 0 and (SCHEDULES[schedule] is None or doc["year_cost"] > 0)  # 2 December


@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
def test_hours_added_to_the_cache_equal_a_fresh_sum(filled: tuple[Any, SQLiteLedger], schedule: str) -> None:
    """As hours and days go by (a DST day, a month's end, a Monday), the cached sums extended by the
    hours since equal a fresh facade's and the row walk, reading only those hours."""
    zone, ledger = filled
    clock, insight = insightAt(ledger, zone, ts("2026-10-24T20:40", zone), SCHEDULES[schedule])
    result(insight.periods("p1"))
    spans: list[list[tuple[int, int]]] = []
    insight.ledger = CountingSums(ledger, spans)
    for step in range(40):
        clock.advance(3600 * (1, 7, 13)[step % 3])
        _, fresh = insightAt(ledger, zone, clock.seconds(), SCHEDULES[schedule])
        doc = result(insight.periods("p1"))
        expected = result(fresh.periods("p1"))
        assert doc == expected, step
        assert step % 5 or expected == dict(rowWalk(ledger, zone, clock.seconds(), SCHEDULES[schedule]),
                                lifetime_wh=expected["lifetime_wh"]), step
    # Only the year's first read summed months of hours; then each range at most a few days at once.
    assert spans and max(hi - lo for read in spans for lo, hi in read) <= 24 * 8


class CountingSums(CountingLedger):
    """A ledger wrapper recording the spans of every C{hourSums} read."""

    def __init__(self, ledger: SQLiteLedger, spans: list[list[tuple[int, int]]]) -> None:
        super().__init__(ledger)
        self.spans = spans

    def hourSums(self, plugId: str, spans: Any, weight: Any = None) -> Any:
        """Record the spans, then sum."""
        self.spans.append(list(spans))
        return self.ledger.hourSums(plugId, spans, weight)


def test_the_ledger_sums_equal_the_sums_of_its_rows(filled: tuple[Any, SQLiteLedger]) -> None:
    """hourSums gives, per span, the watt-seconds and priced watt-hours of the rows hourly gives."""
    zone, ledger = filled
    now = ts("2026-03-29T12:10", zone)
    spans = clip(rangeHours(now, zone), 0, int(now // 3600))
    rows = result(ledger.hourly("p1", 0, now))
    prices = HourPrices(TOU, zone)
    sums = result(ledger.hourSums("p1", spans, prices))
    fromRows = spanSums(rows, spans, prices)
    for (ws, weighted), (wh, rowWeighted) in zip(sums, fromRows):
        assert ws / 3600.0 == pytest.approx(wh, rel=1e-12) and weighted == pytest.approx(rowWeighted, rel=1e-12)
    assert [ws for ws, _ in result(ledger.hourSums("p1", spans))] == [ws for ws, _ in sums]
    assert result(ledger.hourSums("nobody", spans)) == [(0, 0.0)] * len(spans)
    assert [prices(int(t // 3600)) for t, _ in rows[:300]] == [TOU.hourPrice(t, zone) for t, _ in rows[:300]]


def test_ranges_as_hours_hold_the_hours_starting_in_them() -> None:
    """rangeHours gives, per range, the hours whose start lies in its local span (a 23-hour day too)."""
    now = ts("2026-03-29T12:00", BERLIN)
    spans = rangeHours(now, BERLIN)
    assert list(spans) == list(RANGE_NAMES)
    lo, hi = spans["today"]
    assert hi - lo == 23 and lo * 3600 == ts("2026-03-29T00:00", BERLIN)
    lo, hi = rangeHours(ts("2026-06-01T12:00", KOLKATA), KOLKATA)["today"]
    assert hi - lo == 24 and lo * 3600 == ts("2026-06-01T00:30", KOLKATA)


def test_calendar_parts_use_rollups_only_where_midnights_are_whole_hours() -> None:
    """A year to date in Berlin is whole months, this month's whole days and today's hours; in Kolkata
    (midnight at :30 UTC) it stays hours."""
    now = ts("2026-12-02T10:20", BERLIN)
    lo, hi = rangeHours(now, BERLIN)["year"][0], int(now // 3600)
    parts = calendarParts(lo, hi, BERLIN)
    assert parts.months == [("2026-01", "2026-11")] and parts.days == [("2026-12-01", "2026-12-01")]
    assert parts.hours == [(int(ts("2026-12-02T00:00", BERLIN) // 3600), hi)]
    # A span from 05:00 on one day to a whole-hour inside another: hours at both ends, days between.
    lo, hi = int(ts("2026-10-24T05:00", BERLIN) // 3600), int(ts("2026-11-02T07:00", BERLIN) // 3600)
    parts = calendarParts(lo, hi, BERLIN)
    assert parts.days == [("2026-10-25", "2026-10-31"), ("2026-11-01", "2026-11-01")] and parts.months == []
    assert sum(b - a for a, b in parts.hours) == 19 + 7
    lo, hi = rangeHours(ts("2026-12-02T10:20", KOLKATA), KOLKATA)["year"][0], int(now // 3600)
    assert calendarParts(lo, hi, KOLKATA) == ([(lo, hi)], [], [])


@pytest.fixture(scope="module")
def several() -> Iterator[tuple[Any, SQLiteLedger, list[str]]]:
    """A SQLite ledger (writing inline, New York) with five plugs reporting uneven energy every hour
    from 2026-10-20 to 2026-11-12 (a month's end and the autumn change), one of them silent since
    2026-11-01, and a sixth plug that never reported."""
    zone = NEW_YORK
    tmp, start, store, ledger = ledgerFrom(datetime(2026, 10, 20, tzinfo=zone))
    plugs = [f"plug-{n}" for n in range(5)]
    quiet = ts("2026-11-01T00:00", zone)
    for n, at in enumerate(range(start + 900, int(ts("2026-11-12T00:00", zone)), 3600)):
        for k, plug in enumerate(plugs):
            if k == 4 and at >= quiet:
                continue
            ledger.record(plug, at, (n * 7919 + k * 104729) % 5003 + 13 * (k + 1), 3600)
    result(store.flush())
    yield zone, ledger, plugs + ["plug-never"]
    store.connection().close()
    shutil.rmtree(tmp, ignore_errors=True)


MANY_NOWS = ["2026-11-01T01:30", "2026-11-01T12:00", "2026-11-02T00:20", "2026-11-11T18:00"]


def test_many_plugs_summed_at_once_equal_each_plugs_sums(several: tuple[Any, SQLiteLedger, list[str]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """hourSumsMany gives every plug the sums hourSums gives it alone, priced or not, the ids taken a
    few at a time; a plug with no rows gets zeros and an id that is not text is left out."""
    import vesyncd.storage.ledger as ledgerModule

    monkeypatch.setattr(ledgerModule, "IDS_PER_QUERY", 2)  # three chunks for six plugs
    zone, ledger, plugs = several
    prices = HourPrices(TOU, zone)
    for text in MANY_NOWS:
        now = ts(text, zone)
        spans = clip(rangeHours(now, zone), 0, int(now // 3600))
        for weight in (None, prices):
            many = result(ledger.hourSumsMany([*plugs, 7], spans, weight))  # type: ignore[list-item]
            assert sorted(many) == sorted(plugs), text
            for plug in plugs:
                alone = result(ledger.hourSums(plug, spans, weight))
                assert [ws for ws, _ in many[plug]] == [ws for ws, _ in alone], (text, plug)
                assert [w for _, w in many[plug]] == pytest.approx([w for _, w in alone], rel=1e-12), (text, plug)
            assert many["plug-never"] == [(0, 0.0)] * len(spans)
            assert any(ws for ws, _ in many["plug-0"]), text


class HousePlugs(FakeHub):
    """A hub of online plugs with no power reading, as L{EnergyInsight.totals} reads it."""

    def __init__(self, plugs: list[str]) -> None:
        self.ids = plugs

    def readings(self) -> list[tuple[Any, ...]]:
        """One online plug row per id."""
        return [(p, None, True, True, None, None, 0.0, None, None) for p in self.ids]

    def plugsInPlace(self) -> list[Any]:
        """Each plug with its id and a name."""
        from types import SimpleNamespace

        return [SimpleNamespace(id=p, name=p.replace("plug-", "Plug ")) for p in self.ids]


class OnePlugAtATime(CountingLedger):
    """The ledger without C{hourSumsMany}: the facade sums each plug's hours alone."""

    def __getattr__(self, name: str) -> Any:
        if name == "hourSumsMany":
            raise AttributeError(name)
        return getattr(self.ledger, name)


class CountingMany(CountingLedger):
    """A ledger wrapper counting C{hourSums} and C{hourSumsMany} reads."""

    def __init__(self, ledger: SQLiteLedger) -> None:
        super().__init__(ledger)
        self.many: list[int] = []
        self.single = 0

    def hourSumsMany(self, plugIds: Any, spans: Any, weight: Any = None) -> Any:
        """Count the plugs of the read, then sum."""
        self.many.append(len(plugIds))
        return self.ledger.hourSumsMany(plugIds, spans, weight)

    def hourSums(self, plugId: str, spans: Any, weight: Any = None) -> Any:
        """Count, then sum."""
        self.single += 1
        return self.ledger.hourSums(plugId, spans, weight)


@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
def test_house_totals_read_every_plugs_earlier_hours_at_once(several: tuple[Any, SQLiteLedger, list[str]],
                                                               schedule: str) -> None:
    """The house totals with every plug's earlier hours summed in one read equal those summed plug by
    plug, when first asked and as hours and days go by (the cache extended by the hours since);
    after an hour turns all plugs are read together, and within the hour nothing is read again."""
    zone, ledger, plugs = several
    hub = HousePlugs(plugs)
    start = ts("2026-10-31T21:40", zone)
    counting = CountingMany(ledger)
    clock = Clock()
    clock.advance(start)
    batched = EnergyInsight(hub, counting, zone, clock, SCHEDULES[schedule])
    for step in range(12):
        if step:
            clock.advance(3600 * (1, 5, 11)[step % 3])
        counting.many.clear()
        pending = batched.totals()
        clock.advance(0)
        doc = result(pending)
        assert counting.many == [len(plugs)] and counting.single == 0, step
        oneByOne = Clock()
        oneByOne.advance(clock.seconds())
        plain = EnergyInsight(hub, OnePlugAtATime(ledger), zone, oneByOne, SCHEDULES[schedule])
        pending = plain.totals()
        while not pending.called:
            oneByOne.advance(0)
        assert doc == pytest.approx(result(pending)), step
        assert doc["today_wh"] >= 0 and doc["plugs_online"] == len(plugs)
        counting.many.clear()
        pending = batched.totals()
        clock.advance(0)
        assert result(pending) == doc and counting.many == [], step  # cached until the hour turns
    assert doc["today_wh"] > 0


@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
def test_cost_table_sums_every_plug_at_once(several: tuple[Any, SQLiteLedger, list[str]], schedule: str) -> None:
    """The month's cost table from one read of every plug's sum equals the one priced from each plug's
    hourly rows: this month so far, last month (the autumn change in it) and a month with no rows."""
    zone, ledger, plugs = several
    hub = HousePlugs(plugs)
    counting = CountingMany(ledger)
    clock = Clock()
    clock.advance(ts("2026-11-11T18:30", zone))
    batched = EnergyInsight(hub, counting, zone, clock, SCHEDULES[schedule])
    plain = EnergyInsight(hub, OnePlugAtATime(ledger), zone, clock, SCHEDULES[schedule])
    for month in (None, "2026-10", "2026-09"):
        counting.many.clear()
        pending = batched.costTable(month)
        clock.advance(0)
        table = result(pending)
        assert counting.many == [len(plugs)], month
        pending = plain.costTable(month)
        while not pending.called:
            clock.advance(0)
        expected = result(pending)
        assert [line["plug"] for line in table["plugs"]] == [line["plug"] for line in expected["plugs"]], month
        # Watt-hours from the exact sum of watt-seconds, not the rows' float sum: equal once rounded.
        assert table == expected, month
        assert (table["total_wh"] > 0) == (month != "2026-09"), month
