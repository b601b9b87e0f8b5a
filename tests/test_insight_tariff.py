"""Tariff configuration: flat prices, time-of-use windows, dated changes, and refusals that name the key."""

from __future__ import annotations

import copy
import tomllib
from datetime import date, datetime, time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python import usage

from vesyncd.insight.tariff import Tariff, TariffSchedule, minuteOfWeek
from vesyncd.insight.tariffconfig import TariffError, currencyCode, optParameters, price, tariffSchedule

EXAMPLE = """
currency = "EUR"

[[tariff]]
from = 2026-01-01
daily-charge = 0.35
  [[tariff.window]]
  days = "mon-fri"
  from = "07:00"
  to = "22:00"
  price-kwh = 0.34
  [[tariff.window]]
  days = "mon-fri"
  from = "22:00"
  to = "07:00"
  price-kwh = 0.22
  [[tariff.window]]
  days = "sat,sun"
  from = 07:00:00
  to = 07:00:00
  price-kwh = 0.22

[[tariff]]
from = "2026-07-01"
price-kwh = 0.40
"""


def example() -> dict[str, Any]:
    """The example file as tomllib reads it."""
    return tomllib.loads(EXAMPLE)


def refusal(options: dict[str, Any], toml: dict[str, Any] | None = None) -> TariffError:
    """The error a configuration is refused with."""
    with pytest.raises(TariffError) as info:
        tariffSchedule(options, toml)
    return info.value


class TariffOptions(usage.Options):
    """An Options class carrying only the tariff options, as the daemon's gathers them."""

    optParameters = optParameters


def test_no_tariff_is_none() -> None:
    """With no price configured there is no schedule."""
    assert tariffSchedule({"currency": None, "price-kwh": None, "daily-charge": None}, {}) is None


def test_flat_price_from_the_command_line() -> None:
    """--currency and --price-kwh give one price for every hour, coerced by the option table."""
    options = TariffOptions()
    options.parseOptions(["--currency", "eur", "--price-kwh", "0.30", "--daily-charge", "0.5"])
    schedule = tariffSchedule(options, {})
    assert schedule is not None
    assert schedule.currency == "EUR"
    tariff = schedule.inForce(date(2026, 5, 5))
    assert tariff.segments == ((0, 0.30),)
    assert tariff.dailyCharge == 0.5
    assert tariff.meanPrice() == pytest.approx(0.30)


def test_option_table_refuses_bad_values() -> None:
    """A negative price or an unknown currency stops option parsing."""
    for argv in (["--price-kwh", "-1"], ["--currency", "EUX"], ["--price-kwh", "abc"], ["--price-kwh", "nan"]):
        with pytest.raises(usage.UsageError):
            TariffOptions().parseOptions(argv)


def test_currency_codes() -> None:
    """ISO 4217 codes are accepted in any case; others are refused."""
    assert currencyCode("usd") == "USD"
    assert currencyCode(" GBP ") == "GBP"
    for bad in ("EUX", "EURO", "E1R", "", "€"):
        with pytest.raises(ValueError):
            currencyCode(bad)


def test_price_values() -> None:
    """Prices are finite numbers zero or above; booleans are not numbers."""
    assert price("0.3") == 0.3
    assert price(0) == 0.0
    for bad in (-0.01, float("inf"), True, "x", None):
        with pytest.raises(ValueError):
            price(bad)


def test_example_time_of_use() -> None:
    """The documented example gives peak and off-peak on weekdays, off-peak weekends, then a flat price."""
    schedule = tariffSchedule({"currency": "EUR"}, example())
    assert schedule is not None
    first, second = schedule.tariffs
    assert first.start == date(2026, 1, 1) and second.start == date(2026, 7, 1)
    assert first.dailyCharge == 0.35 and second.dailyCharge == 0.0
    wednesdayNoon = minuteOfWeek(datetime(2026, 3, 4, 12, 0))
    wednesdayNight = minuteOfWeek(datetime(2026, 3, 4, 23, 0))
    saturdayNoon = minuteOfWeek(datetime(2026, 3, 7, 12, 0))
    assert first.priceAt(wednesdayNoon) == 0.34
    assert first.priceAt(wednesdayNight) == 0.22
    assert first.priceAt(saturdayNoon) == 0.22
    assert second.priceAt(wednesdayNoon) == 0.40
    assert schedule.inForce(date(2026, 6, 30)) is first
    assert schedule.inForce(date(2026, 7, 1)) is second
    # Before the earliest date, the earliest tariff prices history.
    assert schedule.inForce(date(2020, 1, 1)) is first


