"""The energy insight facade over a real hub and the memory ledger, on a fake clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from vesyncd.core.energy import MemoryLedger
from vesyncd.core.hub import Hub
from vesyncd.core.settings import Settings
from vesyncd.insight.ranges import periodTotals
from vesyncd.insight.service import EnergyInsight, InsightError
from vesyncd.insight.tariff import Tariff, TariffSchedule
from vesyncd.plugs import codec as m
from tests.fakes import FakeConnection, result

BERLIN = ZoneInfo("Europe/Berlin")



def setup(schedule: TariffSchedule | None = None) -> tuple[Hub, Clock, EnergyInsight, Any]:
    """A hub at 2026-12-02 10:00 Berlin with plug 'plug-1' online, and the facade over its memory ledger."""
    clock = Clock()
    clock.advance(datetime(2026, 12, 2, 10, 0, tzinfo=BERLIN).timestamp())
    ledger = MemoryLedger(BERLIN)
    hub = Hub(clock, Settings(), ledger=ledger)
    insight = EnergyInsight(hub, ledger, BERLIN, clock, schedule)
    session = hub.login(FakeConnection(), m.Login(id="plug-1", relay=False))
    return hub, clock, insight, session


def tick(clock: Clock, session: Any, seconds: float) -> None:
    """Advance the clock with the plug sending keepalives (so it stays online)."""
    while seconds > 0:
        step = min(30.0, seconds)
        clock.advance(step)
        seconds -= step
        session.received(m.KeepAlive())


def report(clock: Clock, session: Any, wh: float, seconds: int = 180) -> None:
    """Advance the clock and have the plug report C{wh} watt-hours over C{seconds}."""
    tick(clock, session, seconds)
    session.received(m.Report(wattSeconds=int(wh * 3600), seconds=seconds))


FLAT = TariffSchedule([Tariff.flat(0.30, "EUR", 0.5)])


def test_periods_match_period_totals_and_follow_the_current_hour() -> None:
    """periods gives periodTotals' figures, and a report within the cached hour still counts."""
    hub, clock, insight, session = setup(FLAT)
    report(clock, session, 10.0)
    first = result(insight.periods("plug-1"))
    assert first["today_wh"] == pytest.approx(10.0) and first["today_cost"] == pytest.approx(0.003)
    report(clock, session, 5.0)
    second = result(insight.periods("plug-1"))
    rows = result(insight.ledger.hourly("plug-1", 0, clock.seconds() + 3600))
    assert second == dict(periodTotals(rows, clock.seconds(), BERLIN, FLAT), lifetime_wh=pytest.approx(15.0))
    assert second["today_wh"] == pytest.approx(15.0) and second["currency"] == "EUR"
    tick(clock, session, 3600)
    report(clock, session, 1.0)
    third = result(insight.periods("plug-1"))
    assert third["today_wh"] == pytest.approx(16.0) and third["week_wh"] == pytest.approx(16.0)


def test_periods_without_a_tariff_have_null_costs() -> None:
    """Without a tariff every cost and the currency are null."""
    hub, clock, insight, session = setup()
    report(clock, session, 2.0)
    doc = result(insight.periods("plug-1"))
    assert doc["currency"] is None and doc["today_cost"] is None and doc["today_wh"] == pytest.approx(2.0)
    assert insight.currency is None


def test_history_with_cost_and_cost_table() -> None:
    """history with cost prices each bucket; the cost table lists the plug with the month's daily charges."""
    hub, clock, insight, session = setup(FLAT)
    report(clock, session, 100.0)
    doc = result(insight.history("plug-1", "day", "2026-12-02", cost=True))
    assert doc["total_wh"] == pytest.approx(100.0) and doc["total_cost"] == pytest.approx(0.03)
    assert doc["daily_charge_total"] == pytest.approx(0.5)
    pending = insight.costTable()
    clock.advance(0)  # each plug's month is read on later reactor turns
    table = result(pending)
    assert table["month"] == "2026-12" and table["currency"] == "EUR"
    assert table["plugs"] == [{"plug": "plug-1", "name": "plug-1", "wh": 100.0, "cost": 0.03}]
    assert table["total_cost"] == pytest.approx(0.03) and table["daily_charge_total"] == pytest.approx(1.0)
    with pytest.raises(InsightError) as e:
        result(insight.costTable("2026-13"))
    assert e.value.field == "month"
    for period, value, field in [("week", "2026-12", "period"), ("day", "2026-12-32", "value")]:
        with pytest.raises(InsightError) as e:
            result(insight.history("plug-1", period, value, cost=True))
        assert e.value.field == field and str(e.value).startswith(field + ": ")


