"""vesyncd.web.jsonout: a long list is encoded over several reactor turns into the very bytes of one call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.fakes import Turns, result
from vesyncd.web.jsonout import BodyEncoder, encodeNow


def oneStepPerTurn() -> Any:
    """A cooperator that runs one step of each task per reactor turn."""
    return lambda: True


def sliced(doc: Any, perSlice: int = 3) -> tuple[bytes, int]:
    """The body C{doc} is encoded to in slices, and the reactor turns it took."""
    turns = Turns()
    encoder = BodyEncoder(turns, perSlice=perSlice,  # type: ignore[arg-type]
                          terminationPredicateFactory=oneStepPerTurn)
    pending = encoder.encode(doc)
    assert isinstance(pending, Deferred)
    count = 0
    while not pending.called:
        turns.turn()
        count += 1
        assert count < 10_000
    return result(pending), count


def test_a_short_document_is_encoded_at_once() -> None:
    """No list longer than a slice: the bytes come back at once, compact, with a newline."""
    encoder = BodyEncoder(Clock(), perSlice=3)
    doc = {"plugs": [1, 2, 3], "n": 1.5, "name": "Küche"}
    assert encoder.encode(doc) == encodeNow(doc) == b'{"plugs":[1,2,3],"n":1.5,"name":"K\\u00fcche"}\n'
    assert encoder.encode([1, 2, 3, 4, 5]) == encodeNow([1, 2, 3, 4, 5])  # not a dict: at once


def test_a_long_list_takes_a_turn_per_slice_and_gives_the_same_bytes() -> None:
    """The cost table's shape: the longest list is cut into slices, one per turn here; the body is
    byte for byte what one call gives, keys in the document's order."""
    lines = [{"plug": f"p{n}", "name": f"Plug \u00e9 {n} \"x\"", "wh": n / 7, "cost": None if n % 3 else n / 11}
             for n in range(10)]
    doc = {"month": "2026-12", "plugs": lines, "short": [1, 2], "total_wh": 3.25, "nested": {"a": [None, True]}}
    body, turns = sliced(doc)
    assert body == encodeNow(doc)
    assert json.loads(body) == doc
    assert turns >= 4  # ten items, three per slice


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=60), max_size=5))
def test_any_document_gives_the_bytes_of_one_call(doc: dict[str, Any]) -> None:
    """Whatever the document, sliced or not, the body is that of C{json.dumps} in one call."""
    encoder = BodyEncoder(Clock(), perSlice=2, terminationPredicateFactory=oneStepPerTurn)
    pending = encoder.encode(doc)
    if isinstance(pending, bytes):
        assert pending == encodeNow(doc)
        return
    body, _ = sliced(doc, perSlice=2)
    assert body == encodeNow(doc)


def test_a_list_that_cannot_be_encoded_fails_as_one_call_would() -> None:
    """An item the encoder refuses fails the Deferred with the encoder's own error."""
    clock = Clock()
    pending = BodyEncoder(clock, perSlice=2).encode({"items": [1, 2, 3, object()]})
    assert isinstance(pending, Deferred)
    clock.advance(0)
    failures: list[Any] = []
    pending.addErrback(failures.append)
    assert failures and failures[0].check(TypeError)
    with pytest.raises(TypeError):
        encodeNow({"items": [1, 2, 3, object()]})


def test_keys_that_are_not_text_are_left_to_one_call() -> None:
    """A dict with a key that is not text is encoded at once (the encoder's own key rules)."""
    doc = {1: list(range(10)), "b": 2}
    assert BodyEncoder(Clock(), perSlice=2).encode(doc) == encodeNow(doc)
