"""
A fixed-size ring of time slots: the bounded store behind the baseline and the 24-hour chart.

Time is cut into slots of C{seconds}; slot C{n} covers C{[n * seconds, (n + 1) * seconds)} and
lives at position C{n % size} of flat C{array}s, so a ring holds the last C{size} slots in
C{size} x (bytes per slot) whatever the sample rate, with no timestamps stored.  A L{Ring}
remembers the newest slot written; moving to a newer slot empties the positions skipped over,
so a plug that was silent leaves empty slots, never stale ones.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Any, Iterator

_MAGIC = b"VSR1"
_HEADER = struct.Struct("<4sIIq")


class Ring:
    """One plug's slots: C{arrays} (one per value kept) and the newest slot number written."""

    __slots__ = ("last", "arrays")

    def __init__(self, last: int | None, arrays: "tuple[array.array[Any], ...]") -> None:
        self.last = last
        self.arrays = arrays


class SlotRing:
    """The shape shared by many L{Ring}s: slot length, slot count, and each array's type and empty value.

    C{layout} is a tuple of C{(typecode, empty)}, e.g. C{(("H", 0xFFFF),)} for one array of
    unsigned 16-bit values where 0xFFFF marks an empty slot.
    """

    def __init__(self, seconds: int, size: int, layout: tuple[tuple[str, int | float], ...]) -> None:
        if seconds < 1 or size < 1 or not layout:
            raise ValueError("a slot ring needs seconds >= 1, size >= 1 and at least one array")
        self.seconds = seconds
        self.size = size
        self.layout = layout
        # Whole-ring resets copy these instead of writing slot by slot.
        self._blank = tuple(array.array(code, [empty]) * size for code, empty in layout)

    def new(self) -> Ring:
        """An empty ring of this shape."""
        return Ring(None, tuple(array.array(b.typecode, b) for b in self._blank))

    def slotOf(self, at: float) -> int:
        """The number of the slot holding POSIX time C{at}."""
        return int(at // self.seconds)

    def place(self, ring: Ring, at: float) -> int | None:
        """The position for a sample at C{at}, moving the ring forward to it; None if too old to keep.

        A sample older than the ring's newest slot still lands in its own slot while that slot is
        within the ring (late samples are kept; samples more than C{size} slots old are dropped).
        """
        slot = int(at // self.seconds)
        last = ring.last
        if slot == last:
            return slot % self.size  # the usual sample: the ring's newest slot again
        if last is None or slot - last >= self.size:
            for target, blank in zip(ring.arrays, self._blank):
                target[:] = blank
            ring.last = slot
        elif slot > last:
            for s in range(last + 1, slot + 1):
                p = s % self.size
                for target, (_, empty) in zip(ring.arrays, self.layout):
                    target[p] = empty
            ring.last = slot
        elif slot <= last - self.size:
            return None
        return slot % self.size

    def live(self, ring: Ring, now: float) -> Iterator[tuple[int, int]]:
        """C{(slot, position)} of each slot both in the ring and in the C{size} slots ending at C{now}, oldest first.

        The caller checks each position for its empty value; the ring is not changed.
        """
        if ring.last is None:
            return
        nowSlot = self.slotOf(now)
        first = max(ring.last, nowSlot) - self.size + 1
        for slot in range(first, min(ring.last, nowSlot) + 1):
            yield slot, slot % self.size

    def dump(self, ring: Ring) -> bytes:
        """The ring as bytes (little-endian), for L{load} after a restart."""
        parts = [_HEADER.pack(_MAGIC, self.seconds, self.size, -1 if ring.last is None else ring.last)]
        for a in ring.arrays:
            if sys.byteorder == "big":
                a = array.array(a.typecode, a)
                a.byteswap()
            parts.append(a.tobytes())
        return b"".join(parts)

    def load(self, data: bytes) -> Ring:
        """A ring from L{dump}'s bytes.

        @raise ValueError: the bytes are not a ring of this shape (other slot length or size, cut short).
        """
        if len(data) < _HEADER.size:
            raise ValueError("saved ring is cut short")
        magic, seconds, size, last = _HEADER.unpack_from(data)
        if magic != _MAGIC or seconds != self.seconds or size != self.size:
            raise ValueError(f"saved ring is not {self.size} slots of {self.seconds} s")
        # Each array is built straight from its bytes: no blank ring to fill and then overwrite.
        arrays = []
        offset = _HEADER.size
        for code, _ in self.layout:
            target = array.array(code)
            n = target.itemsize * self.size
            if len(data) < offset + n:
                raise ValueError("saved ring is cut short")
            target.frombytes(data[offset:offset + n])
            if sys.byteorder == "big":
                target.byteswap()
            arrays.append(target)
            offset += n
        if offset != len(data):
            raise ValueError("saved ring has trailing bytes")
        return Ring(None if last == -1 else last, tuple(arrays))
