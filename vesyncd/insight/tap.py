"""
Wiring of energy insight: the tariff options and the config file's C{[[tariff]]} tables, and the
L{EnergyInsight} facade the front ends are given, with its standby baselines loaded at start,
saved every L{SAVE_INTERVAL} seconds and at shutdown.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Callable, Mapping

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from vesyncd.insight import tariffconfig
from vesyncd.insight.service import EnergyInsight
from vesyncd.insight.tariffconfig import TariffError, tariffSchedule
from vesyncd.service import IntervalService

log = Logger()

#: The key of the checked tariff schedule (or None) in the daemon's parsed options.
SCHEDULE_KEY = "tariff-schedule"
#: Seconds between saves of the standby baselines (a crash loses at most this much of them).
SAVE_INTERVAL = 900.0


class InsightOptions:
    """The tariff options, part of the daemon's L{vesyncd.tap.Options}."""

    # Without the table's coercers: twistd's "Parameter type enforcement failed" would not name the
    # option, while checkOptions reads the text and names it (--price-kwh -1 -> "price-kwh: ...").
    optParameters = [entry[:4] for entry in tariffconfig.optParameters]


def checkOptions(config: Any, tables: Mapping[str, Any] | None = None) -> None:
    """Validate the tariff options and the config file's C{[[tariff]]} tables (C{tables}: the part of the
    file under L{tariffconfig.TARIFF_KEY}); a refusal is a L{usage.UsageError} naming the key."""
    try:
        config[SCHEDULE_KEY] = tariffSchedule(config, tables)
    except TariffError as e:
        raise usage.UsageError(str(e)) from None


def makeServices(parent: service.MultiService, hub: Any, ledger: Any, config: Any, reactor: Any, zone: tzinfo, *,
                 switchLog: Any = None, baselines: Mapping[str, bytes] | None = None,
                 saveBaselines: Callable[[dict[str, bytes]], Deferred] | None = None,
                 beforeClose: list[Callable[[], Deferred]] | None = None) -> EnergyInsight:
    """The facade over the hub and ledger; with C{saveBaselines}, the baselines stored (C{baselines}) are
    loaded now and saved periodically and, through C{beforeClose}, before the store closes."""
    insight = EnergyInsight(hub, ledger, zone, reactor, config.get(SCHEDULE_KEY), switchLog=switchLog)
    if baselines:
        loaded = insight.loadBaselines(dict(baselines))
        log.info("insight: standby baselines of {n} plugs loaded", n=loaded)
    if saveBaselines is not None:
        save = saveBaselines

        def saveNow() -> Deferred:
            return insight.dumpBaselinesInTurns().addCallback(save)

        IntervalService(reactor, SAVE_INTERVAL, saveNow).setServiceParent(parent)
        if beforeClose is not None:
            beforeClose.append(saveNow)
    return insight