def test_window_crossing_midnight_and_wrapping_days() -> None:
    """A window ending before its start runs into the next day, from = to is 24 hours, and day ranges may wrap."""
    toml = {"tariff": [{"currency": "SEK", "window": [
        {"days": "fri-mon", "from": "18:00", "to": "06:00", "price-kwh": 1},
        {"days": "fri-mon", "from": "06:00", "to": "18:00", "price-kwh": 2},
        {"days": "tue-thu", "from": "06:00", "to": "06:00", "price-kwh": 3}]}]}
    schedule = tariffSchedule({}, toml)
    assert schedule is not None
    tariff = schedule.tariffs[0]
    assert tariff.priceAt(minuteOfWeek(datetime(2026, 3, 2, 5, 59))) == 1  # Monday, from Sunday 18:00
    assert tariff.priceAt(minuteOfWeek(datetime(2026, 3, 3, 5, 0))) == 1  # Tuesday, from Monday 18:00
    assert tariff.priceAt(minuteOfWeek(datetime(2026, 3, 3, 6, 0))) == 3  # Tuesday 06:00, a whole day
    assert tariff.priceAt(minuteOfWeek(datetime(2026, 3, 6, 5, 59))) == 3  # Friday, from Thursday 06:00


def test_errors_name_the_key() -> None:
    """Each kind of bad tariff table is refused with the offending key in the message."""
    cases: list[tuple[str, Any, str]] = [
        ("overlap", lambda t: t[0]["window"].append(
            {"days": "wed", "from": "12:00", "to": "13:00", "price-kwh": 0.1}),
         "tariff[1].window[4]: overlaps tariff[1].window[1] at wed 12:00"),
        ("gap", lambda t: t[0]["window"].pop(1), "tariff[1].window: no window prices mon 22:00"),
        ("negative", lambda t: t[0]["window"][1].__setitem__("price-kwh", -0.2),
         "tariff[1].window[2].price-kwh: -0.2 is negative"),
        ("text price", lambda t: t[1].__setitem__("price-kwh", "0.4"), "tariff[2].price-kwh:"),
        ("currency", lambda t: t[1].__setitem__("currency", "EUX"), "tariff[2].currency: 'EUX' is not"),
        ("mixed currency", lambda t: t[1].__setitem__("currency", "USD"), "tariff[2].currency: USD differs"),
        ("bad date", lambda t: t[1].__setitem__("from", "2026-02-30"), "tariff[2].from:"),
        ("datetime", lambda t: t[1].__setitem__("from", datetime(2026, 7, 1, 0, 0)), "tariff[2].from:"),
        ("same date", lambda t: t[1].__setitem__("from", date(2026, 1, 1)), "tariff[2].from: from = 2026-01-01"),
        ("bad time", lambda t: t[0]["window"][0].__setitem__("to", "25:00"), "tariff[1].window[1].to:"),
        ("seconds", lambda t: t[0]["window"][2].__setitem__("from", time(7, 0, 30)),
         "tariff[1].window[3].from:"),
        ("24:00 start", lambda t: t[0]["window"][0].__setitem__("from", "24:00"), "tariff[1].window[1].from:"),
        ("bad day", lambda t: t[0]["window"][0].__setitem__("days", "mon-fry"), "tariff[1].window[1].days:"),
        ("day twice", lambda t: t[0]["window"][2].__setitem__("days", "sat,sun,sat"),
         "tariff[1].window[3].days: sat is named twice"),
        ("missing", lambda t: t[0]["window"][0].pop("price-kwh"), "tariff[1].window[1].price-kwh: is missing"),
        ("unknown key", lambda t: t[0]["window"][0].__setitem__("price_kwh", 1), "tariff[1].window[1].price_kwh:"),
        ("unknown tariff key", lambda t: t[1].__setitem__("until", "2027-01-01"), "tariff[2].until:"),
        ("both", lambda t: t[1].__setitem__("window", []), "tariff[2]: give either price-kwh"),
        ("neither", lambda t: t[1].pop("price-kwh"), "tariff[2]: give either price-kwh"),
        ("charge", lambda t: t[0].__setitem__("daily-charge", -1), "tariff[1].daily-charge: -1 is negative"),
    ]
    for name, change, expected in cases:
        toml = copy.deepcopy(example())
        change(toml["tariff"])
        error = refusal({"currency": "EUR"}, toml)
        assert expected in str(error), (name, str(error))
        assert str(error).startswith(error.key), name


