"""
Tariff configuration: the C{--currency}, C{--price-kwh} and C{--daily-charge} options and the TOML
C{[[tariff]]} tables, validated into a L{TariffSchedule} or refused with the key named.

A flat price::

    currency = "EUR"
    price-kwh = 0.30
    daily-charge = 0.35          # optional, kept apart from per-plug cost

Dated time-of-use tariffs (the top-level C{currency} and C{daily-charge} are defaults for them)::

    [[tariff]]
    from = 2026-01-01            # a TOML date or "2026-01-01"; omit on one tariff for "since always"
    currency = "EUR"
    daily-charge = 0.35
      [[tariff.window]]
      days = "mon-fri"
      from = "07:00"
      to = "22:00"
      price-kwh = 0.34
      [[tariff.window]]
      days = "mon-fri"
      from = "22:00"             # to < from: runs past midnight into the next day
      to = "07:00"
      price-kwh = 0.22
      [[tariff.window]]
      days = "sat,sun"           # fri 22:00 to sat 07:00 is the mon-fri night window's
      from = "07:00"
      to = "07:00"               # from = to: all 24 hours, here sat 07:00 to sun 07:00 and sun to mon
      price-kwh = 0.22

A C{[[tariff]]} has either C{price-kwh} (one price all week) or C{[[tariff.window]]} tables that
cover every minute of the week exactly once.  Errors name the key as C{tariff[2].window[1].price-kwh},
counting tables from 1 in file order.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from typing import Any, Mapping

from vesyncd.insight.tariff import DAY_NAMES, WEEK_MINUTES, Tariff, TariffSchedule, weekLabel

#: The TOML key of the dated tariff tables (an array of tables; not an option).
TARIFF_KEY = "tariff"
TARIFF_KEYS = frozenset({"from", "currency", "daily-charge", "price-kwh", "window"})
WINDOW_KEYS = frozenset({"days", "from", "to", "price-kwh"})


class TariffError(ValueError):
    """A tariff setting that cannot be used; C{key} names it (e.g. C{"tariff[1].window[2].to"})."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def currencyCode(text: str) -> str:
    """An ISO 4217 currency code in upper case.

    @raise ValueError: not a three-letter code that ISO 4217 lists.
    """
    import pycountry

    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z]{3}", text.strip()):
        raise ValueError(f"{text!r} is not a three-letter ISO 4217 currency code (e.g. EUR, USD, GBP)")
    code = text.strip().upper()
    if pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code (e.g. EUR, USD, GBP)")
    return code


currencyCode.coerceDoc = "An ISO 4217 code such as EUR, USD or GBP."  # type: ignore[attr-defined]


def price(value: Any) -> float:
    """A price: a finite number zero or above (text is read as a decimal number).

    @raise ValueError: not a number, negative, or not finite.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{value!r} is negative; prices are zero or above")
    return float(value)


price.coerceDoc = "A number zero or above."  # type: ignore[attr-defined]

#: Option table entries for the daemon's Options (usage.Options C{optParameters} form).
optParameters: list[list[Any]] = [
    ["currency", None, None, "ISO 4217 currency of the energy price (e.g. EUR).", currencyCode],
    ["price-kwh", None, None, "A flat price per kWh, in --currency; time-of-use prices go in the"
                              " config file's [[tariff]] tables.", price],
    ["daily-charge", None, None, "A fixed charge per day, in --currency, shown apart from the plugs' cost.",
     price],
]


def _price(value: Any, key: str) -> float:
    if isinstance(value, str):
        raise TariffError(key, f"{value!r} is text; write a number (price-kwh = 0.30)")
    try:
        return price(value)
    except ValueError as e:
        raise TariffError(key, str(e)) from None


def _optionPrice(value: Any, key: str) -> float | None:
    """An option's price: the option table may hand over text or an already coerced number."""
    if value is None:
        return None
    try:
        return price(value)
    except ValueError as e:
        raise TariffError(key, str(e)) from None


def _currency(value: Any, key: str) -> str:
    try:
        return currencyCode(value)
    except ValueError as e:
        raise TariffError(key, str(e)) from None


