"""
Tests of the doctor's checks that read what the daemon says about itself (L{vesyncd.doctor.setupchecks}):
the demo of C{make run} is called a demo and gets no DNS warning, a responder on another port or off
is named as such, the advertised address is judged, and every WARN or FAIL names its fix.  The
last test runs the doctor against a daemon started like the demo, on loopback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.test_doctor import LAN, FakeProbes, levels, run
from tests.twistd_helpers import Twistd
from vesyncd.doctor import checks as D
from vesyncd.doctor.setupchecks import DEMO, dnsListen, loopbackOnly, plugPort

ROOT = Path(__file__).resolve().parent.parent


def demoStatus(**changes: Any) -> dict[str, Any]:
    """The info of a daemon started like the demo (loopback listeners, DNS on 5353)."""
    status = {"version": "0.1", "pid": 42, "uptime": 3.0, "address": "127.0.0.1",
              "dns_listen": ["127.0.0.1", 5353],
              "listeners": {"plugs": "127.0.0.1:17273", "http": "127.0.0.1:8080", "control": "/s/control.sock"}}
    status.update(changes)
    return status


def demoProbes(**changes: Any) -> FakeProbes:
    """Probes of this host running the demo: nothing on port 53, no resolver for the cloud name."""
    probes = FakeProbes(status=demoStatus(), responderAnswer=["127.0.0.1"], system=OSError("Name or service not known"))
    probes.holders = {(17273, "tcp"): "vesyncd (pid 42) on 127.0.0.1"}
    for name, value in changes.items():
        setattr(probes, name, value)
    return probes


def fixNamesItsRemedy(check: D.Check) -> bool:
    """Whether a check's fix names an option (C{--name}) or a command in backquotes."""
    return bool(check.fix) and bool(re.search(r"--[a-z]|`[^`]+`", check.fix or ""))


def test_statusFacts() -> None:
    """The plug port, the responder address and loopback-only are read from the daemon's info."""
    assert plugPort(demoStatus(listeners={"plugs": "[::1]:40000"})) == 40000
    assert plugPort(demoStatus(listeners={"plugs": "/x.sock"})) == 17273
    assert dnsListen(demoStatus(dns_listen=["0.0.0.0", 53])) == ("127.0.0.1", 53)
    assert dnsListen(demoStatus(dns_listen=None)) is None
    assert loopbackOnly(demoStatus()) and loopbackOnly(demoStatus(dns_listen=None))
    assert not loopbackOnly(demoStatus(listeners={"plugs": "0.0.0.0:17273"}))
    assert not loopbackOnly(demoStatus(address=LAN))
    assert not loopbackOnly(None) and not loopbackOnly({"version": "0.1"})


def test_demoIsCleanAndSaysSo() -> None:
    """On the demo every check is OK, one says it is a loopback-only demo, the port 53 lines name the
    responder's real port, and the responder is asked where the daemon says it answers."""
    probes = demoProbes()
    checks = run(probes)
    assert set(levels(checks).values()) == {"OK"}, D.formatChecks(list(checks.values()))
    assert checks["setup"].message.startswith(DEMO)
    assert "127.0.0.1:5353" in checks["port 53/udp"].message and "not used by the demo" in checks["port 53/tcp"].message
    assert "enable vesyncd's DNS responder" not in D.formatChecks(list(checks.values()))
    assert checks["advertised address"].message.startswith("127.0.0.1")
    assert probes.asked == [("server2.vesync.com", "127.0.0.1", 5353)]


def test_demoOnAnotherPlugPort() -> None:
    """The plug port check follows the port the daemon listens on (the demo moves a busy one)."""
    probes = demoProbes(status=demoStatus(listeners={"plugs": "127.0.0.1:40001"}))
    probes.holders = {(40001, "tcp"): "vesyncd (pid 42) on 127.0.0.1"}
    checks = run(probes)
    assert checks["port 40001/tcp"].level is D.Level.OK and "port 17273/tcp" not in checks


def test_responderOnAnotherPortWarnsWithTheOption() -> None:
    """A LAN daemon whose responder is not on 53, with nothing there: WARN naming --dns-port."""
    status = demoStatus(address=LAN, dns_listen=[LAN, 5353], listeners={"plugs": "0.0.0.0:17273"})
    probes = demoProbes(status=status, responderAnswer=[LAN], system=[LAN])
    checks = run(probes)
    assert "setup" not in checks
    check = checks["port 53/udp"]
    assert check.level is D.Level.WARN and f"{LAN}:5353" in check.message and "--dns-port 53" in (check.fix or "")
    assert checks["advertised address"].level is D.Level.OK