def test_flat_and_tables_together_refused() -> None:
    """A flat --price-kwh beside [[tariff]] tables is refused, naming price-kwh."""
    error = refusal({"currency": "EUR", "price-kwh": 0.3}, example())
    assert error.key == "price-kwh"


def test_top_level_refusals() -> None:
    """A price without a currency, or a currency or daily charge without a price, is refused by name."""
    assert refusal({"price-kwh": 0.3}).key == "currency"
    assert refusal({"currency": "EUR"}).key == "currency"
    assert refusal({"daily-charge": 0.3}).key == "daily-charge"
    assert refusal({"currency": "EUR", "price-kwh": -1}).key == "price-kwh"
    assert refusal({}, {"tariff": []}).key == "tariff"
    assert refusal({}, {"tariff": [{"price-kwh": 0.3}]}).key == "tariff[1].currency"
    assert refusal({}, {"tariff": ["x"]}).key == "tariff[1]"


def test_schedule_refuses_mixed_currencies() -> None:
    """A schedule built by hand still refuses two currencies."""
    with pytest.raises(ValueError):
        TariffSchedule([Tariff.flat(0.3, "EUR"), Tariff.flat(0.3, "USD", start=date(2026, 1, 1))])
    with pytest.raises(ValueError):
        TariffSchedule([])


def test_schedule_json() -> None:
    """The schedule's JSON names each tariff's date, daily charge, mean price and weekly prices."""
    schedule = tariffSchedule({"currency": "EUR"}, example())
    assert schedule is not None
    doc = schedule.toJSON()
    assert doc["currency"] == "EUR"
    assert doc["tariffs"][0]["from"] == "2026-01-01"
    assert doc["tariffs"][0]["prices"][:2] == [["mon 00:00", 0.22], ["mon 07:00", 0.34]]
    assert doc["tariffs"][1]["mean_price_kwh"] == 0.4


def test_documented_examples_validate() -> None:
    """Every TOML example in docs/energy.md is a configuration the daemon accepts."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "energy.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        data = tomllib.loads(block)
        options = {key: data.pop(key) for key in ("currency", "price-kwh", "daily-charge") if key in data}
        assert tariffSchedule(options, data) is not None


def windowsFor(cuts: list[int], prices: list[float]) -> list[dict[str, Any]]:
    """[[tariff.window]] tables for a week cut at C{cuts} (minutes), one price per piece, split at midnights."""
    from vesyncd.insight.tariff import DAY_NAMES, WEEK_MINUTES

    edges = sorted(set([0, *cuts, *range(1440, WEEK_MINUTES, 1440)]))
    windows = []
    for start, end in zip(edges, [*edges[1:], WEEK_MINUTES]):
        piece = sum(1 for c in cuts if c <= start)
        day, offset = divmod(start, 1440)
        stop = end - day * 1440
        windows.append({"days": DAY_NAMES[day], "from": f"{offset // 60:02d}:{offset % 60:02d}",
                        "to": f"{stop // 60:02d}:{stop % 60:02d}", "price-kwh": prices[piece]})
    return windows


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(1, 7 * 1440 - 1), max_size=12, unique=True),
       prices=st.lists(st.integers(0, 100), min_size=13, max_size=13))
def test_any_partition_of_the_week_is_accepted_and_priced(cuts: list[int], prices: list[int]) -> None:
    """Windows that tile the week are accepted; a week of 1 kWh hours costs 168 x the mean price."""
    from zoneinfo import ZoneInfo

    cents = [p / 100 for p in prices]
    schedule = tariffSchedule({"currency": "EUR"}, {"tariff": [{"window": windowsFor(cuts, cents)}]})
    assert schedule is not None
    tariff = schedule.tariffs[0]
    for minute in [0, *cuts]:
        assert tariff.priceAt(minute) == cents[sorted(cuts).index(minute) + 1 if minute else 0]
    monday = datetime(2026, 3, 2, tzinfo=ZoneInfo("UTC")).timestamp()
    week = sum(schedule.hourCost(monday + h * 3600, 1000.0, ZoneInfo("UTC")) for h in range(168))
    assert week == pytest.approx(168 * tariff.meanPrice())
    # Any window made one minute longer now overlaps its neighbour, or covers a minute twice.
    windows = windowsFor(cuts, cents)
    if len(windows) > 1 and windows[0]["to"] != "24:00":
        first = windows[0]
        minutes = int(first["to"][:2]) * 60 + int(first["to"][3:]) + 1
        first["to"] = f"{minutes // 60:02d}:{minutes % 60:02d}"
        with pytest.raises(TariffError, match="overlaps"):
            tariffSchedule({"currency": "EUR"}, {"tariff": [{"window": windows}]})