def _date(value: Any, key: str) -> date:
    if isinstance(value, datetime) or not isinstance(value, (date, str)):
        raise TariffError(key, f"{value!r} is not a date like 2026-01-01")
    if isinstance(value, date):
        return value
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise TariffError(key, f"{value!r} is not a date like 2026-01-01")
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise TariffError(key, f"{value!r}: {e}") from None


def _minute(value: Any, key: str, allowEnd: bool) -> int:
    """Minutes after midnight of an C{"HH:MM"} text or a TOML local time; C{"24:00"} only if C{allowEnd}."""
    if isinstance(value, time):
        if value.second or value.microsecond or value.tzinfo:
            raise TariffError(key, f"{value.isoformat()!r} must be whole minutes, local time (07:00)")
        return value.hour * 60 + value.minute
    if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}", value):
        raise TariffError(key, f"{value!r} is not a time like 07:00")
    hours, minutes = int(value[:2]), int(value[3:])
    if allowEnd and (hours, minutes) == (24, 0):
        return 1440
    if hours > 23 or minutes > 59:
        raise TariffError(key, f"{value!r} is not a time of day (00:00 to 23:59{', or 24:00' if allowEnd else ''})")
    return hours * 60 + minutes


def _days(value: Any, key: str) -> list[int]:
    """Weekday numbers (Monday 0) of C{"mon-fri"}, C{"sat,sun"}, C{"fri-mon"} (wraps) or C{"all"}."""
    if not isinstance(value, str) or not value.strip():
        raise TariffError(key, f"{value!r} is not a list of days like \"mon-fri\" or \"sat,sun\"")
    text = value.strip().lower()
    if text in ("all", "daily"):
        return list(range(7))
    days: list[int] = []
    for item in text.split(","):
        parts = [p.strip() for p in item.split("-")]
        if len(parts) > 2 or any(p not in DAY_NAMES for p in parts):
            raise TariffError(key, f"{item.strip()!r} is not a day (mon tue wed thu fri sat sun) or a range"
                                   " of them (mon-fri)")
        first, last = DAY_NAMES.index(parts[0]), DAY_NAMES.index(parts[-1])
        for step in range((last - first) % 7 + 1):
            day = (first + step) % 7
            if day in days:
                raise TariffError(key, f"{DAY_NAMES[day]} is named twice")
            days.append(day)
    return days