def test_csv_range_and_errors() -> None:
    """The CSV names the zone and holds the day's hour; bad dates name their field."""
    hub, clock, insight, session = setup(FLAT)
    report(clock, session, 4.0)
    text = result(insight.hourlyCSV("plug-1", "2026-12-02", "2026-12-02"))
    assert text.splitlines()[0] == "start_utc,start_local (Europe/Berlin),wh,cost (EUR)"
    assert text.splitlines()[1] == "2026-12-02T09:00:00Z,2026-12-02T10:00:00+01:00,4,0.0012"
    for start, end, field in [("2026-12-3", "2026-12-04", "start"), ("2026-12-04", "2026-12-03", "end"),
                              ("2020-01-01", "2026-01-01", "end"), ("2026-02-30", "2026-03-01", "start")]:
        with pytest.raises(InsightError) as e:
            result(insight.hourlyCSV("plug-1", start, end))
        assert e.value.field == field


def test_totals_chart_baseline_and_switches() -> None:
    """totals sums the house; the chart and baseline follow runtime readings; switches list relay changes."""
    hub, clock, insight, session = setup(FLAT)
    out = []
    hub.switch("plug-1", True, cause="timer").addBoth(out.append)
    session.received(m.RuntimeInfo(relay=True, power=(42.0, 0.0)))
    report(clock, session, 3.0)
    pending = insight.totals()
    clock.advance(0)  # the per-plug reads run on the next reactor turn
    totals = result(pending)
    assert totals == {"power_w": 42.0, "today_wh": pytest.approx(3.0), "today_cost": pytest.approx(0.0009),
                      "currency": "EUR", "plugs_online": 1}
    assert [w for _, w in insight.chart("plug-1")["hour"]] == [42.0, 60.0]  # the reading, the report's mean
    assert insight.baseline("plug-1")["baseline_w"] is None  # less than a day of data
    switches = result(insight.switches("plug-1"))
    assert [(s["relay"], s["cause"]) for s in switches] == [(True, "timer"), (False, "login")]
    with pytest.raises(InsightError):
        result(insight.switches("plug-1", 0))


def test_forget_drops_the_plug_everywhere() -> None:
    """A forgotten plug leaves the chart, the baseline and the cached periods."""
    hub, clock, insight, session = setup()
    session.received(m.RuntimeInfo(relay=False, power=(5.0, 0.0)))
    result(insight.periods("plug-1"))
    hub.forget("plug-1")
    assert insight.chart("plug-1") == {"hour": [], "day": []}
    assert insight.dumpBaselines() == {}
    assert result(insight.switches("plug-1")) == []


def test_baselines_dumped_a_few_plugs_per_turn() -> None:
    """The periodic save dumps C{perTurn} plugs per reactor turn and fires with every plug's bytes,
    the same as the one-turn dump; a plug forgotten before its turn is left out."""
    hub, clock, insight, session = setup()
    sessions = [session] + [hub.login(FakeConnection(), m.Login(id=f"plug-{i}", relay=False)) for i in range(2, 8)]
    for s in sessions:
        s.received(m.RuntimeInfo(relay=True, power=(7.0, 0.0)))
    whole = insight.dumpBaselines()
    assert len(whole) == 7
    dumped: list[str] = []
    real = insight.baselines.dump
    insight.baselines.dump = lambda plug: dumped.append(plug) or real(plug)  # type: ignore[method-assign]
    fired: list[dict[str, bytes]] = []
    insight.dumpBaselinesInTurns(perTurn=3).addCallback(fired.append)
    assert fired == [] and len(dumped) == 3  # this turn's three; the rest on the next turns
    later = next(plug for plug in whole if plug not in dumped)
    hub.forget(later)
    clock.advance(0)
    assert fired == [{plug: data for plug, data in whole.items() if plug != later}]


