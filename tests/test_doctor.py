"""Tests for vesyncd.doctor.checks: every check's OK/WARN/FAIL path with fake probes, and the
output formats.  The real probes are tested in test_doctor_probes.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed

from vesyncd.doctor import checks as D
from vesyncd.doctor import probes as DP

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
LAN = "192.168.1.10"


@dataclass
class FakeProbes:
    """In-memory probes; a value that is an Exception instance is raised/failed instead."""

    holders: dict[tuple[int, str], Any] = field(
        default_factory=lambda: {
            (53, "udp"): f"vesyncd (pid 42) on {LAN}",
            (53, "tcp"): f"vesyncd (pid 42) on {LAN}",
            (17273, "tcp"): "vesyncd (pid 42) on 0.0.0.0",
        }
    )
    system: Any = field(default_factory=lambda: [LAN])
    responderAnswer: Any = field(default_factory=lambda: [LAN])
    local: Any = field(default_factory=lambda: ["127.0.0.1", LAN, "::1"])
    status: Any = field(default_factory=lambda: {"version": "0.1", "pid": 42, "uptime": 90.5})
    plugList: Any = field(
        default_factory=lambda: [
            {"id": "abc", "alias": "Lamp", "online": True, "address": "192.168.1.50",
             "firmware": "2.123", "last_seen": "2025-06-01T11:59:30Z"}
        ]
    )
    pendingValue: Any = None
    clockValue: Any = (NOW, "kernel NTP status: synchronised")
    responder: tuple[str, int] = ("127.0.0.1", 5353)
    asked: list[tuple[str, str, int]] = field(default_factory=list)

    def portHolder(self, port: int, proto: str) -> str | None:
        """The configured holder, raised if it is an exception."""
        value = self.holders.get((port, proto))
        if isinstance(value, Exception):
            raise value
        return value

    def systemResolve(self, name: str) -> Deferred[list[str]]:
        """A Deferred of the configured answer (or failure)."""
        return fail(self.system) if isinstance(self.system, Exception) else succeed(self.system)

    def responderResolve(self, name: str, host: str, port: int) -> Deferred[list[str]]:
        """Record the query; a Deferred of the configured answer (or failure)."""
        self.asked.append((name, host, port))
        value = self.responderAnswer
        return fail(value) if isinstance(value, Exception) else succeed(value)

    def localAddresses(self) -> list[str]:
        """The configured local addresses."""
        return self.local

    def daemonStatus(self) -> Deferred[dict[str, Any] | None]:
        """A Deferred of the configured status (or failure)."""
        value = self.status
        return fail(value) if isinstance(value, Exception) else succeed(value)

    def plugs(self) -> Any:
        """The configured plug list, directly (probes may skip Deferreds)."""
        if isinstance(self.plugList, Exception):
            raise self.plugList
        return self.plugList

    def pending(self) -> Any:
        """The configured list of plugs held for approval (None: not known)."""
        if isinstance(self.pendingValue, Exception):
            raise self.pendingValue
        return self.pendingValue

    def clock(self) -> tuple[datetime, str | None]:
        """The configured clock reading."""
        if isinstance(self.clockValue, Exception):
            raise self.clockValue
        return self.clockValue


def run(probes: FakeProbes) -> dict[str, D.Check]:
    """Run the doctor synchronously (fake probes fire at once) and index checks by name."""
    results: list[list[D.Check]] = []
    D.runDoctor(probes).addCallback(results.append)
    assert len(results) == 1
    return {c.name: c for c in results[0]}


def levels(checks: dict[str, D.Check]) -> dict[str, str]:
    """Check name -> level value."""
    return {name: c.level.value for name, c in checks.items()}


def test_allOk() -> None:
    """A healthy setup gives only OK checks, in the documented order, and exit status 0."""
    probes = FakeProbes()
    results: list[list[D.Check]] = []
    D.runDoctor(probes).addCallback(results.append)
    checks = results[0]
    assert [c.name for c in checks] == [
        "daemon", "port 53/udp", "port 53/tcp", "port 17273/tcp", "dns system resolver",
        "dns vesyncd responder", "plug Lamp (abc)", "clock",
    ]
    assert all(c.level is D.Level.OK for c in checks), D.formatChecks(checks)
    assert probes.asked == [("server2.vesync.com", "127.0.0.1", 5353)]
    assert D.exitCode(checks) == 0
    byName = {c.name: c for c in checks}
    assert "30 s ago" in byName["plug Lamp (abc)"].message
    assert "192.168.1.50" in byName["plug Lamp (abc)"].message and "2.123" in byName["plug Lamp (abc)"].message
    assert "pid 42" in byName["daemon"].message


def test_systemdResolvedHoldsDns() -> None:
    """systemd-resolved on 127.0.0.53:53 is a WARN (FAIL with no daemon) explaining the stub fix."""
    probes = FakeProbes()
    probes.holders[(53, "udp")] = "systemd-resolved (pid 612) on 127.0.0.53"
    checks = run(probes)
    assert checks["port 53/udp"].level is D.Level.WARN
    assert "DNSStubListener=no" in (checks["port 53/udp"].fix or "")
    probes.status = None
    assert run(probes)["port 53/udp"].level is D.Level.FAIL


def test_resolvedAlongsideVesyncdIsOk() -> None:
    """If vesyncd holds the port too (on its own address), the port check is OK."""
    probes = FakeProbes()
    probes.holders[(53, "udp")] = f"systemd-resolved (pid 612) on 127.0.0.53; vesyncd (pid 42) on {LAN}"
    assert run(probes)["port 53/udp"].level is D.Level.OK


def test_portsFreeOrForeign() -> None:
    """Nothing on 17273 is a FAIL, nothing on 53 a WARN, another program on either a FAIL."""
    probes = FakeProbes()
    probes.holders = {(53, "udp"): None, (53, "tcp"): "dnsmasq (pid 7) on 0.0.0.0", (17273, "tcp"): None}
    checks = run(probes)
    assert levels(checks)["port 53/udp"] == "WARN"
    assert levels(checks)["port 53/tcp"] == "FAIL" and "dnsmasq" in checks["port 53/tcp"].message
    assert levels(checks)["port 17273/tcp"] == "FAIL"
    assert "plugs cannot connect" in checks["port 17273/tcp"].message


def test_portProbeError() -> None:
    """A port probe that raises becomes a WARN with the reason, not a crash."""
    probes = FakeProbes()
    probes.holders[(17273, "tcp")] = PermissionError("permission denied")
    check = run(probes)["port 17273/tcp"]
    assert check.level is D.Level.WARN and "permission denied" in check.message


def test_systemResolverPointsToCloud() -> None:
    """The system resolver giving the cloud's address is a WARN suggesting --server-ip or a DNS override."""
    probes = FakeProbes()
    probes.system = ["104.200.30.164"]
    check = run(probes)["dns system resolver"]
    assert check.level is D.Level.WARN
    assert "104.200.30.164" in check.message and "--server-ip" in (check.fix or "")


