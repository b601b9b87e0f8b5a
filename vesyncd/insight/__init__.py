"""
Energy insight: what the energy recorded costs, what a plug draws all the time, and chart data.

Network-free and clock-free: every function takes plain values (POSIX times, watt-hours, watts,
a C{tzinfo}) so it can be tested without a reactor.  The modules, in the order data flows:

  - L{vesyncd.insight.tariffconfig}: options and the TOML C{[[tariff]]} tables -> a validated schedule
  - L{vesyncd.insight.tariff}: the schedule (dated tariffs, weekly time-of-use prices) and its prices
  - L{vesyncd.insight.cost}: hourly rows -> cost per hour and per history bucket
  - L{vesyncd.insight.ranges}: yesterday / this week / month / year and their totals
  - L{vesyncd.insight.export}: hourly rows as CSV, the time zone in the header
  - L{vesyncd.insight.ring}: the fixed-size, time-indexed ring both trackers below use
  - L{vesyncd.insight.baseline}: a plug's always-on (standby) power from 7 days of samples
  - L{vesyncd.insight.chart}: the live power chart (last hour, last 24 h averaged)

docs/energy.md describes the public names and JSON shapes.
"""
