"""
HTTP routes of the automation engine (docs/automation.md): countdowns, schedules, rules and away mode.

Handlers resolve the plug with the hub and pass the user's values unchanged to the engine, which
parses them; its L{AutomationError} becomes a 400 naming the field, L{AutomationRefused} a 409 (or
404 for an unknown id).  Without an engine (tests, or a daemon without it) the routes answer 503.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import server

from vesyncd.automation.parse import AutomationError, AutomationRefused
from vesyncd.core.hub import Hub
from vesyncd.web.auth import Session, peerOf
from vesyncd.web.routing import PLUG, ApiError, Route, readBody, route

log = Logger()

SCHEDULE = r"/api/schedules/(?P<item>s[0-9a-f]{1,16})"
RULE = r"/api/rules/(?P<item>r[0-9a-f]{1,16})"
RULE_KINDS = {"above": "above", "below": "below", "done_below": "doneBelow"}


def automationError(error: BaseException) -> ApiError | None:
    """The HTTP answer for an automation engine's error, or None for any other exception."""
    if isinstance(error, AutomationRefused):
        if error.field == "id":
            return ApiError(404, "unknown", str(error), field="id")
        return ApiError(409, "refused", str(error), field=error.field)
    if isinstance(error, AutomationError):
        return ApiError(400, "invalid", str(error), field=error.field)
    return None


def _known(body: dict[str, Any], allowed: set[str]) -> None:
    """Refuse keys the route does not know (a typo must not pass silently)."""
    for key in body:
        if key not in allowed:
            raise ApiError(400, "invalid", f"{key[:40]}: unknown key; known: {', '.join(sorted(allowed))}",
                           field=key[:40])


