"""The automation routes of the HTTP API against the real engine on a task.Clock, in memory."""

from __future__ import annotations

from twisted.trial import unittest

from tests.web_helpers import PLUG_A, PLUG_B, PLUG_C, Harness, runtime


class CountdownTests(unittest.TestCase):
    """POST /api/plugs/{plug}/relay with "for", and the timer routes."""

    def test_onForSwitchesNowAndBackLater(self) -> None:
        """{"on": true, "for": "45s"} switches on once the plug confirms, then off 45 seconds later."""
        h = Harness(automation=True)
        ex = h.send("POST", f"/api/plugs/{PLUG_A}/relay", body={"on": True, "for": "45s"})
        self.assertIsNone(ex.response())
        runtime(h.sessionA, relay=True)
        doc = ex.response().json()
        self.assertEqual(doc["plug"]["relay"], "on")
        self.assertEqual((doc["timer"]["switch"], doc["timer"]["left_s"]), ("off", 45.0))
        timer = h.request("GET", "/api/plugs/aaaa1/timer").json()["timer"]
        self.assertEqual(timer["switch"], "off")
        detail = h.request("GET", f"/api/plugs/{PLUG_A}").json()
        self.assertEqual(detail["automation"]["next"]["cause"], "timer")
        h.clock.advance(45)
        self.assertEqual(h.engine.hub.causes, ["command", "timer"])

    def test_cancel(self) -> None:
        """DELETE /timer cancels; a second cancel says there was none."""
        h = Harness(automation=True)
        set_ = h.request("PUT", f"/api/plugs/{PLUG_B}/timer", body={"switch": "off", "for": 90})
        self.assertEqual(set_.json()["timer"]["left_s"], 90.0)
        self.assertEqual(h.request("DELETE", f"/api/plugs/{PLUG_B}/timer").json(), {"cancelled": True})
        self.assertEqual(h.request("DELETE", f"/api/plugs/{PLUG_B}/timer").json(), {"cancelled": False})
        self.assertIsNone(h.request("GET", f"/api/plugs/{PLUG_B}/timer").json()["timer"])

    def test_plainRelay(self) -> None:
        """Without "for" the relay route is a plain switch and sets no timer."""
        h = Harness(automation=True)
        ex = h.send("POST", "/api/plugs/kettle/relay", body={"on": False})
        runtime(h.sessionB, relay=False)
        self.assertEqual(ex.response().json()["timer"], None)
        self.assertIsNone(h.engine.timer(PLUG_B))

    def test_badInputNamesTheField(self) -> None:
        """A bad duration is a 400 naming --for, before anything is switched; a bad "on" names on."""
        h = Harness(automation=True)
        r = h.request("POST", f"/api/plugs/{PLUG_A}/relay", body={"on": True, "for": "soon"})
        self.assertEqual((r.status, r.json()["error"], r.json()["field"]), (400, "invalid", "--for"))
        self.assertIsNone(h.engine.timer(PLUG_A))
        self.assertEqual(h.engine.hub.causes, [])
        r = h.request("POST", f"/api/plugs/{PLUG_A}/relay", body={"on": "yes"})
        self.assertEqual((r.status, r.json()["field"]), (400, "on"))
        r = h.request("POST", f"/api/plugs/{PLUG_A}/relay", body={"on": True, "fro": 3})
        self.assertEqual((r.status, r.json()["field"]), (400, "fro"))

    def test_offlinePlug(self) -> None:
        """A countdown on an offline plug fails as the switch does (503) and sets no timer."""
        h = Harness(automation=True)
        r = h.request("POST", f"/api/plugs/{PLUG_C}/relay", body={"on": True, "for": "1m"})
        self.assertEqual(r.status, 503)
        self.assertIsNone(h.engine.timer(PLUG_C))

    def test_withoutEngine(self) -> None:
        """A daemon without automation answers 503 on its routes and null in the plug's JSON."""
        h = Harness()
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}/timer").status, 503)
        self.assertIsNone(h.request("GET", f"/api/plugs/{PLUG_A}").json()["automation"])

    def test_needsCsrfWithCookie(self) -> None:
        """A cookie session must send the CSRF token to set a countdown, as for every change."""
        h = Harness(automation=True)
        login = h.request("POST", "/api/session", token=None, body={"token": h.app.auth.token})
        cookie = login.header("set-cookie").split(";")[0]
        r = h.request("POST", f"/api/plugs/{PLUG_A}/relay", token=None, headers={"Cookie": cookie},
                      body={"on": True, "for": "1m"})
        self.assertEqual(r.status, 403)
        self.assertEqual(h.engine.hub.causes, [])