def _table(value: Any, key: str, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TariffError(key, f"must be a table, not {type(value).__name__}")
    for name in value:
        if name not in known:
            raise TariffError(f"{key}.{name}", f"is not a tariff key (known: {', '.join(sorted(known))})")
    return value


def _windows(windows: Any, key: str) -> tuple[tuple[int, float], ...]:
    """The weekly segments of a tariff's C{[[tariff.window]]} tables, refusing overlaps and gaps."""
    if not isinstance(windows, list) or not windows:
        raise TariffError(f"{key}.window", "must be one or more [[tariff.window]] tables")
    owner: list[int] = [-1] * WEEK_MINUTES
    prices: list[float] = []
    for n, raw in enumerate(windows, 1):
        where = f"{key}.window[{n}]"
        window = _table(raw, where, WINDOW_KEYS)
        for required in ("days", "from", "to", "price-kwh"):
            if required not in window:
                raise TariffError(f"{where}.{required}", "is missing")
        days = _days(window["days"], f"{where}.days")
        start = _minute(window["from"], f"{where}.from", allowEnd=False)
        end = _minute(window["to"], f"{where}.to", allowEnd=True)
        # to = from is a whole day from that time; to < from runs past midnight.
        length = (end - start) % 1440 or 1440
        prices.append(_price(window["price-kwh"], f"{where}.price-kwh"))
        for day in days:
            for m in range(day * 1440 + start, day * 1440 + start + length):
                m %= WEEK_MINUTES
                if owner[m] != -1:
                    raise TariffError(where, f"overlaps {key}.window[{owner[m] + 1}] at {weekLabel(m)}")
                owner[m] = n - 1
    if -1 in owner:
        gap = owner.index(-1)
        raise TariffError(f"{key}.window", f"no window prices {weekLabel(gap)}; windows must cover every"
                                           " minute of the week (mon-sun, 00:00-24:00)")
    segments: list[tuple[int, float]] = []
    for m in range(WEEK_MINUTES):
        p = prices[owner[m]]
        if not segments or segments[-1][1] != p:
            segments.append((m, p))
    return tuple(segments)


def _tariff(raw: Any, n: int, defaultCurrency: str | None, defaultCharge: float) -> Tariff:
    key = f"{TARIFF_KEY}[{n}]"
    table = _table(raw, key, TARIFF_KEYS)
    start = _date(table["from"], f"{key}.from") if "from" in table else None
    if "currency" in table:
        currency = _currency(table["currency"], f"{key}.currency")
    elif defaultCurrency:
        currency = defaultCurrency
    else:
        raise TariffError(f"{key}.currency", "is missing (or give currency at the top of the file)")
    charge = _price(table["daily-charge"], f"{key}.daily-charge") if "daily-charge" in table else defaultCharge
    if ("price-kwh" in table) == ("window" in table):
        raise TariffError(key, "give either price-kwh (one price all week) or [[tariff.window]] tables")
    if "price-kwh" in table:
        segments: tuple[tuple[int, float], ...] = ((0, _price(table["price-kwh"], f"{key}.price-kwh")),)
    else:
        segments = _windows(table["window"], key)
    return Tariff(start=start, currency=currency, dailyCharge=charge, segments=segments)


def tariffSchedule(options: Mapping[str, Any], toml: Mapping[str, Any] | None = None) -> TariffSchedule | None:
    """The validated tariff schedule of the parsed options and the config file, or None if none is set.

    C{options} holds C{"currency"}, C{"price-kwh"} and C{"daily-charge"} (as the option table
    coerces them, or None); C{toml} is the config file as C{tomllib} reads it, of which only
    C{"tariff"} is read here.

    @raise TariffError: a value that cannot be used, naming its key.
    """
    currency = options.get("currency")
    flat = options.get("price-kwh")
    charge = options.get("daily-charge")
    currency = _currency(currency, "currency") if currency is not None else None
    flat = _optionPrice(flat, "price-kwh")
    charge = _optionPrice(charge, "daily-charge") or 0.0
    tables = (toml or {}).get(TARIFF_KEY)
    if tables is not None:
        if flat is not None:
            raise TariffError("price-kwh", "is given with [[tariff]] tables; put the flat price in a"
                                           " [[tariff]] (price-kwh = ...) and drop the option")
        if isinstance(tables, Mapping):
            tables = [tables]
        if not isinstance(tables, list) or not tables:
            raise TariffError(TARIFF_KEY, "must be one or more [[tariff]] tables")
        tariffs = [_tariff(raw, n, currency, charge) for n, raw in enumerate(tables, 1)]
        seen: dict[date | None, int] = {}
        for n, t in enumerate(tariffs, 1):
            if t.start in seen:
                what = f"from = {t.start.isoformat()}" if t.start else "no from date"
                raise TariffError(f"{TARIFF_KEY}[{n}].from", f"{what} also on {TARIFF_KEY}[{seen[t.start]}];"
                                                            " each tariff starts on its own date")
            seen[t.start] = n
            if t.currency != tariffs[0].currency:
                raise TariffError(f"{TARIFF_KEY}[{n}].currency", f"{t.currency} differs from"
                                                                f" {TARIFF_KEY}[1]'s {tariffs[0].currency};"
                                                                " all tariffs share one currency")
        return TariffSchedule(tariffs)
    if flat is None:
        if currency is not None:
            raise TariffError("currency", "is given without a price (--price-kwh or [[tariff]] tables)")
        if options.get("daily-charge") is not None:
            raise TariffError("daily-charge", "is given without a price (--price-kwh or [[tariff]] tables)")
        return None
    if currency is None:
        raise TariffError("currency", "is missing: --price-kwh needs --currency (e.g. --currency EUR)")
    return TariffSchedule([Tariff.flat(flat, currency, charge)])
