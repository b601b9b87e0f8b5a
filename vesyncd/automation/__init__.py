"""
Automation run by the daemon itself: countdown timers, schedules (clock and sun times), away mode and
power rules, on an injected clock and with no network code (see C{docs/automation.md}).

The engine (L{vesyncd.automation.engine.AutomationEngine}) talks to the plugs only through
L{vesyncd.automation.interfaces.IAutomationHub} and keeps its items in an
L{vesyncd.automation.interfaces.IAutomationStore}.
"""
