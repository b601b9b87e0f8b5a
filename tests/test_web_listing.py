"""GET /api/plugs: pages, the name and state filters and sorting, in memory."""

from __future__ import annotations

from twisted.trial import unittest

from tests.web_helpers import PLUG_A, PLUG_B, PLUG_C, Harness, login, runtime
from vesyncd.core.settings import Settings
from vesyncd.web import listing


class ListingTests(unittest.TestCase):
    """The plug list's query parameters."""

    def test_defaultPageKeepsOldShape(self) -> None:
        """Without parameters the answer still has every plug (of a small house) under "plugs", by name."""
        doc = Harness().request("GET", "/api/plugs").json()
        self.assertEqual([p["id"] for p in doc["plugs"]], [PLUG_A, PLUG_C, PLUG_B])
        self.assertEqual((doc["total"], doc["offset"], doc["limit"], doc["next_offset"]), (3, 0, 100, None))

    def test_pages(self) -> None:
        """limit and offset walk the list; next_offset says where the next page starts."""
        h = Harness()
        first = h.request("GET", "/api/plugs?limit=2").json()
        self.assertEqual([p["id"] for p in first["plugs"]], [PLUG_A, PLUG_C])
        self.assertEqual(first["next_offset"], 2)
        second = h.request("GET", "/api/plugs?limit=2&offset=2").json()
        self.assertEqual([p["id"] for p in second["plugs"]], [PLUG_B])
        self.assertIsNone(second["next_offset"])

    def test_filters(self) -> None:
        """q matches a substring of alias or id in any case; state keeps online/offline/on/off plugs."""
        h = Harness()
        ids = lambda query: [p["id"] for p in h.request("GET", "/api/plugs?" + query).json()["plugs"]]  # noqa: E731
        self.assertEqual(ids("q=KETT"), [PLUG_B])
        self.assertEqual(ids("q=cccc"), [PLUG_C])
        self.assertEqual(ids("state=offline"), [PLUG_C])
        self.assertEqual(ids("state=online"), [PLUG_A, PLUG_B])
        self.assertEqual(ids("state=on"), [PLUG_C, PLUG_B])
        self.assertEqual(ids("state=off"), [PLUG_A])
        self.assertEqual(ids("q=aaaa&state=on"), [PLUG_B])
        self.assertEqual(h.request("GET", "/api/plugs?q=zzz").json()["total"], 0)

    def test_sortByPower(self) -> None:
        """sort=power puts the highest reading first (order=asc the lowest); plugs without one come last."""
        h = Harness()
        runtime(h.sessionA, relay=True, watts=900.0)
        runtime(h.sessionB, relay=True, watts=5.0)
        ids = lambda query: [p["id"] for p in h.request("GET", "/api/plugs?" + query).json()["plugs"]]  # noqa: E731
        self.assertEqual(ids("sort=power"), [PLUG_A, PLUG_B, PLUG_C])
        self.assertEqual(ids("sort=power&order=asc"), [PLUG_B, PLUG_A, PLUG_C])
        self.assertEqual(ids("sort=name&order=desc"), [PLUG_B, PLUG_C, PLUG_A])

    def test_badParameters(self) -> None:
        """Bad values and unknown parameters are a 400 naming the field."""
        h = Harness()
        for query, field in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("offset=-1", "offset"),
                             ("state=sleeping", "state"), ("sort=rssi", "sort"), ("order=up", "order"), ("page=2", "page")]:
            r = h.request("GET", "/api/plugs?" + query)
            self.assertEqual((r.status, r.json()["field"]), (400, field), query)

    def test_manyPlugsFirstPageReadsOnlyItsPlugs(self) -> None:
        """With 2,000 plugs the first page reads the ledger and builds JSON for its 100 plugs only.

        (The cost that grows with the house is a filter over plain fields; docs/http.md has the
        figures at 10,000 plugs.)"""
        h = Harness(settings=Settings(max_new_plugs_per_minute=20_000))
        for i in range(2_000):
            login(h.hub, f"eeee{i:04d}-0000-4000-8000-000000000000", peer=f"10.{i // 200}.{i % 200}.1:40000")
        reads: list[str] = []
        energy = h.hub.energy

        def counted(plugId: str):  # type: ignore[no-untyped-def]
            reads.append(plugId)
            return energy(plugId)

        h.hub.energy = counted  # type: ignore[method-assign]
        doc = h.request("GET", "/api/plugs").json()
        self.assertEqual((len(doc["plugs"]), doc["total"], doc["next_offset"]), (100, 2_003, 100))
        self.assertEqual(len(reads), 100)
        reads.clear()
        filtered = h.request("GET", "/api/plugs?q=eeee1999").json()
        self.assertEqual([p["id"] for p in filtered["plugs"]], ["eeee1999-0000-4000-8000-000000000000"])
        self.assertEqual(len(reads), 1)

    def test_aLongPageIsAnsweredOverSeveralTurns(self) -> None:
        """A page of 500 plugs (the dashboard loads 1,000 at a time) is encoded a slice per reactor
        turn: no answer before the turns run, then the whole page, as one encoding gives it."""
        from vesyncd.web.jsonout import SLICE_ITEMS, encodeNow

        h = Harness(settings=Settings(max_new_plugs_per_minute=20_000))
        for i in range(500):
            login(h.hub, f"eeee{i:04d}-0000-4000-8000-000000000000", peer=f"10.{i // 200}.{i % 200}.1:40000")
        exchange = h.send("GET", "/api/plugs?limit=500")
        self.assertIsNone(exchange.response())  # 500 > SLICE_ITEMS: the body is still being encoded
        self.assertLess(SLICE_ITEMS, 500)
        h.clock.advance(0)
        response = exchange.response()
        assert response is not None and response.complete
        doc = response.json()
        self.assertEqual((len(doc["plugs"]), doc["total"], doc["next_offset"]), (500, 503, 500))
        self.assertEqual(response.body, encodeNow(doc))
        self.assertEqual(response.status, 200)

    def test_pageFunctionOnPlainStates(self) -> None:
        """listing.page works on any iterable of plug states and never calls toJSON beyond the page."""
        h = Harness()
        made: list[str] = []
        doc = listing.page(h.hub.plugs(), {"limit": "1", "offset": "1"}, lambda p: made.append(p.id) or {"id": p.id})
        self.assertEqual((doc["plugs"], made), ([{"id": PLUG_C}], [PLUG_C]))