def test_systemResolverFails() -> None:
    """A failed system lookup is a WARN carrying the error."""
    probes = FakeProbes()
    probes.system = OSError("Name or service not known")
    check = run(probes)["dns system resolver"]
    assert check.level is D.Level.WARN and "Name or service not known" in check.message


def test_advertisedAddressPreferred() -> None:
    """With an advertised address in the daemon status, only that address counts as right."""
    probes = FakeProbes()
    probes.status = {"address": "192.168.1.11"}
    probes.local = ["127.0.0.1", LAN, "192.168.1.11"]
    checks = run(probes)
    assert checks["dns vesyncd responder"].level is D.Level.FAIL
    assert "192.168.1.11" in checks["dns vesyncd responder"].message
    probes.responderAnswer = ["192.168.1.11"]
    assert run(probes)["dns vesyncd responder"].level is D.Level.OK


@pytest.mark.parametrize(
    "answer, text",
    [
        (TimeoutError("no reply in 3 s"), "no answer"),
        ([], "no address"),
        (["127.0.0.1"], "loopback"),
        (["10.9.9.9"], "not this host"),
    ],
)
def test_responderProblems(answer: Any, text: str) -> None:
    """No answer, no address, a loopback answer or a foreign answer from the responder FAIL."""
    probes = FakeProbes()
    probes.responderAnswer = answer
    check = run(probes)["dns vesyncd responder"]
    assert check.level is D.Level.FAIL and text in check.message and check.fix