class ScheduleRuleAwayTests(unittest.TestCase):
    """Schedules, rules and away mode through the API."""

    def test_schedules(self) -> None:
        """Add, list, disable, enable and remove a schedule; an unknown id is a 404 naming id."""
        h = Harness(automation=True)
        added = h.request("POST", f"/api/plugs/{PLUG_A}/schedules", body={"switch": "on", "at": "18:30", "days": "weekdays"})
        self.assertEqual(added.status, 200)
        item = added.json()
        self.assertEqual((item["at"], item["days"]), ("18:30:00", ["mon", "tue", "wed", "thu", "fri"]))
        listed = h.request("GET", f"/api/plugs/{PLUG_A}/schedules").json()["schedules"]
        self.assertEqual([s["id"] for s in listed], [item["id"]])
        self.assertEqual(len(h.request("GET", "/api/schedules").json()["schedules"]), 1)
        self.assertFalse(h.request("POST", f"/api/schedules/{item['id']}/disable").json()["enabled"])
        self.assertTrue(h.request("POST", f"/api/schedules/{item['id']}/enable").json()["enabled"])
        self.assertEqual(h.request("DELETE", f"/api/schedules/{item['id']}").json()["id"], item["id"])
        gone = h.request("DELETE", f"/api/schedules/{item['id']}")
        self.assertEqual((gone.status, gone.json()["field"]), (404, "id"))

    def test_scheduleErrors(self) -> None:
        """A bad time names --at, bad days --days, a missing switch names switch."""
        h = Harness(automation=True)
        for body, field in [({"switch": "on", "at": "25:00"}, "--at"), ({"switch": "on", "at": "07:00", "days": "someday"}, "--days"),
                            ({"at": "07:00"}, "switch"), ({"switch": "on", "at": 7}, "--at"),
                            ({"switch": "on", "at": "sunset"}, "--at")]:
            r = h.request("POST", f"/api/plugs/{PLUG_A}/schedules", body=body)
            self.assertEqual((r.status, r.json().get("field")), (400, field), body)

    def test_rules(self) -> None:
        """Add an above rule and a done rule, disable one, remove one; two kinds at once is a 400."""
        h = Harness(automation=True)
        rule = h.request("POST", "/api/plugs/kettle/rules", body={"above": 2000, "for": "1m", "then": "off"}).json()
        self.assertEqual((rule["when"], rule["watts"], rule["for_s"], rule["then"]), ("above", 2000.0, 60, "off"))
        done = h.request("POST", "/api/plugs/kettle/rules", body={"done_below": "5", "for": "3m"}).json()
        self.assertEqual((done["when"], done["then"]), ("done_below", "notify"))
        self.assertFalse(h.request("POST", f"/api/rules/{rule['id']}/disable").json()["enabled"])
        self.assertEqual(len(h.request("GET", f"/api/plugs/{PLUG_B}/rules").json()["rules"]), 2)
        h.request("DELETE", f"/api/rules/{done['id']}")
        self.assertEqual([r["id"] for r in h.request("GET", "/api/rules").json()["rules"]], [rule["id"]])
        both = h.request("POST", "/api/plugs/kettle/rules", body={"above": 20, "below": 5, "for": "1m"})
        self.assertEqual(both.status, 400)
        watts = h.request("POST", "/api/plugs/kettle/rules", body={"above": 99999, "for": "1m"})
        self.assertEqual((watts.status, watts.json()["field"]), (400, "--above"))

    def test_away(self) -> None:
        """Away mode on, shown in the plug's automation, then off."""
        h = Harness(automation=True)
        away = h.request("PUT", f"/api/plugs/{PLUG_A}/away", body={"from": "18:00", "to": "23:30"}).json()["away"]
        self.assertEqual((away["from"], away["to"]), ("18:00:00", "23:30:00"))
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}/automation").json()["away"]["from"], "18:00:00")
        self.assertEqual(h.request("DELETE", f"/api/plugs/{PLUG_A}/away").json(), {"stopped": True})
        self.assertIsNone(h.request("GET", f"/api/plugs/{PLUG_A}/away").json()["away"])
        bad = h.request("PUT", f"/api/plugs/{PLUG_A}/away", body={"from": "18:00", "to": "late"})
        self.assertEqual((bad.status, bad.json()["field"]), (400, "--to"))

    def test_forgetDropsAutomation(self) -> None:
        """DELETE /api/plugs/{plug} forgets the plug, and its automation with it."""
        h = Harness(automation=True)
        h.request("POST", f"/api/plugs/{PLUG_A}/schedules", body={"switch": "on", "at": "18:30"})
        self.assertEqual(h.request("DELETE", f"/api/plugs/{PLUG_A}").json(), {"forgotten": PLUG_A})
        self.assertEqual(h.engine.schedulesOf(), [])
        self.assertEqual(h.request("GET", f"/api/plugs/{PLUG_A}").status, 404)

    def test_powerOnPolicy(self) -> None:
        """PUT /power-on sets the policy; anything else names policy."""
        h = Harness()
        self.assertEqual(h.request("PUT", f"/api/plugs/{PLUG_A}/power-on", body={"policy": "last"}).json()["power_on"], "last")
        r = h.request("PUT", f"/api/plugs/{PLUG_A}/power-on", body={"policy": "sometimes"})
        self.assertEqual((r.status, r.json()["field"]), (400, "policy"))
