"""
The automation engine: countdown timers, schedules, away mode and power rules for every plug, run on an
injected clock against an L{IAutomationHub} and kept in an L{IAutomationStore}.

Front ends call the public methods with the user's text (C{"30m"}, C{"sunset-15m"}, C{"mon-fri"}) and
plug ids they already resolved; bad input raises L{AutomationError} naming the option, a bound or an
unknown id raises L{AutomationRefused}.  Every switch carries its cause: C{timer}, C{schedule:<id>},
C{away} or C{rule:<id>}.  C{docs/automation.md} documents the methods and their JSON.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vesyncd.automation import views
from vesyncd.automation.away import AwayMode
from vesyncd.automation.countdown import Countdowns
from vesyncd.automation.interfaces import IAutomationHub, IAutomationStore
from vesyncd.automation.model import AWAY, BELOW, DONE_BELOW, RULE, SCHEDULE, TIMER, ABOVE, Away, Rule, Schedule, Timer
from vesyncd.automation.parse import (AutomationError, AutomationRefused, parseClock, parseDuration, parseSwitch,
                                      parseWatts)
from vesyncd.automation.rules import PowerPoller, RuleSet
from vesyncd.automation.schedules import Schedules, newId
from vesyncd.automation.settings import AutomationConfig
from vesyncd.automation.switcher import Intent, Switcher

log = Logger()


class AutomationEngine:
    """Every plug's automation; L{start} loads it from the store, catches up and follows the hub."""

    def __init__(self, hub: IAutomationHub, store: IAutomationStore, clock: IReactorTime,
                 config: AutomationConfig, rng: random.Random | None = None) -> None:
        self.hub = hub
        self.store = store
        self.clock = clock
        self.config = config
        self.zone = config.zone
        self.switcher = Switcher(hub, clock, config.retry_delay)
        self.countdowns = Countdowns(clock, store, self.switcher, config.max_timers)
        self.schedules = Schedules(clock, config, store, self.switcher.apply, self._taken)
        self.ruleSet = RuleSet(config.done_running_after)
        self.poller = PowerPoller(clock, hub.refresh, hub.isOnline, config.poll_interval, config.max_polls_per_second)
        self.awayMode = AwayMode(clock, self.zone, rng or random.Random(), self._awaySwitch,
                                 config.away_on, config.away_off)
        self._unsubscribe: Callable[[], None] | None = None
        #: In a cluster: the other node holding a plug, and the reader of a plug's stored items (L{attachCluster}).
        self.elsewhere: Callable[[str], str | None] = lambda plug: None
        self._loadItems: Callable[[str], Deferred] | None = None

    # -- life ------------------------------------------------------------------------------------

    def start(self, items: list[tuple[str, str, str, dict[str, Any]]] | None = None) -> None:
        """Load every item (C{items} if given, e.g. read from the store before twistd forks; else the
        store's L{IAutomationStore.load}), run what came due while the daemon was down, and follow the
        hub's events."""
        intents: list[Intent] = []
        for kind, id, plug, doc in (self.store.load() if items is None else items):
            self._hold(kind, id, plug, doc)
        intents.extend(self.schedules.catchUp())
        self.countdowns.armAll()
        self.schedules.armAll()
        for plug in list(self.ruleSet.byPlug):
            self._armPoller(plug)
        for intent in sorted(intents, key=lambda i: i.asked):
            self.switcher.apply(intent)
        self._unsubscribe = self.hub.subscribe(self._event)
        self.poller.start()
        log.info("automation: {t} timers, {s} schedules, {r} rules, {a} away windows", t=len(self.countdowns),
                 s=len(self.schedules), r=len(self.ruleSet), a=len(self.awayMode))

    def stop(self) -> Deferred:
        """Stop every clock call and following the hub; fires when the store has written everything."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.countdowns.stop()
        self.schedules.stop()
        self.awayMode.stop()
        self.poller.stop()
        self.switcher.stop()
        return self.store.flush()

    def _now(self) -> datetime:
        """The current moment in the local zone."""
        return datetime.fromtimestamp(self.clock.seconds(), self.zone)

    def _event(self, event: Any) -> None:
        """Follow the hub: plugs coming back, power readings, plugs going away.

        In a cluster, another node's event only matters when a plug comes online there: what waits
        for it here is that node's to do.  A plug coming online here gets its switches once its
        items are taken over (L{adoptPlug}).
        """
        kind, plug = event.kind, event.plug
        if getattr(event, "origin", None) is not None:
            if kind == "online":
                self.switcher.release(plug)
            return
        if kind == "online":
            if self._loadItems is None:
                self.switcher.online(plug)
        elif kind == "offline":
            self.ruleSet.interrupted(plug)
        elif kind == "forgotten":
            self.forgetPlug(plug)
        elif kind == "runtime" and plug in self.ruleSet.byPlug:
            power = event.data.get("power_w")
            if isinstance(power, (int, float)) and not isinstance(power, bool):
                self._power(plug, float(power), event.at)

    # -- countdown timers --------------------------------------------------------------------------

    def setTimer(self, plug: str, target: Any, seconds: Any) -> dict[str, Any]:
        """After C{seconds} (a duration like C{"30m"} or a number) switch C{plug} to C{target} (on/off);
        replaces the plug's timer.  Returns the timer's JSON."""
        on = parseSwitch(target, "switch")
        delay = parseDuration(seconds, "--for")
        self.countdowns.set(plug, on, delay)
        return self.timer(plug) or {}

    def switchFor(self, plug: str, on: Any, seconds: Any) -> Deferred:
        """Switch C{plug} to C{on} now (cause C{command}) and back after C{seconds}; fires with the timer's
        JSON once the plug confirmed, or fails as the hub's switch did (then no timer is set)."""
        target = parseSwitch(on, "switch")
        parseDuration(seconds, "--for")
        return self.hub.switch(plug, target, "command").addCallback(lambda _: self.setTimer(plug, not target, seconds))

    def timer(self, plug: str) -> dict[str, Any] | None:
        """The plug's pending timer as JSON, or None."""
        timer = self.countdowns.get(plug)
        if timer is None:
            return None
        waiting = self.switcher.pendingFor(plug)
        return views.timerJSON(timer, self.clock.seconds(), self.zone, waiting is not None and waiting.cause == TIMER)

    def cancelTimer(self, plug: str) -> bool:
        """Cancel the plug's timer; False if it had none."""
        return self.countdowns.cancel(plug)

    # -- schedules -------------------------------------------------------------------------------

    def addSchedule(self, plug: str, on: Any, at: str, days: Any = None, once: str | None = None) -> dict[str, Any]:
        """Add a schedule switching C{plug} to C{on} at C{at} (C{"HH:MM[:SS]"}, C{"sunrise[+-OFFSET]"},
        C{"sunset[+-OFFSET]"}) on C{days} (C{"mon,tue"}, C{"mon-fri"}, C{"weekdays"}, C{"weekends"},
        C{"daily"}; default daily) or once on the date C{once} (C{"YYYY-MM-DD"}); returns its JSON."""
        return self.schedules.add(plug, on, at, days, once)

    def schedulesOf(self, plug: str | None = None) -> list[dict[str, Any]]:
        """Every schedule (of C{plug}, if given) as JSON, soonest next run first (unarmed ones last)."""
        return self.schedules.listing(plug)

    def removeSchedule(self, scheduleId: str) -> dict[str, Any]:
        """Remove a schedule; returns what it was."""
        return self.schedules.remove(scheduleId)

    def enableSchedule(self, scheduleId: str) -> dict[str, Any]:
        """Enable a schedule (runs missed while it was disabled are not caught up); returns its JSON."""
        return self.schedules.setEnabled(scheduleId, True)

    def disableSchedule(self, scheduleId: str) -> dict[str, Any]:
        """Disable a schedule (it stays listed); returns its JSON."""
        return self.schedules.setEnabled(scheduleId, False)

    def _taken(self, candidate: str) -> bool:
        """True if a schedule or rule already has id C{candidate}."""
        return candidate in self.schedules.byId or candidate in self.ruleSet.rules

    # -- away mode -------------------------------------------------------------------------------

    def away(self, plug: str, start: str, end: str) -> dict[str, Any]:
        """Switch C{plug} on and off at random each day between C{start} and C{end} (C{"HH:MM"}); returns
        its JSON.  A window whose end is before its start crosses midnight."""
        begin, finish = parseClock(start, "--from"), parseClock(end, "--to")
        if begin == finish:
            raise AutomationError("--to", "must differ from --from")
        if self.awayMode.get(plug) is None and len(self.awayMode) >= self.config.max_timers:
            raise AutomationRefused("plug", f"{len(self.awayMode)} plugs are in away mode, the most allowed")
        away = Away(plug, begin, finish, self.clock.seconds())
        self.awayMode.set(away)
        self.store.save(AWAY, plug, plug, away.toDoc())
        return self.awayStatus(plug) or {}

    def awayOff(self, plug: str) -> bool:
        """Stop away mode for C{plug} (switching it off if away mode had it on); False if it was not on."""
        if not self.awayMode.remove(plug):
            return False
        self.store.delete(AWAY, plug, plug)
        return True

    def awayStatus(self, plug: str) -> dict[str, Any] | None:
        """The plug's away window and next change as JSON, or None."""
        away = self.awayMode.get(plug)
        if away is None:
            return None
        return views.awayJSON(away, self.awayMode.window(plug), self.awayMode.nextChange(plug), self.zone)

    def _awaySwitch(self, plug: str, on: bool) -> None:
        # Away steps are not kept for an offline plug: a late random switch would be no better than none.
        """Make one away step for an online plug."""
        if self.hub.isOnline(plug):
            self.switcher.apply(Intent(plug, on, AWAY, self.clock.seconds(), self.clock.seconds()))

    # -- power rules -----------------------------------------------------------------------------

    def addRule(self, plug: str, *, above: Any = None, below: Any = None, doneBelow: Any = None,
                duration: Any = None, then: str | None = None) -> dict[str, Any]:
        """Add a power rule: exactly one of C{above}, C{below}, C{doneBelow} watts, held for C{duration},
        then C{then} (C{off}, C{on}, C{notify}; default C{off}, or C{notify} for C{doneBelow}); returns its JSON."""
        given = [(w, v) for w, v in ((ABOVE, above), (BELOW, below), (DONE_BELOW, doneBelow)) if v is not None]
        if len(given) != 1:
            raise AutomationError("--above", "give exactly one of --above, --below, --done-below")
        when, value = given[0]
        watts = parseWatts(value, "--" + when.replace("_", "-"))
        if duration is None:
            raise AutomationError("--for", "a rule needs --for DURATION")
        seconds = parseDuration(duration, "--for")
        action = then if then is not None else ("notify" if when == DONE_BELOW else "off")
        if not isinstance(action, str) or action.lower() not in ("off", "on", "notify"):
            raise AutomationError("--then", f"{str(action)[:20]!r} is not off, on or notify")
        if len(self.ruleSet.byPlug.get(plug, ())) >= self.config.max_rules_per_plug:
            raise AutomationRefused("plug", f"{plug} has {self.config.max_rules_per_plug} rules, the most allowed")
        if len(self.ruleSet) >= self.config.max_rules:
            raise AutomationRefused("rule", f"{len(self.ruleSet)} rules exist, the most allowed")
        rule = Rule(newId("r", self._taken), plug, when, watts, seconds, action.lower(), True, self.clock.seconds())
        self.ruleSet.put(rule)
        self.store.save(RULE, rule.id, plug, rule.toDoc())
        self._armPoller(plug)
        return self._ruleView(rule)

    def rulesOf(self, plug: str | None = None) -> list[dict[str, Any]]:
        """Every rule (of C{plug}, if given) as JSON, in the order they were added."""
        rules = self.ruleSet.ofPlug(plug) if plug is not None else list(self.ruleSet.rules.values())
        return [self._ruleView(r) for r in rules]

    def removeRule(self, ruleId: str) -> dict[str, Any]:
        """Remove a rule; returns what it was."""
        rule = self._rule(ruleId)
        view = self._ruleView(rule)
        self.ruleSet.remove(rule.id)
        self.store.delete(RULE, rule.id, rule.plug)
        self._armPoller(rule.plug)
        return view

    def enableRule(self, ruleId: str, enabled: bool = True) -> dict[str, Any]:
        """Enable (or with C{enabled=False} disable) a rule; its state starts afresh."""
        rule = replace(self._rule(ruleId), enabled=enabled)
        self.ruleSet.put(rule)
        self.store.save(RULE, rule.id, rule.plug, rule.toDoc())
        self._armPoller(rule.plug)
        return self._ruleView(rule)

    def disableRule(self, ruleId: str) -> dict[str, Any]:
        """Disable a rule (it stays listed); returns its JSON."""
        return self.enableRule(ruleId, False)

    def _rule(self, ruleId: Any) -> Rule:
        """The rule with this id, or L{AutomationRefused} naming C{id}."""
        rule = self.ruleSet.rules.get(ruleId) if isinstance(ruleId, str) else None
        if rule is None:
            raise AutomationRefused("id", f"no rule {str(ruleId)[:20]!r}")
        return rule

    def _ruleView(self, rule: Rule) -> dict[str, Any]:
        """A rule's JSON with its current state."""
        return views.ruleJSON(rule, *self.ruleSet.state(rule.id))

    def _armPoller(self, plug: str) -> None:
        """Poll the plug's power while it has an enabled rule, and only then."""
        if self.ruleSet.armed(plug):
            self.poller.arm(plug)
        else:
            self.poller.disarm(plug)

    def _power(self, plug: str, power: float, at: float) -> None:
        """Feed a reading to the plug's rules; announce cycles starting and ending, and fire rules."""
        for rule, fired, running in self.ruleSet.feed(plug, power, at):
            if running is not None:
                self.hub.announce("rule_running", plug, rule=rule.id, running=running)
            if fired:
                self._fire(rule, power)

    def _fire(self, rule: Rule, power: float) -> None:
        """Do what the rule says and announce a C{rule} event with what was done."""
        log.info("automation: rule {rule} of {plug} fired at {power} W: {action}", rule=rule.id, plug=rule.plug,
                 power=power, action=rule.then)
        if rule.then == "notify":
            self.hub.announce("rule", rule.plug, rule=rule.id, power_w=power, action="notify", ok=True)
            return

        def done(_: Any) -> None:
            self.hub.announce("rule", rule.plug, rule=rule.id, power_w=power, action=rule.then, ok=True)

        def failed(f: Any) -> None:
            self.hub.announce("rule", rule.plug, rule=rule.id, power_w=power, action=rule.then, ok=False,
                              error=f.getErrorMessage()[:200])

        self.hub.switch(rule.plug, rule.then == "on", f"rule:{rule.id}").addCallbacks(done, failed)

    # -- per plug and daemon-wide -----------------------------------------------------------------

    def nextAction(self, plug: str) -> dict[str, Any] | None:
        """The next switch automation will make to C{plug} (timer, schedule or away), as JSON, or None."""
        candidates: list[tuple[float, bool, str]] = []
        timer = self.countdowns.get(plug)
        if timer is not None:
            candidates.append((timer.due, timer.on, TIMER))
        for schedule in self.schedules.byPlug.get(plug, {}).values():
            ts = self.schedules.nextTs(schedule.id)
            if ts is not None:
                candidates.append((ts, schedule.on, f"schedule:{schedule.id}"))
        change = self.awayMode.nextChange(plug)
        if change is not None:
            candidates.append((change[0], change[1], AWAY))
        if not candidates:
            return None
        ts, on, cause = min(candidates, key=lambda c: c[0])
        return views.actionJSON(ts, on, cause, self.zone)

    def describe(self, plug: str) -> dict[str, Any]:
        """Everything automation holds for C{plug}: C{{"plug", "timer", "schedules", "rules", "away", "next"}}."""
        return {"plug": plug, "timer": self.timer(plug), "schedules": self.schedulesOf(plug),
                "rules": self.rulesOf(plug), "away": self.awayStatus(plug), "next": self.nextAction(plug)}

    # -- the cluster (--node) -------------------------------------------------------------------

    def attachCluster(self, elsewhere: Callable[[str], str | None], loadItems: Callable[[str], Deferred]) -> None:
        """Run as one node of a cluster: items act only for plugs connected here (C{elsewhere(plug)}
        names the node holding a plug, or None), and a plug that comes online here has its items read
        again with C{loadItems(plug)} (firing with C{[(kind, id, plug, document)]}) before they act."""
        self.elsewhere = elsewhere
        self._loadItems = loadItems
        self.switcher.elsewhere = elsewhere
        self.schedules.elsewhere = elsewhere

    def adoptPlug(self, plug: str) -> Deferred:
        """The plug is connected here now (its lease taken): replace its items with the stored ones
        (another node may have changed them or run a schedule), catch up the schedule runs nobody made,
        and make the switches kept for it.

        Guarantee: a schedule run is made by the node that notes it in the store, once; a run that came
        while the plug's node was dead is made by the node that takes the plug over, within the
        catch-up window.  Only a run noted by a node that died before its switch reached the plug is lost.
        """
        if self._loadItems is None:
            self.switcher.online(plug)
            return succeed(None)
        loadItems = self._loadItems
        d = self.store.flush()
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: loadItems(plug))

        def failed(f: Any) -> None:
            log.warn("automation: could not read the items of {plug} again: {error}", plug=plug,
                     error=f.getErrorMessage())

        d.addCallbacks(lambda items: self._adopt(plug, items), failed)
        d.addCallback(lambda _: self.switcher.online(plug) if self.hub.isOnline(plug) else None)
        return d

    def _adopt(self, plug: str, items: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Hold exactly C{items} for C{plug}, armed, and make the schedule runs missed."""
        if not self.hub.isOnline(plug):
            return
        self._forgetInMemory(plug, keepWaiting=True)
        for kind, itemId, itemPlug, doc in items:
            if itemPlug == plug:
                self._hold(kind, itemId, plug, doc)
        self.countdowns.arm(plug)
        intents = self.schedules.catchUp(plug)
        for schedule in list(self.schedules.byPlug.get(plug, {}).values()):
            self.schedules.arm(schedule)
        self._armPoller(plug)
        for intent in sorted(intents, key=lambda i: i.asked):
            self.switcher.apply(intent)

    def _hold(self, kind: str, itemId: str, plug: str, doc: dict[str, Any]) -> bool:
        """Hold one item as stored (not armed, not saved); False, logged, when it is unreadable."""
        try:
            if kind == TIMER:
                self.countdowns.hold(Timer.fromDoc(plug, doc))
            elif kind == SCHEDULE:
                self.schedules.put(Schedule.fromDoc(itemId, plug, doc))
            elif kind == RULE:
                self.ruleSet.put(Rule.fromDoc(itemId, plug, doc))
            elif kind == AWAY:
                self.awayMode.set(Away.fromDoc(plug, doc))
            else:
                raise ValueError("unknown kind (written by a newer vesyncd?)")
        except (AutomationError, KeyError, TypeError, ValueError) as e:
            log.error("automation: skipping stored {kind} {id!r} of {plug}: {error}", kind=str(kind)[:20],
                      id=str(itemId)[:40], plug=str(plug)[:40], error=str(e)[:200])
            return False
        return True

    def applyItem(self, kind: str, itemId: str, plug: str, doc: dict[str, Any] | None) -> None:
        """Another node saved (C{doc}) or deleted (None) an item: hold the same here, armed, without
        writing it (that node did)."""
        if kind == TIMER:
            self.countdowns.discard(plug)
            if doc is not None and self._hold(kind, itemId, plug, doc):
                self.countdowns.arm(plug)
        elif kind == SCHEDULE:
            self.schedules.discard(itemId)
            if doc is not None and self._hold(kind, itemId, plug, doc):
                self.schedules.arm(self.schedules.byId[itemId])
        elif kind == RULE:
            self.ruleSet.remove(itemId)
            if doc is not None:
                self._hold(kind, itemId, plug, doc)
            self._armPoller(plug)
        elif kind == AWAY:
            if doc is None:
                self.awayMode.remove(plug, switchOff=False)
            else:
                self._hold(kind, itemId, plug, doc)

    def applyPlugDeleted(self, plug: str) -> None:
        """Another node dropped every item of C{plug}: drop them here too, without writing."""
        self._forgetInMemory(plug)

    def _forgetInMemory(self, plug: str, keepWaiting: bool = False) -> None:
        """Drop the plug's items from memory and the clock (the store is not touched)."""
        self.countdowns.discard(plug)
        self.schedules.forgetPlug(plug)
        for rule in self.ruleSet.ofPlug(plug):
            self.ruleSet.remove(rule.id)
        self.poller.disarm(plug)
        self.awayMode.remove(plug, switchOff=False)
        if not keepWaiting:
            self.switcher.release(plug)

    def forgetPlug(self, plug: str) -> None:
        """Drop every timer, schedule, rule and away window of C{plug} (it was forgotten)."""
        self._forgetInMemory(plug, keepWaiting=True)
        self.switcher.drop(plug)
        self.store.deletePlug(plug)

    def status(self) -> dict[str, Any]:
        """Daemon-wide counts for C{info} and the metrics."""
        return {"timers": len(self.countdowns), "schedules": len(self.schedules), "rules": len(self.ruleSet),
                "away": len(self.awayMode), "waiting": len(self.switcher.waiting),
                "polled_plugs": len(self.poller.due), "polls": self.poller.polls,
                "poll_failures": self.poller.failures, "switches": self.switcher.switched,
                "switch_failures": self.switcher.failed}