class AutomationRoutes:
    """The automation part of the HTTP API, over one hub and one engine (or None)."""

    def __init__(self, hub: Hub, engine: Any) -> None:
        self.hub = hub
        self.engine = engine

    def routes(self) -> list[Route]:
        """The routes this module serves."""
        return [
            route("POST", PLUG + r"/relay", self.relay),
            route("GET", PLUG + r"/automation", self.describe),
            route("GET", PLUG + r"/timer", self.getTimer),
            route("PUT", PLUG + r"/timer", self.setTimer),
            route("DELETE", PLUG + r"/timer", self.cancelTimer),
            route("GET", PLUG + r"/schedules", self.plugSchedules),
            route("POST", PLUG + r"/schedules", self.addSchedule),
            route("GET", PLUG + r"/rules", self.plugRules),
            route("POST", PLUG + r"/rules", self.addRule),
            route("GET", PLUG + r"/away", self.getAway),
            route("PUT", PLUG + r"/away", self.setAway),
            route("DELETE", PLUG + r"/away", self.awayOff),
            route("GET", r"/api/schedules", self.allSchedules),
            route("DELETE", SCHEDULE, self.removeSchedule),
            route("POST", SCHEDULE + r"/(?P<verb>enable|disable)", self.toggleSchedule),
            route("GET", r"/api/rules", self.allRules),
            route("DELETE", RULE, self.removeRule),
            route("POST", RULE + r"/(?P<verb>enable|disable)", self.toggleRule),
        ]

    def _engine(self) -> Any:
        if self.engine is None:
            raise ApiError(503, "unavailable", "automation is not running in this daemon")
        return self.engine

    def describe(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """A plug's timer, schedules, rules, away mode and next action."""
        return self._engine().describe(self.hub.resolve(ref).id)

    def relay(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Switch on, off or over ({"on": true|false|null}); with {"for": D} switch back after D."""
        body = readBody(request)
        _known(body, {"on", "for"})
        on = body.get("on")
        if "on" not in body or not (on is None or isinstance(on, bool)):
            raise ApiError(400, "invalid", 'on: true, false or null (toggle)', field="on")
        plug = self.hub.resolve(ref)
        log.info("http: relay {plug} on={on} for={duration} requested by {peer}", plug=plug.id, on=on,
                 duration=str(body.get("for"))[:20], peer=peerOf(request))
        if body.get("for") is None:
            return self.hub.switch(plug.id, on).addCallback(lambda state: {"plug": state.toJSON(self.hub.energy(state.id)),
                                                                          "timer": None})
        engine = self._engine()
        target = (plug.relay is not True) if on is None else on
        d = engine.switchFor(plug.id, target, body["for"])
        return d.addCallback(lambda timer: {"plug": self.hub.get(plug.id).toJSON(self.hub.energy(plug.id)),
                                            "timer": timer})

    def getTimer(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The plug's countdown ({"timer": null} when none)."""
        return {"timer": self._engine().timer(self.hub.resolve(ref).id)}

    def setTimer(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Set a countdown without switching now: {"switch": "off", "for": "30m"}."""
        body = readBody(request)
        _known(body, {"switch", "for"})
        if "switch" not in body or "for" not in body:
            raise ApiError(400, "invalid", 'send {"switch": "on"|"off", "for": "30m"}',
                           field="switch" if "switch" not in body else "--for")
        return {"timer": self._engine().setTimer(self.hub.resolve(ref).id, body["switch"], body["for"])}

    def cancelTimer(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Cancel the plug's countdown; {"cancelled": false} when there was none."""
        return {"cancelled": self._engine().cancelTimer(self.hub.resolve(ref).id)}

    def plugSchedules(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The plug's schedules, soonest first."""
        return {"schedules": self._engine().schedulesOf(self.hub.resolve(ref).id)}

    def allSchedules(self, request: server.Request, session: Session | None) -> Any:
        """Every schedule."""
        return {"schedules": self._engine().schedulesOf()}

    def addSchedule(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Add a schedule: {"switch": "on", "at": "18:30", "days": "weekdays"} or {..., "once": "2026-12-24"}."""
        body = readBody(request)
        _known(body, {"switch", "at", "days", "once"})
        for key in ("switch", "at"):
            if key not in body:
                raise ApiError(400, "invalid", f"{key}: required", field="--at" if key == "at" else key)
        at = body["at"]
        if not isinstance(at, str):
            raise ApiError(400, "invalid", "--at: a time such as 18:30 or sunset-30m", field="--at")
        once = body.get("once")
        if once is not None and not isinstance(once, str):
            raise ApiError(400, "invalid", "--once: a date YYYY-MM-DD", field="--once")
        plug = self.hub.resolve(ref)
        return self._engine().addSchedule(plug.id, body["switch"], at, days=body.get("days") or None, once=once or None)

    def removeSchedule(self, request: server.Request, session: Session | None, item: str) -> Any:
        """Remove a schedule; answers with it."""
        return self._engine().removeSchedule(item)

    def toggleSchedule(self, request: server.Request, session: Session | None, item: str, verb: str) -> Any:
        """Enable or disable a schedule; answers with it."""
        engine = self._engine()
        return engine.enableSchedule(item) if verb == "enable" else engine.disableSchedule(item)

    def plugRules(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The plug's power rules."""
        return {"rules": self._engine().rulesOf(self.hub.resolve(ref).id)}

    def allRules(self, request: server.Request, session: Session | None) -> Any:
        """Every power rule."""
        return {"rules": self._engine().rulesOf()}

    def addRule(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Add a rule: exactly one of above, below, done_below (watts), with "for" and "then"."""
        body = readBody(request)
        _known(body, {"above", "below", "done_below", "for", "then"})
        kinds = {RULE_KINDS[k]: body[k] for k in RULE_KINDS if body.get(k) is not None}
        if len(kinds) != 1:
            raise ApiError(400, "invalid", "give exactly one of above, below, done_below (watts)", field="--above")
        if body.get("for") is None:
            raise ApiError(400, "invalid", "--for: required (e.g. 3m)", field="--for")
        plug = self.hub.resolve(ref)
        return self._engine().addRule(plug.id, duration=body["for"], then=body.get("then"), **kinds)

    def removeRule(self, request: server.Request, session: Session | None, item: str) -> Any:
        """Remove a power rule; answers with it."""
        return self._engine().removeRule(item)

    def toggleRule(self, request: server.Request, session: Session | None, item: str, verb: str) -> Any:
        """Enable or disable a power rule; answers with it."""
        engine = self._engine()
        return engine.enableRule(item) if verb == "enable" else engine.disableRule(item)

    def getAway(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The plug's away mode ({"away": null} when off)."""
        return {"away": self._engine().awayStatus(self.hub.resolve(ref).id)}

    def setAway(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Turn away mode on: {"from": "18:00", "to": "23:30"}."""
        body = readBody(request)
        _known(body, {"from", "to"})
        for key in ("from", "to"):
            if not isinstance(body.get(key), str):
                raise ApiError(400, "invalid", f"--{key}: a time HH:MM", field=f"--{key}")
        return {"away": self._engine().away(self.hub.resolve(ref).id, body["from"], body["to"])}

    def awayOff(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Turn away mode off; {"stopped": false} when it was not on."""
        return {"stopped": self._engine().awayOff(self.hub.resolve(ref).id)}