def test_daemonDown() -> None:
    """No daemon: FAIL for it, plugs unknown (WARN), and no plug probe is needed."""
    probes = FakeProbes()
    probes.status = None
    probes.plugList = RuntimeError("should not be asked")
    checks = run(probes)
    assert checks["daemon"].level is D.Level.FAIL and "not running" in checks["daemon"].message
    assert checks["plugs"].level is D.Level.WARN
    assert D.exitCode(list(checks.values())) == 1


def test_daemonUnreachableReason() -> None:
    """A failing status probe's reason appears in the daemon check."""
    probes = FakeProbes()
    probes.status = ConnectionRefusedError("control socket /run/vesyncd/control refused")
    assert "control socket" in run(probes)["daemon"].message


def test_noPlugs() -> None:
    """No plug seen yet is a WARN pointing at provisioning."""
    probes = FakeProbes()
    probes.plugList = []
    check = run(probes)["plugs"]
    assert check.level is D.Level.WARN and "vesyncctl provision" in (check.fix or "")


def test_offlineAndNeverSeenPlugs() -> None:
    """Offline plugs are WARN with when and where they were last seen; never-seen ones say so."""
    probes = FakeProbes()
    probes.plugList = [
        {"id": "p1", "alias": "", "online": False, "address": "192.168.1.51", "firmware": "1.0",
         "last_seen": "2025-06-01T09:00:00+00:00"},
        {"id": "p2", "alias": "Heater", "online": False, "address": None, "firmware": None, "last_seen": None},
    ]
    checks = run(probes)
    assert checks["plug p1"].level is D.Level.WARN and "3 h ago" in checks["plug p1"].message
    assert "never seen" in checks["plug Heater (p2)"].message


CONFLICT = {
    "at": "2025-06-01T11:00:00Z", "fields": ["account", "host"],
    "first": {"account": "me@example.com", "host": "192.168.1.50", "firmware": "2.123"},
    "now": {"account": "other", "host": "192.168.1.66", "firmware": "2.123"},
}


def test_conflictingLoginsWarnAfterThePlug() -> None:
    """A plug whose logins disagree gets a WARN right after its own check, saying what differs
    since when, and naming `vesyncctl forget` and `vesyncctl clear-conflict` with its id."""
    probes = FakeProbes()
    probes.plugList[0]["conflict"] = CONFLICT
    results: list[list[D.Check]] = []
    D.runDoctor(probes).addCallback(results.append)
    names = [c.name for c in results[0]]
    assert names[names.index("plug Lamp (abc)") + 1] == "plug Lamp (abc) logins"
    check = {c.name: c for c in results[0]}["plug Lamp (abc) logins"]
    assert check.level is D.Level.WARN
    assert "plug Lamp (abc): logins disagree on account/address since 2025-06-01T11:00:00Z" in check.message
    assert "me@example.com" in check.message and "192.168.1.66" in check.message
    assert "firmware" not in check.message.split("since")[0]
    assert "`vesyncctl forget abc`" in (check.fix or "")
    assert "`vesyncctl clear-conflict abc`" in (check.fix or "")
    assert D.exitCode(results[0]) == 0


def test_noConflictNoExtraCheck() -> None:
    """A null conflict (the usual case) adds nothing."""
    probes = FakeProbes()
    probes.plugList[0]["conflict"] = None
    assert "plug Lamp (abc) logins" not in run(probes)