def test_dnsOffIsNamed() -> None:
    """With --no-dns the port 53 and responder checks say so (WARN, no FAIL) and no query is sent."""
    status = demoStatus(address=LAN, dns_listen=None, listeners={"plugs": "0.0.0.0:17273"})
    probes = demoProbes(status=status, system=[LAN])
    checks = run(probes)
    assert checks["port 53/udp"].level is D.Level.WARN and "--no-dns" in checks["port 53/udp"].message
    assert checks["dns vesyncd responder"].level is D.Level.WARN and "--no-dns" in checks["dns vesyncd responder"].message
    assert probes.asked == []


def test_loopbackAddressOnALanDaemonFailsNamingAddress() -> None:
    """A daemon listening for LAN plugs but advertising loopback: FAIL naming --address and this host's address."""
    status = demoStatus(listeners={"plugs": "0.0.0.0:17273"}, dns_listen=["0.0.0.0", 53])
    probes = demoProbes(status=status, system=[LAN])
    probes.holders[(53, "udp")] = probes.holders[(53, "tcp")] = "vesyncd (pid 42) on 0.0.0.0"
    checks = run(probes)
    check = checks["advertised address"]
    assert check.level is D.Level.FAIL and "--address" in (check.fix or "") and LAN in (check.fix or "")


def test_loopbackPlugServerWithALanAddressFails() -> None:
    """Advertising a LAN address while the plug server listens on loopback only: FAIL naming --plugs."""
    status = demoStatus(address=LAN, dns_listen=[LAN, 53])
    probes = demoProbes(status=status, responderAnswer=[LAN], system=[LAN])
    probes.holders[(53, "udp")] = probes.holders[(53, "tcp")] = f"vesyncd (pid 42) on {LAN}"
    checks = run(probes)
    check = checks["port 17273/tcp"]
    assert check.level is D.Level.FAIL and "--plugs tcp:17273" in (check.fix or "") and LAN in check.message
    assert "setup" not in checks


def test_unknownOrForeignAddress() -> None:
    """No advertised address is a FAIL, one that is not this host's a WARN; both name --address."""
    lan = {"listeners": {"plugs": "0.0.0.0:17273"}, "dns_listen": [LAN, 53]}
    missing = run(demoProbes(status=demoStatus(address=None, **lan)))["advertised address"]
    assert missing.level is D.Level.FAIL and "--address" in (missing.fix or "")
    foreign = run(demoProbes(status=demoStatus(address="192.0.2.2", **lan)))["advertised address"]
    assert foreign.level is D.Level.WARN and "--address" in (foreign.fix or "")


def test_everyProblemNamesItsFix() -> None:
    """In every scenario above, each WARN and FAIL names an option or a command that fixes it."""
    lan = {"listeners": {"plugs": "0.0.0.0:17273"}}
    scenarios = [
        demoProbes(status=demoStatus(address=LAN, dns_listen=[LAN, 5353], **lan)),
        demoProbes(status=demoStatus(address=LAN, dns_listen=None, **lan)),
        demoProbes(status=demoStatus(dns_listen=["0.0.0.0", 5353], **lan)),
        demoProbes(status=demoStatus(address=None, dns_listen=[LAN, 53], **lan)),
        demoProbes(status=demoStatus(address="192.0.2.2", dns_listen=[LAN, 53], **lan)),
        demoProbes(status=demoStatus(address=LAN, dns_listen=[LAN, 53]), system=[LAN]),
    ]
    for probes in scenarios:
        problems = [c for c in run(probes).values() if c.level is not D.Level.OK]
        assert problems
        assert all(fixNamesItsRemedy(c) for c in problems), D.formatChecks(problems)


def test_doctorOnADaemonStartedLikeTheDemo(tmp_path: Path) -> None:
    """C{vesyncctl doctor --json} against twistd with the demo's config (ports moved to free ones):
    no FAIL, the DNS and address checks OK, and one line says it is a demo."""
    daemon = Twistd(tmp_path, config=ROOT / "etc" / "vesyncd-dev.toml")
    try:
        daemon.waitFor("control port listening on")
        out = daemon.vesyncctl("doctor", "--json")
    finally:
        daemon.stop()
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert not [c for c in checks.values() if c["level"] == "FAIL"], out.stdout
    for name in ("setup", "port 53/udp", "port 53/tcp", "dns system resolver", "dns vesyncd responder",
                 "advertised address"):
        assert checks[name]["level"] == "OK", checks[name]
    assert checks["setup"]["message"].startswith(DEMO)
    assert out.returncode == 0, out.stderr
