"""
Always-on power: each plug's standby baseline from the last 7 days of power samples.

Definition: time is cut into 15-minute slots and each slot keeps the lowest power sampled in it
(to 0.1 W).  A plug's baseline at C{now} is the 10th percentile (nearest rank: the
C{ceil(0.1 x n)}-th smallest) of the minima of the slots of the 7 days up to C{now} that hold a
sample, once at least 24 hours' worth of slots (96) hold one; before that it is None.  So the
baseline is the level a plug falls to for at least a tenth of its recorded time: a fridge's
compressor-off draw, a TV's standby, a router's constant draw.  A plug switched off for a tenth
of the week has a baseline of 0 W, which is right: it draws nothing then.

Why 15 minutes: the slot's minimum is already its lowest sample, so longer slots lose no standby
reading, and plugs report energy every ~3 minutes, so 5-minute slots would hold one sample each
and give the same percentile at three times the memory.  Memory per plug: 672 slots x 2 bytes
(unsigned deciwatts, 0xFFFF = empty) = 1,344 bytes plus about 200 bytes of object headers,
allocated at the plug's first sample; C{bench/insight_bench.py} measures it at 10,000 plugs.
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Any, Iterator

from vesyncd.insight.cost import YEAR_HOURS, yearlyCost
from vesyncd.insight.ring import Ring, SlotRing
from vesyncd.insight.tariff import TariffSchedule

SLOT_SECONDS = 15 * 60
DAYS = 7
SLOTS = DAYS * 24 * 3600 // SLOT_SECONDS
#: Slots that must hold a sample before a baseline is given (24 hours' worth).
MIN_SLOTS = 24 * 3600 // SLOT_SECONDS
PERCENTILE = 10
#: Deciwatts are kept in 16 bits; 0xFFFF marks an empty slot, so 6553.4 W is the most recorded.
EMPTY = 0xFFFF
MAX_DECIWATTS = EMPTY - 1


def deciwatts(watts: float) -> int | None:
    """Watts as whole tenths of a watt, capped at 6553.4 W; None for a negative or non-finite value."""
    if isinstance(watts, bool) or not isinstance(watts, (int, float)) or not math.isfinite(watts) or watts < 0:
        return None
    return min(int(round(watts * 10)), MAX_DECIWATTS)


def nearestRank(ordered: list[int], percentile: float) -> int:
    """The nearest-rank percentile of an ascending, non-empty list: its C{ceil(p/100 x n)}-th value."""
    rank = max(1, math.ceil(percentile / 100.0 * len(ordered)))
    return ordered[rank - 1]


class BaselineTracker:
    """Per-plug rings of 15-minute power minima and the standby baseline they give."""

    def __init__(self, slotSeconds: int = SLOT_SECONDS, slots: int = SLOTS, minSlots: int = MIN_SLOTS,
                 percentile: float = PERCENTILE) -> None:
        self.shape = SlotRing(slotSeconds, slots, (("H", EMPTY),))
        self.minSlots = minSlots
        self.percentile = percentile
        self._rings: dict[str, Ring] = {}

    def add(self, plug: str, at: float, power_w: float) -> None:
        """Count a power sample of C{plug} at POSIX time C{at}; negative or non-finite readings are ignored."""
        dw = deciwatts(power_w)
        if dw is None or not math.isfinite(at):
            return
        self.addDeciwatts(plug, at, dw)

    def addDeciwatts(self, plug: str, at: float, dw: int) -> None:
        """L{add} for a sample already checked: C{dw} from L{deciwatts}, C{at} finite."""
        ring = self._rings.get(plug)
        if ring is None:
            ring = self._rings[plug] = self.shape.new()
        p = self.shape.place(ring, at)
        if p is not None:
            minima = ring.arrays[0]
            if dw < minima[p]:
                minima[p] = dw

    def _minima(self, plug: str, now: float) -> list[int]:
        """The slot minima in the window ending at C{now}, ascending."""
        ring = self._rings.get(plug)
        if ring is None:
            return []
        minima = ring.arrays[0]
        return sorted(v for v in (minima[p] for _, p in self.shape.live(ring, now)) if v != EMPTY)

    def hoursOfData(self, plug: str, now: float) -> float:
        """Hours' worth of slots holding a sample in the window ending at C{now}."""
        return len(self._minima(plug, now)) * self.shape.seconds / 3600.0

    def baseline(self, plug: str, now: float) -> float | None:
        """The plug's standby baseline in watts (to 0.1 W) at C{now}, or None without 24 h of data."""
        values = self._minima(plug, now)
        if len(values) < self.minSlots:
            return None
        return nearestRank(values, self.percentile) / 10.0

    def plugs(self) -> Iterator[str]:
        """The plugs with samples kept."""
        return iter(list(self._rings))

    def forget(self, plug: str) -> None:
        """Drop everything kept for C{plug}."""
        self._rings.pop(plug, None)

    def dump(self, plug: str) -> bytes:
        """The plug's samples as bytes, to L{load} after a restart.

        @raise KeyError: nothing is kept for C{plug}.
        """
        return self.shape.dump(self._rings[plug])

    def load(self, plug: str, data: bytes) -> None:
        """Restore a plug's samples from L{dump}'s bytes, replacing what was kept.

        @raise ValueError: the bytes are not a dump of this tracker's shape.
        """
        ring = self.shape.load(data)
        # Above MAX_DECIWATTS only EMPTY is allowed, so only a value above EMPTY is out of range, and
        # 16-bit slots cannot hold one: the scan (~30 ms per 1,000 plugs at start-up) is for wider ones.
        minima = ring.arrays[0]
        if minima.itemsize > 2 and max(minima, default=EMPTY) > EMPTY:
            raise ValueError("saved baseline holds values out of range")
        self._rings[plug] = ring


def baselineJSON(tracker: BaselineTracker, plug: str, now: float, schedule: TariffSchedule | None,
                 zone: tzinfo) -> dict[str, Any]:
    """The one JSON shape of a plug's always-on power for every front end.

    C{{"baseline_w", "baseline_hours", "baseline_yearly_kwh", "baseline_yearly_cost", "currency"}}:
    the baseline (None until 24 h of data), the hours of data it rests on, a year of it in kWh
    (x 8766 h, 3 decimals), and its cost at the tariff in force today (None without a tariff or
    a baseline).
    """
    watts = tracker.baseline(plug, now)
    doc: dict[str, Any] = {"baseline_w": watts, "baseline_hours": round(tracker.hoursOfData(plug, now), 2),
                           "baseline_yearly_kwh": None if watts is None else round(watts * YEAR_HOURS / 1000.0, 3),
                           "baseline_yearly_cost": None,
                           "currency": schedule.currency if schedule is not None else None}
    if watts is not None and schedule is not None:
        doc["baseline_yearly_cost"] = yearlyCost(watts, schedule, datetime.fromtimestamp(now, tz=zone).date())
    return doc