def test_pendingPlugsWarn() -> None:
    """Plugs held for approval are a WARN naming them and `vesyncctl approve PLUG`; none, no check."""
    probes = FakeProbes()
    probes.pendingValue = {"pending": [{"id": f"new{i}", "address": "192.168.1.7"} for i in range(7)],
                           "total": 9}
    check = run(probes)["pending plugs"]
    assert check.level is D.Level.WARN
    assert "9 plugs wait for approval" in check.message
    assert "new0 from 192.168.1.7" in check.message and "new5" not in check.message
    assert "and 4 more" in check.message
    assert "`vesyncctl approve PLUG`" in (check.fix or "")
    probes.pendingValue = {"pending": [], "total": 0}
    assert "pending plugs" not in run(probes)
    probes.pendingValue = None
    assert "pending plugs" not in run(probes)
    probes.pendingValue = [{"id": "solo"}]
    assert "1 plug waits for approval and is" in run(probes)["pending plugs"].message


def test_pendingProbeFails() -> None:
    """An older daemon without the pending command is a WARN naming `vesyncctl pending`."""
    probes = FakeProbes()
    probes.pendingValue = RuntimeError("unknown command")
    check = run(probes)["pending plugs"]
    assert check.level is D.Level.WARN and "unknown command" in check.message
    assert "vesyncctl pending" in (check.fix or "")


def test_mqttSlugCollisionsWarn() -> None:
    """Aliases the MQTT bridge could not use as topics are a WARN naming the plugs and `vesyncctl rename`;
    escaped, and absent when there are none (or no MQTT)."""
    probes = FakeProbes()
    assert "mqtt topic names" not in run(probes)
    probes.status = {**probes.status, "mqtt_slug_collisions": [
        {"slug": "kitchen", "plugs": ["aaa111", "bbb222"]}, {"slug": "x\x1b[2J", "plugs": ["c\u202e"]}]}
    check = run(probes)["mqtt topic names"]
    assert check.level is D.Level.WARN
    assert "2 alias(es)" in check.message and "kitchen: aaa111, bbb222" in check.message
    assert "\x1b" not in check.message and "\u202e" not in check.message
    assert "vesyncctl rename" in (check.fix or "")
    probes.status = {**probes.status, "mqtt_slug_collisions": []}
    assert "mqtt topic names" not in run(probes)


def test_plugStringsEscaped() -> None:
    """Alias, firmware, address, conflict values and held ids from plugs reach the output escaped:
    no escape sequence, bell or bidirectional override gets to the terminal."""
    evil = "\x1b[2J\x1b]0;owned\x07\u202e"
    probes = FakeProbes()
    probes.plugList = [{"id": "abc", "alias": "Lamp" + evil, "online": False, "address": evil,
                        "firmware": evil, "last_seen": None,
                        "conflict": {**CONFLICT, "at": evil, "now": {"account": evil, "host": evil}}}]
    probes.pendingValue = {"pending": [{"id": "n" + evil, "address": evil}], "total": 1}
    results: list[list[D.Check]] = []
    D.runDoctor(probes).addCallback(results.append)
    text = D.formatChecks(results[0])
    for bad in ("\x1b", "\x07", "\u202e"):
        assert bad not in text
        for check in results[0]:
            assert bad not in check.name + check.message + (check.fix or "")
    assert "\\x1b[2J" in text and "\\u202e" in text
    # A raw control character in any field (say a process name) is escaped by the formatter too.
    assert "\x1b" not in D.formatChecks([D.Check("x\x1b", D.Level.WARN, "m\x1b", "f\x1b")])


