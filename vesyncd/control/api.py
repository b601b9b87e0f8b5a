"""
The request logic of the control plane, shared by the AMP port and the Perspective Broker root.

Both front ends call L{ControlCore} and nothing else: it resolves plugs through the hub, maps the
hub's L{CommandError}s to the control errors of L{vesyncd.control.commands}, checks arguments,
and serialises plugs with L{PlugState.toJSON} and events with L{vesyncd.core.events.eventJSON}.  Every method
returns a Deferred, so a front end handles results and errors in one way.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from vesyncd import __version__
from vesyncd.control import commands as c
from vesyncd.control.automation_api import AutomationRequests
from vesyncd.control.cluster_api import clusterJSON
from vesyncd.control.insight_api import InsightRequests
from vesyncd.control.validate import text as _text
from vesyncd.core import model as h
from vesyncd.core.events import eventJSON
from vesyncd.core.hub import Hub
from vesyncd.core.model import Event, PlugState, isoTime
from vesyncd.service import DaemonInfo, describeAddress

log = Logger()

#: Watchers (AMP connections or PB clients) following events at once, daemon-wide.
MAX_WATCHERS = 64

_ERROR_MAP: list[tuple[type[Exception], type[c.ControlError]]] = [
    (h.AmbiguousPlug, c.AmbiguousPlug),  # before UnknownPlug, its base class
    (h.UnknownPlug, c.UnknownPlug),
    (h.PlugOffline, c.PlugOffline),
    (h.CommandTimeout, c.CommandTimeout),
    (h.QueueFull, c.Busy),
    (h.InvalidArgument, c.InvalidArgument),
    (ValueError, c.InvalidArgument),
    (h.CommandError, c.CommandFailed),
]


class IControlAvatar(Interface):
    """What a successful control login gives a front end: a L{ControlCore}."""


#: Errors of the automation engine and energy insight carry a C{code}; matched by it, not by class, so the
#: control plane imports nothing but the core (docs/architecture.md).
_CODED_ERRORS: dict[str, type[c.ControlError]] = {"usage": c.UsageError, "refused": c.Refused}


def mapError(error: BaseException) -> BaseException:
    """The control error for a hub, automation or insight error (other exceptions are returned unchanged)."""
    if isinstance(error, c.ControlError):
        return error
    coded = _CODED_ERRORS.get(getattr(error, "code", None)) if isinstance(error, ValueError) else None
    if coded is None and isinstance(error, ValueError) and isinstance(getattr(error, "field", None), str):
        coded = c.UsageError  # an input error naming what to fix (energy insight's InsightError)
    if coded is not None:
        return coded(str(error))
    for hubError, controlError in _ERROR_MAP:
        if isinstance(error, hubError):
            return controlError(str(error))
    return error


class Watchers:
    """A bounded set of event followers, fed from one hub subscription while any exists."""

    def __init__(self, hub: Hub, maximum: int = MAX_WATCHERS) -> None:
        self.hub = hub
        self.maximum = maximum
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._unsubscribe: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Start calling C{callback(eventJSON)}; returns a function that stops it.

        @raise c.Busy: L{maximum} watchers already follow events.
        """
        if callback in self._callbacks:
            return lambda: self._remove(callback)
        if len(self._callbacks) >= self.maximum:
            raise c.Busy(f"{self.maximum} clients already watch events; try again later")
        self._callbacks.append(callback)
        if self._unsubscribe is None:
            self._unsubscribe = self.hub.subscribe(self._event)
        return lambda: self._remove(callback)

    def _remove(self, callback: Callable[[dict[str, Any]], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)
        if not self._callbacks and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _event(self, event: Event) -> None:
        """Serialise an event once and hand it to every watcher (one failing does not stop others)."""
        try:
            plug = self.hub.get(event.plug) if event.kind != h.FORGOTTEN else None
        except h.UnknownPlug:
            plug = None
        doc = eventJSON(event, plug)
        for callback in list(self._callbacks):
            try:
                callback(doc)
            except Exception:
                log.failure("event watcher {callback!r} failed", callback=callback)
                self._remove(callback)


class ControlCore(AutomationRequests, InsightRequests):
    """Every control request, on top of the hub; C{info} is what the daemon tells about itself, and
    C{automation} (an C{AutomationEngine}), C{insight} (an C{EnergyInsight}) and C{cluster} (the cluster's
    view of its nodes, in a cluster only) are optional parts."""

    def __init__(self, hub: Hub, info: DaemonInfo | None = None, *, automation: Any = None, insight: Any = None,
                 cluster: Any = None, maxWatchers: int = MAX_WATCHERS) -> None:
        self.hub = hub
        self.cluster = cluster
        self.automation = automation
        self.insight = insight
        self.daemonInfo = info if info is not None else DaemonInfo()
        self.watchers = Watchers(hub, maxWatchers)
        #: Counters of the control plane itself, shown by L{info}.
        self.stats: dict[str, int] = {"logins": 0, "bad_tokens": 0, "connections": 0, "requests": 0}

    def _call(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        """Run one request, counting it and turning hub errors into control errors."""
        self.stats["requests"] += 1

        def mapped(failure: Failure) -> Failure:
            # A new Failure, not the old one retyped: a Failure caches its classes' names once anything has
            # checked it (routed commands' failures are), and AMP's trap reads that cache: a stale one
            # makes a known error "unknown", which closes the client's connection.
            error = mapError(failure.value)
            return failure if error is failure.value else Failure(error)

        return maybeDeferred(fn, *args).addErrback(mapped)

    def plugJSON(self, plug: PlugState) -> dict[str, Any]:
        """The documented JSON form of a plug, with its energy figures."""
        return plug.toJSON(self.hub.energy(plug.id))

    # -- requests ----------------------------------------------------------------------------

    def listPlugs(self, offset: int = 0, limit: int = c.MAX_PAGE) -> Deferred:
        """One page of plugs: C{{"plugs": [...], "total": N, "offset": offset}}."""

        def page() -> dict[str, Any]:
            if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or limit < 1:
                raise c.InvalidArgument("offset must be 0 or more and limit 1 or more")
            # Only the page's plugs are copied: a listing of N plugs costs N copies, not N per page.
            plugs, total = self.hub.plugPage(offset, min(limit, c.MAX_PAGE))
            return {"plugs": [self.plugJSON(p) for p in plugs], "total": total, "offset": offset}

        return self._call(page)

    def getPlug(self, ref: str) -> Deferred:
        """One plug's JSON."""
        return self._call(lambda: self.plugJSON(self.hub.get(_text(ref, "plug"))))

    def switch(self, ref: str, state: str) -> Deferred:
        """Switch a plug C{on}, C{off} or C{toggle}; fires with its confirmed JSON state."""

        def go() -> Deferred:
            targets = {"on": True, "off": False, "toggle": None}
            if state not in targets:
                raise c.InvalidArgument("state must be on, off or toggle")
            return self.hub.switch(_text(ref, "plug"), targets[state]).addCallback(self.plugJSON)

        return self._call(go)

    def refresh(self, ref: str) -> Deferred:
        """Fresh readings of a plug; fires with its JSON state."""
        return self._call(lambda: self.hub.refresh(_text(ref, "plug")).addCallback(self.plugJSON))

    def rename(self, ref: str, alias: str) -> Deferred:
        """Set (or with an empty alias clear) a plug's alias."""
        return self._call(lambda: self.plugJSON(self.hub.rename(_text(ref, "plug"), _text(alias, "alias"))))

    def setPowerOn(self, ref: str, policy: str) -> Deferred:
        """Set a plug's power-on policy: on, off, last or none."""

        def go() -> dict[str, Any]:
            if policy not in ("on", "off", "last", "none"):
                raise c.InvalidArgument("power-on policy is one of on, off, last, none")
            return self.plugJSON(self.hub.setPowerOn(_text(ref, "plug"), None if policy == "none" else policy))

        return self._call(go)

    def forget(self, ref: str) -> Deferred:
        """Forget a plug; fires with its last JSON state (without energy: that is gone too)."""
        return self._call(lambda: self.hub.forget(_text(ref, "plug")).toJSON())

    def energy(self, ref: str, period: str, value: str, cost: bool = False) -> Deferred:
        """A plug's energy history of one period (see L{IEnergyLedger.history}); with C{cost}, priced by
        the daemon's tariff (L{InsightRequests.pricedHistory})."""

        def go() -> Deferred:
            if period not in ("day", "month", "year"):
                raise c.InvalidArgument("period must be day, month or year")
            plug = self.hub.resolve(_text(ref, "plug"))
            if cost:
                return self.pricedHistory(plug.id, period, _text(value, "value", 16))
            return self.hub.ledger.history(plug.id, period, _text(value, "value", 16))

        return self._call(go)

    def pending(self) -> Deferred:
        """Plugs held until approved, as JSON objects (the hub bounds how many)."""

        return self._call(lambda: [p.toJSON() for p in self.hub.pending()])

    def approve(self, ref: str) -> Deferred:
        """Accept a held plug; fires with its plug JSON."""

        return self._call(lambda: self.plugJSON(self.hub.approve(_text(ref, "plug"))))

    def clearConflict(self, ref: str) -> Deferred:
        """Accept a plug's latest login identity as its own; fires with its plug JSON (conflict null)."""
        return self._call(lambda: self.plugJSON(self.hub.clearConflict(_text(ref, "plug"))))

    def info(self) -> Deferred:
        """The daemon's version, pid, uptime, listeners and counters."""
        return self._call(self._info)

    def _info(self) -> dict[str, Any]:
        status = self.hub.status()
        listeners: dict[str, str] = {}
        daemon = self.daemonInfo
        for name, listener in daemon.listeners.items():
            port = getattr(listener, "port", None)
            listeners[name] = describeAddress(port.getHost()) if port is not None else str(
                getattr(listener, "description", listener))
        doc: dict[str, Any] = {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": status["uptime_s"],
            "started": isoTime(self.hub.started),
            "listeners": listeners,
            "control": dict(self.stats, watchers=len(self.watchers)),
            **status,
        }
        if daemon.stateDir is not None:
            doc["state_dir"] = str(daemon.stateDir)
        # Parts of the daemon publish facts (e.g. the LAN address plugs are told); values may be
        # callables so they are read at request time.
        for key, value in dict(daemon.facts).items():
            try:
                doc[key] = value() if callable(value) else value
            except Exception:
                log.failure("info provider {key} failed", key=key)
        return doc

    def nodes(self) -> Deferred:
        """The cluster's nodes, their plugs and leases (L{clusterJSON}); L{c.NotInCluster} when alone."""

        def go() -> dict[str, Any]:
            if self.cluster is None:
                raise c.NotInCluster("this vesyncd is not in a cluster (nodes share a PostgreSQL --database "
                                     "and an --mqtt broker, each started with --node NAME)")
            return clusterJSON(self.cluster)

        return self._call(go)

    def watch(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Follow events (see L{Watchers.add}); raises L{c.Busy} when too many already do."""
        return self.watchers.add(callback)
