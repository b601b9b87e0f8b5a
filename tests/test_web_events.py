"""In-memory tests of the server-sent event stream: framing, heartbeats and bounds."""

from __future__ import annotations

import json

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.web_helpers import PLUG_A, PLUG_B, TOKEN, Harness, runtime
from vesyncd.core.events import eventJSON
from vesyncd.plugs import codec as m
from vesyncd.web.events import HEARTBEAT, MAX_BUFFERED, frame


def frames(body: bytes) -> list[dict]:
    """The events in a stream body, as {"event", "id", "data"} dicts (comments skipped)."""
    out = []
    for block in body.decode().split("\n\n"):
        fields: dict = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            out.append(fields)
    return out


class FramingTests(unittest.TestCase):
    """What the stream looks like on the wire."""

    def test_frameIsOneDataLine(self) -> None:
        """Data is one JSON line, so newlines in values cannot inject fields."""
        raw = frame("alias", {"alias": "a\nevent: evil\ndata: x"}, 7)
        self.assertEqual(raw.count(b"\n"), 4)
        self.assertTrue(raw.startswith(b"id: 7\nevent: alias\ndata: {"))
        self.assertTrue(raw.endswith(b"\n\n"))

    def test_stream(self) -> None:
        """The stream has the SSE content type and carries hub events with the plug's state."""
        h = Harness()
        ex = h.send("GET", "/api/events")
        r = ex.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/event-stream; charset=utf-8")
        self.assertIn(b"retry: 3000", r.body)
        h.sessionA.received(m.State(relay=True))
        runtime(h.sessionB, True, watts=33.0)
        events = frames(ex.response().body)
        self.assertEqual([e["event"] for e in events], ["relay", "runtime"])
        relay = events[0]["data"]
        self.assertEqual((relay["event"], relay["plug"]), ("relay", PLUG_A))
        self.assertEqual(relay["data"], {"relay": True, "cause": "button", "previous": False})
        self.assertEqual(relay["state"]["relay"], "on")
        self.assertEqual(events[1]["data"]["data"]["power_w"], 33.0)
        self.assertEqual([e["id"] for e in events], ["1", "2"])

    def test_oneEventShape(self) -> None:
        """Each frame carries core.events.eventJSON of its event (the control port's shape), plus the plug's state."""
        h = Harness()
        seen: list = []
        h.hub.subscribe(seen.append)
        ex = h.send("GET", "/api/events")
        h.hub.rename(PLUG_B, "Kettle two")
        [event] = frames(ex.response().body)
        doc = event["data"]
        self.assertEqual(doc.pop("state")["alias"], "Kettle two")
        self.assertEqual(doc, json.loads(json.dumps(eventJSON(seen[-1], h.hub.get(PLUG_B)))))
        self.assertEqual(set(doc), {"event", "plug", "name", "alias", "at", "ts", "data"})

    def test_forgotten(self) -> None:
        """A forgotten plug's event has no state."""
        h = Harness()
        ex = h.send("GET", "/api/events")
        h.hub.forget(PLUG_B)
        [event] = frames(ex.response().body)
        self.assertEqual(event["event"], "forgotten")
        self.assertNotIn("state", event["data"])

    def test_heartbeat(self) -> None:
        """A comment goes out every 15 s; the site's idle timeout does not cut the stream."""
        h = Harness()
        ex = h.send("GET", "/api/events")
        h.clock.pump([HEARTBEAT] * 5)
        self.assertEqual(ex.response().body.count(b": ping\n\n"), 5)
        self.assertFalse(ex.transport.disconnecting)

    def test_needsAuth(self) -> None:
        """The stream needs credentials like every API route."""
        self.assertEqual(Harness().request("GET", "/api/events", token=None).status, 401)

    def test_cookieStream(self) -> None:
        """A browser session may open the stream with its cookie (EventSource sends no headers)."""
        h = Harness()
        login = h.request("POST", "/api/session", token=None, body={"token": TOKEN})
        cookie = login.header("set-cookie").split(";")[0]
        ex = h.send("GET", "/api/events", token=None, headers={"Cookie": cookie})
        self.assertEqual(ex.response().status, 200)

    def test_boundedStreams(self) -> None:
        """Beyond the limit, a new stream is refused 503; a closed one frees its slot."""
        h = Harness(maxStreams=2)
        first = h.send("GET", "/api/events")
        h.send("GET", "/api/events")
        r = h.request("GET", "/api/events")
        self.assertEqual((r.status, r.json()["error"]), (503, "busy"))
        first.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(h.app.streams.streams), 1)
        self.assertEqual(h.send("GET", "/api/events").response().status, 200)

    def test_unsubscribesOnClose(self) -> None:
        """A closed stream stops following the hub."""
        h = Harness()
        before = h.hub.subscribers()
        ex = h.send("GET", "/api/events")
        self.assertEqual(h.hub.subscribers(), before + 1)
        ex.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(h.hub.subscribers(), before)

    def test_slowClientBuffered(self) -> None:
        """While the socket is full events wait, and are sent in order once it drains."""
        h = Harness()
        ex = h.send("GET", "/api/events")
        ex.channel.pauseProducing()
        h.sessionA.received(m.State(relay=True))
        h.sessionA.received(m.State(relay=False))
        self.assertEqual(frames(ex.response().body), [])
        ex.channel.resumeProducing()
        self.assertEqual([e["data"]["data"]["relay"] for e in frames(ex.response().body)], [True, False])

    def test_slowClientDropped(self) -> None:
        """A client that falls more than the buffer behind is disconnected."""
        h = Harness()
        ex = h.send("GET", "/api/events")
        ex.channel.pauseProducing()
        for i in range(MAX_BUFFERED + 1):
            h.sessionA.received(m.State(relay=not bool(i % 2)))
        self.assertTrue(ex.transport.disconnecting)
        self.assertEqual(len(h.app.streams.streams), 0)

    def test_stop(self) -> None:
        """Stopping the app ends every stream cleanly."""
        h = Harness()
        ex = h.send("GET", "/api/events")
        h.app.stop()
        self.assertTrue(ex.response().complete)
        self.assertEqual(len(h.app.streams.streams), 0)