SCENARIOS = {
    "no daemon": dict(status=None, holders={}),
    "foreign holders": dict(holders={(53, "udp"): "dnsmasq (pid 7) on 0.0.0.0",
                                     (53, "tcp"): "systemd-resolved (pid 6) on 127.0.0.53",
                                     (17273, "tcp"): None}),
    "nothing on dns": dict(holders={(53, "udp"): None, (53, "tcp"): PermissionError("denied")}),
    "dns wrong": dict(system=["104.200.30.164"], responderAnswer=["127.0.0.1"]),
    "dns empty": dict(system=OSError("no name"), responderAnswer=[]),
    "responder down": dict(responderAnswer=TimeoutError("no reply")),
    "plugs": dict(plugList=[{"id": "p", "online": False, "conflict": CONFLICT}],
                  pendingValue=[{"id": "q"}]),
    "no plugs": dict(plugList=[], pendingValue=RuntimeError("x")),
    "plug probe fails": dict(plugList=RuntimeError("x")),
    "clock": dict(clockValue=(datetime(1970, 1, 1, tzinfo=timezone.utc), None)),
    "clock unsynced": dict(clockValue=(NOW, None)),
    "clock unknown": dict(clockValue=OSError("adjtimex")),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_everyProblemNamesItsFix(scenario: str) -> None:
    """Every WARN and FAIL says how to fix it with an option (--x) or a command (`x`)."""
    probes = FakeProbes(**SCENARIOS[scenario])
    problems = [c for c in run(probes).values() if c.level is not D.Level.OK]
    assert problems
    for check in problems:
        assert check.fix and ("`" in check.fix or "--" in check.fix), check


def test_plugListFails() -> None:
    """A failing plug probe is a FAIL with its reason."""
    probes = FakeProbes()
    probes.plugList = RuntimeError("control timed out")
    check = run(probes)["plugs"]
    assert check.level is D.Level.FAIL and "control timed out" in check.message


def test_clockChecks() -> None:
    """Year before 2024 FAILs; unsynchronised WARNs ("plugs take their time from this server")."""
    probes = FakeProbes()
    probes.clockValue = (datetime(1970, 1, 1, tzinfo=timezone.utc), None)
    assert run(probes)["clock"].level is D.Level.FAIL
    probes.clockValue = (NOW, None)
    check = run(probes)["clock"]
    assert check.level is D.Level.WARN and "plugs take their time from this server" in check.message
    probes.clockValue = RuntimeError("adjtimex broke")
    check = run(probes)["clock"]
    assert check.level is D.Level.WARN and "adjtimex broke" in check.message


def test_formatChecks() -> None:
    """One line per check; label, name and message, and the fix only when not OK."""
    checks = [
        D.Check("daemon", D.Level.OK, "running", "unused"),
        D.Check("clock", D.Level.WARN, "not synced", "enable NTP"),
        D.Check("port 17273/tcp", D.Level.FAIL, "free", None),
    ]
    assert D.formatChecks(checks) == (
        "OK   daemon: running\n"
        "WARN clock: not synced -- fix: enable NTP\n"
        "FAIL port 17273/tcp: free\n"
    )
    assert D.formatChecks([]) == ""


def test_checksToJSON() -> None:
    """The JSON form has exactly name/level/message/fix per check and survives json.dumps."""
    probes = FakeProbes()
    probes.clockValue = (NOW, None)
    results: list[list[D.Check]] = []
    D.runDoctor(probes).addCallback(results.append)
    data = D.checksToJSON(results[0])
    assert json.loads(json.dumps(data)) == data
    for item in data:
        assert set(item) == {"name", "level", "message", "fix"}
        assert item["level"] in ("OK", "WARN", "FAIL")
        assert isinstance(item["message"], str) and (item["fix"] is None or isinstance(item["fix"], str))
    assert data[-1] == {
        "name": "clock", "level": "WARN",
        "message": "2025-06-01T12:00:00+00:00, but not known to be synchronised; plugs take their time from this server",
        "fix": "enable NTP (`sudo timedatectl set-ntp true`, or install chrony)",
    }


def test_fakeProbesMatchProtocol() -> None:
    """The fake and the real probes both satisfy the DoctorProbes protocol."""
    assert isinstance(FakeProbes(), D.DoctorProbes)
    assert isinstance(DP.SystemProbes(reactor, daemonStatus=lambda: None, plugs=lambda: []), D.DoctorProbes)
