"""The one JSON shape of a hub event (vesyncd.core.events.eventJSON), with plain values."""

from __future__ import annotations

import json

from vesyncd.core.events import eventJSON, jsonValue
from vesyncd.core.model import Event, PlugState

AT = 1_714_557_600.0


def test_envelopeAndNestedData() -> None:
    """Envelope keys are fixed; the event's data is nested, so a data key never overrides one."""
    event = Event("relay", "abc", AT, {"relay": True, "cause": "button", "previous": None, "event": "x",
                                       "plug": "y"})
    doc = eventJSON(event, PlugState(id="abc", alias="Kettle"))
    assert doc == {"event": "relay", "plug": "abc", "name": "Kettle", "alias": "Kettle",
                   "at": "2024-05-01T10:00:00Z", "ts": AT,
                   "data": {"relay": True, "cause": "button", "previous": None, "event": "x", "plug": "y"}}


def test_nameFallsBackToId() -> None:
    """Without an alias (or without the plug's state) the name is the id and the alias null."""
    assert eventJSON(Event("online", "abc", AT, {}))["name"] == "abc"
    doc = eventJSON(Event("online", "abc", AT, {}), PlugState(id="abc"))
    assert (doc["name"], doc["alias"]) == ("abc", None)


def test_forgottenKeepsTheAliasItHad() -> None:
    """A forgotten plug has no state left; its event's own alias names it."""
    doc = eventJSON(Event("forgotten", "abc", AT, {"alias": "Fan"}))
    assert (doc["name"], doc["alias"], doc["data"]) == ("Fan", "Fan", {"alias": "Fan"})


def test_valuesAreJSONNative() -> None:
    """Numbers stay numbers, non-finite floats become null, containers are copied and the result dumps."""
    event = Event("energy", "abc", AT, {"watt_seconds": 2660, "seconds": 133, "average_w": 20.0,
                                        "bad": float("nan"), "fields": ("account", "firmware"),
                                        "first": {"firmware": "1.89"}})
    data = eventJSON(event)["data"]
    assert data == {"watt_seconds": 2660, "seconds": 133, "average_w": 20.0, "bad": None,
                    "fields": ["account", "firmware"], "first": {"firmware": "1.89"}}
    json.dumps(eventJSON(event), allow_nan=False)
    assert jsonValue(object.__new__(object)).startswith("<object")
