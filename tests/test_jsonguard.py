"""The one guarded JSON parser the front ends share."""

from __future__ import annotations

import pytest

from vesyncd.jsonguard import BadJSON, parseJSONObject


def test_acceptsObjectsWithinTheBounds() -> None:
    """An object within the size and depth bounds comes back as parsed."""
    raw = b'{"a":' + b"[" * 3 + b"1" + b"]" * 3 + b"}"
    assert parseJSONObject(raw, maxBytes=len(raw), maxDepth=4) == {"a": [[[1]]]}


@pytest.mark.parametrize("raw,reason", [
    (b'{"a": 1}' + b" " * 20, "larger than 20 bytes"),
    (b'{"a": "\xff"}', "is not UTF-8"),
    (b'{"a":', "is not JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"a": NaN}', "NaN is not allowed"),
    (b'{"a": -Infinity}', "-Infinity is not allowed"),
    (b'{"a":' + b"[" * 4 + b"]" * 4 + b"}", "nests deeper than 4 levels"),
    (b"[" * 5000 + b"]" * 5000, "nests deeper than 4 levels"),
])
def test_refusesWithAReason(raw: bytes, reason: str) -> None:
    """Each refusal is a BadJSON (a ValueError) whose message names the reason and the input."""
    with pytest.raises(BadJSON, match=reason) as caught:
        parseJSONObject(raw, maxBytes=20 if b" " * 20 in raw else 100_000, maxDepth=4, what="the payload")
    assert isinstance(caught.value, ValueError)
    assert "\xff" not in str(caught.value)