def test_baselines_dump_and_load() -> None:
    """Dumped baselines load into a new facade; bytes that are not a dump are skipped."""
    hub, clock, insight, session = setup()
    for _ in range(100):
        tick(clock, session, 900)
        session.received(m.RuntimeInfo(relay=True, power=(7.0, 0.0)))
    dumped = insight.dumpBaselines()
    other = EnergyInsight(hub, insight.ledger, BERLIN, clock)
    assert other.loadBaselines({**dumped, "bad": b"nope"}) == 1
    assert other.baseline("plug-1")["baseline_w"] == 7.0


def test_totals_read_a_bounded_number_of_plugs_at_a_time() -> None:
    """With many plugs the house totals keep at most PERIODS_IN_FLIGHT reads of earlier hours waiting
    at once, none started in the request's own turn, and still sum every plug."""
    from twisted.internet.defer import Deferred

    from vesyncd.insight.service import PERIODS_IN_FLIGHT

    hub, clock, insight, session = setup()
    for i in range(2, 60):  # 59 plugs (the hub takes 60 new ones a minute): more than PERIODS_IN_FLIGHT
        hub.login(FakeConnection(), m.Login(id=f"plug-{i}", relay=False))
    waiting: list[tuple[str, Deferred]] = []

    def earlier(plugId: str, now: float) -> Deferred:
        d: Deferred = Deferred()
        waiting.append((plugId, d))
        return d

    insight.earlier.sums = earlier  # type: ignore[method-assign]
    done: list[dict] = []
    insight.totals().addCallback(done.append)
    assert waiting == []  # nothing read in the request's turn
    asked: list[str] = []
    while not done:
        clock.advance(0)
        assert 0 < len(waiting) <= PERIODS_IN_FLIGHT
        batch, waiting[:] = list(waiting), []
        for plugId, d in batch:
            asked.append(plugId)
            d.callback({"today": [1.0, 0.0]})
        clock.advance(0)
    assert sorted(asked) == sorted(p.id for p in hub.plugs())
    assert done[0]["today_wh"] == 59.0 and done[0]["plugs_online"] == 59


def test_totals_read_the_current_hour_of_every_plug_at_once() -> None:
    """The house totals read the current hour of all plugs in one ledger read (the earlier hours come
    from the cache after the hour's first call), and match the sum of each plug's own periods."""
    hub, clock, insight, session = setup(FLAT)
    other = hub.login(FakeConnection(), m.Login(id="plug-2", relay=True))
    session.received(m.Report(wattSeconds=int(4.0 * 3600), seconds=180))
    other.received(m.Report(wattSeconds=int(6.0 * 3600), seconds=180))
    for _ in range(120):  # an earlier hour, then this one; both plugs stay online
        clock.advance(30)
        session.received(m.KeepAlive())
        other.received(m.KeepAlive())
    session.received(m.Report(wattSeconds=int(1.5 * 3600), seconds=180))
    calls: list[tuple[Any, ...]] = []
    realMany, realHourly = insight.ledger.hourlyMany, insight.ledger.hourly
    insight.ledger.hourlyMany = lambda *a: calls.append(("many", *a)) or realMany(*a)  # type: ignore[method-assign]
    insight.ledger.hourly = lambda *a: calls.append(("one", *a)) or realHourly(*a)  # type: ignore[method-assign]
    pending = insight.totals()
    clock.advance(0)
    first = result(pending)
    assert [c[0] for c in calls].count("many") == 1  # besides each plug's earlier hours, read once an hour
    calls.clear()
    pending = insight.totals()
    clock.advance(0)
    totals = result(pending)
    assert [c[0] for c in calls] == ["many"] and sorted(calls[0][1]) == ["plug-1", "plug-2"]
    assert totals == first
    each = [result(insight.periods(p)) for p in ("plug-1", "plug-2")]
    assert totals["today_wh"] == pytest.approx(11.5) == pytest.approx(sum(d["today_wh"] for d in each))
    assert totals["today_cost"] == pytest.approx(sum(d["today_cost"] for d in each))
