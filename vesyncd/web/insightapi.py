"""
HTTP routes of energy insight (docs/energy.md): history with cost, the cost table, hourly CSV,
the live power chart and the house's totals; and the extra parts of a plug's detail JSON.

Every figure comes from L{vesyncd.insight.service.EnergyInsight}, the same object the control port
and MQTT read.  Without it (tests, or a daemon without it) the history is served without cost, the
chart from the web front end's own hour of readings, and the totals from the hub.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import server

from vesyncd.core.hub import Hub
from vesyncd.core.periods import hostZone
from vesyncd.web.auth import Session
from vesyncd.web.events import PowerHistory
from vesyncd.web.routing import PLUG, ApiError, Route, queryArgs, route, whole

DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
SWITCHES_LIMIT = 20


#: Insight's names of fields -> the query parameters that carry them here.
FIELDS = {"start": "from", "end": "to"}


def _invalid(field: str) -> Any:
    """An errback turning a ValueError into a 400 naming the query parameter (insight's own field if it
    names one; its C{period} and C{value} are the query's C{field})."""
    fields = {**FIELDS, "period": field, "value": field}

    def errback(f: Failure) -> Any:
        f.trap(ValueError)
        named = getattr(f.value, "field", None)
        if isinstance(named, str):
            name = fields.get(named, named)
            raise ApiError(400, "invalid", f"{name}: {getattr(f.value, 'message', f.value)}", field=name)
        raise ApiError(400, "invalid", f"{field}: {f.value}", field=field)
    return errback


class InsightRoutes:
    """The energy part of the HTTP API, over one hub and one L{EnergyInsight} (or None)."""

    def __init__(self, hub: Hub, clock: IReactorTime, insight: Any, power: PowerHistory) -> None:
        self.hub = hub
        self.clock = clock
        self.insight = insight
        self.power = power

    def routes(self) -> list[Route]:
        """The routes this module serves."""
        return [
            route("GET", PLUG + r"/energy", self.energy),
            route("GET", PLUG + r"/export\.csv", self.export),
            route("GET", PLUG + r"/chart", self.chart),
            route("GET", PLUG + r"/switches", self.switches),
            route("GET", r"/api/cost", self.cost),
            route("GET", r"/api/totals", self.totals),
        ]

    def extras(self, plugId: str) -> Any:
        """Deferred of the detail keys beside a plug's JSON: C{periods} and C{baseline} (null without insight)."""
        if self.insight is None:
            return succeed({"periods": None, "baseline": None})
        baseline = self.insight.baseline(plugId)
        return maybeDeferred(self.insight.periods, plugId).addCallback(
            lambda periods: {"periods": periods, "baseline": baseline})

    def energy(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Energy per hour of a day, per day of a month or per month of a year (default: today); cost=1 prices it."""
        plug = self.hub.resolve(ref)
        given = queryArgs(request, {"day", "month", "year", "cost"})
        periods = [p for p in ("day", "month", "year") if p in given]
        if len(periods) > 1:
            raise ApiError(400, "invalid", "give one of day=YYYY-MM-DD, month=YYYY-MM or year=YYYY", field=periods[1])
        cost = given.get("cost", "0")
        if cost not in ("0", "1", "true", "false"):
            raise ApiError(400, "invalid", "cost: 1 or 0", field="cost")
        if periods:
            period = periods[0]
            value = given[period][:16]
        else:
            period = "day"
            value = datetime.fromtimestamp(self.clock.seconds(), tz=hostZone()).date().isoformat()
        if cost in ("1", "true"):
            if self.insight is None:
                raise ApiError(503, "unavailable", "cost: energy insight is not running in this daemon", field="cost")
            d = maybeDeferred(self.insight.history, plug.id, period, value, cost=True)
        else:
            d = maybeDeferred(self.hub.ledger.history, plug.id, period, value)
        return d.addErrback(_invalid(period))

    def export(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """Hourly watt-hours (and cost) from local date C{from} to C{to}, both included, as CSV with the time
        zone in the header (default: this month to today)."""
        plug = self.hub.resolve(ref)
        args = queryArgs(request, {"from", "to"})
        for key in ("from", "to"):
            if args.get(key) and not DATE.fullmatch(args[key]):
                raise ApiError(400, "invalid", f"{key}: a date YYYY-MM-DD", field=key)
        if self.insight is None:
            raise ApiError(503, "unavailable", "energy insight is not running in this daemon")
        today = datetime.fromtimestamp(self.clock.seconds(), tz=getattr(self.insight, "zone", None) or hostZone()).date()
        start = args.get("from") or today.replace(day=1).isoformat()
        end = args.get("to") or today.isoformat()
        d = maybeDeferred(self.insight.hourlyCSV, plug.id, start, end)

        def send(text: str) -> bytes:
            request.setHeader("content-type", "text/csv; charset=utf-8")
            name = f"vesyncd-{re.sub(r'[^A-Za-z0-9-]', '', plug.id)[:40]}.csv"
            request.setHeader("content-disposition", f'attachment; filename="{name}"')
            return text.encode("utf-8")

        return d.addErrback(_invalid("from")).addCallback(send)

    def chart(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The live chart's data: last hour as read, last 24 h as 5-minute means."""
        plug = self.hub.resolve(ref)
        if self.insight is not None:
            doc = self.insight.chart(plug.id)
        else:
            points = self.power.series(plug.id, self.clock.seconds())
            doc = {"hour": [[t, w] for t, w in points], "day": []}
        return {"plug": plug.id, **doc}

    def switches(self, request: server.Request, session: Session | None, ref: str) -> Any:
        """The plug's latest relay changes with their causes, newest first."""
        plug = self.hub.resolve(ref)
        limit = whole(queryArgs(request, {"limit"}), "limit", SWITCHES_LIMIT, 1, 200)
        if self.insight is None:
            return {"plug": plug.id, "switches": []}
        return maybeDeferred(self.insight.switches, plug.id, limit).addCallback(
            lambda rows: {"plug": plug.id, "switches": rows})

    def cost(self, request: server.Request, session: Session | None) -> Any:
        """Every plug's energy and cost of a month (default: this one), largest first, with a total."""
        month = queryArgs(request, {"month"}).get("month") or None
        if month is not None and not MONTH.fullmatch(month):
            raise ApiError(400, "invalid", "month: YYYY-MM", field="month")
        if self.insight is None:
            raise ApiError(503, "unavailable", "energy insight is not running in this daemon")
        return maybeDeferred(self.insight.costTable, month).addErrback(_invalid("month"))

    def totals(self, request: server.Request, session: Session | None) -> Any:
        """The house now: power, today's watt-hours and cost, plugs online."""
        if self.insight is not None:
            return maybeDeferred(self.insight.totals)
        plugs = self.hub.plugs()
        return {"power_w": round(sum(p.power_w or 0.0 for p in plugs if p.online), 1),
                "today_wh": round(sum(self.hub.energy(p.id).today_wh for p in plugs), 6),
                "today_cost": None, "currency": None, "plugs_online": sum(1 for p in plugs if p.online)}
