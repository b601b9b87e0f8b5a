"""vesyncd.core.turns: work cut into chunks, one chunk per reactor turn."""

from __future__ import annotations

import time
from typing import Any, Sequence

import pytest
from hypothesis import given, strategies as st

from tests.fakes import Turns, result
from vesyncd.core.turns import chunksInTurns, cooperator, orderInSteps


def run(items: Sequence[int], perTurn: int) -> tuple[list[list[int]], int, Any]:
    """The chunks seen, the turns taken after the first, and the result."""
    turns = Turns()
    seen: list[list[int]] = []
    d = chunksInTurns(turns, items, perTurn, lambda chunk: seen.append(list(chunk)))  # type: ignore[arg-type]
    count = 0
    while turns.waiting:
        assert not d.called
        turns.turn()
        count += 1
    return seen, count, result(d)


@given(st.lists(st.integers(), max_size=60), st.integers(min_value=1, max_value=12))
def test_every_item_once_in_order_one_chunk_per_turn(items: list[int], perTurn: int) -> None:
    """The chunks cover the items in order, each at most perTurn long; one chunk per turn."""
    seen, turns, outcome = run(items, perTurn)
    assert [x for chunk in seen for x in chunk] == items
    assert all(0 < len(chunk) <= perTurn for chunk in seen) or seen == [[]]
    assert turns == max(len(seen) - 1, 0)
    assert outcome is None


def test_at_most_one_chunk_is_done_at_once() -> None:
    """Up to perTurn items are handled in the caller's turn; the Deferred has fired."""
    seen, turns, outcome = run([1, 2, 3], 3)
    assert (seen, turns, outcome) == ([[1, 2, 3]], 0, None)


def test_a_failing_step_fails_the_work_and_stops_it() -> None:
    """The step's exception fails the Deferred; no chunk after it is handled."""
    turns = Turns()
    seen: list[Sequence[int]] = []

    def step(chunk: Sequence[int]) -> None:
        if 4 in chunk:
            raise RuntimeError("broken")
        seen.append(chunk)

    d = chunksInTurns(turns, range(10), 2, step)  # type: ignore[arg-type]
    turns.turn()
    turns.turn()
    assert not turns.waiting and list(map(list, seen)) == [[0, 1], [2, 3]]
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(RuntimeError)


def test_chunks_of_nothing_are_refused() -> None:
    """perTurn below 1 is a programming error, said at once."""
    with pytest.raises(ValueError):
        chunksInTurns(Turns(), [1], 0, lambda chunk: None)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.integers(-3, 3), st.text(alphabet="ab", max_size=2)), max_size=80),
       st.integers(min_value=1, max_value=9))
def test_order_in_steps_is_the_stable_sort(keys: list[tuple[int, str]], chunk: int) -> None:
    """Whatever the keys (ties included) and the chunk, the indices come out as a stable sorted()
    orders them, and no step handles more than one chunk's keys."""
    order: list[int] = []
    steps = list(orderInSteps(keys, order, chunk))
    assert order == sorted(range(len(keys)), key=keys.__getitem__)
    assert len(steps) <= 2 * (len(keys) // chunk + 1)


def test_a_cooperator_slices_by_time_and_turns_by_the_clock() -> None:
    """The shared cooperator runs steps until its slice is used, then waits for the next turn."""
    turns = Turns()
    coop = cooperator(turns, seconds=0.002)  # type: ignore[arg-type]
    ran: list[int] = []

    def work() -> Any:
        for i in range(6):
            end = time.monotonic() + 0.0015
            while time.monotonic() < end:
                pass
            ran.append(i)
            yield None

    d = coop.coiterate(work())
    count = 0
    while turns.waiting:
        before = len(ran)
        turns.turn()
        assert len(ran) - before <= 2  # a step may start before the slice is used up, not after
        count += 1
    assert ran == list(range(6)) and count >= 3 and result(d) is not None
