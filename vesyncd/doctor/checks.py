"""
C{vesyncctl doctor}: find out why plugs do not reach vesyncd.

L{runDoctor} asks a L{DoctorProbes} object about this host and the daemon and turns the answers
into L{Check}s (OK / WARN / FAIL, a message and a fix).  All probing goes through that object, so
the logic runs in memory in tests; L{SystemProbes} is the real implementation (C{/proc}, the
system resolver, a DNS query to vesyncd's own responder, and callables the CLI wires to the
daemon's control interface).

Checks, in order: the daemon, who holds ports 53/udp, 53/tcp and 17273/tcp, what
C{server2.vesync.com} resolves to through the system resolver and through vesyncd's responder,
which plugs were seen, and whether this host's clock is sane.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol as TypingProtocol, Sequence, runtime_checkable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

#: The name plugs look up to find the cloud.
VESYNC_NAME = "server2.vesync.com"
#: Ports vesyncd needs: DNS for plugs that look the cloud up, WebSocket for plugs.
DNS_PORT = 53
PLUG_PORT = 17273

_log = Logger(namespace="vesyncd.doctor.checks")


class Level(enum.Enum):
    """How bad a finding is; the value is the JSON spelling."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One finding: a stable C{name}, a L{Level}, what was found, and how to fix it (or None)."""

    name: str
    level: Level
    message: str
    fix: str | None = None


@runtime_checkable
class DoctorProbes(TypingProtocol):
    """What L{runDoctor} needs to know about this host and the daemon.

    Every method may return its value directly or a Deferred (or awaitable) of it; a method that
    raises or fails becomes a FAIL check naming the probe, never a crash of the whole run.
    """

    #: (host, port) of vesyncd's DNS responder, queried by L{responderResolve}.
    responder: tuple[str, int]

    def portHolder(self, port: int, proto: str) -> str | None:
        """Who listens on C{port}/C{proto} (C{"udp"} or C{"tcp"}), as text such as
        C{"systemd-resolved (pid 612) on 127.0.0.53"}, several joined by C{"; "}; the text
        contains C{"vesyncd"} when it is the daemon.  None when nothing listens."""

    def systemResolve(self, name: str) -> Deferred[list[str]] | list[str]:
        """The addresses the system resolver gives for C{name}; fails when it cannot resolve."""

    def responderResolve(self, name: str, host: str, port: int) -> Deferred[list[str]] | list[str]:
        """The A/AAAA answers of vesyncd's responder at C{host}:C{port} for C{name}."""

    def localAddresses(self) -> list[str]:
        """This host's own addresses (all interfaces, loopback included)."""

    def daemonStatus(self) -> Deferred[dict[str, Any] | None] | dict[str, Any] | None:
        """The daemon's status dict, or None (or a failure with the reason) if unreachable.

        Keys used when present: C{version}, C{pid}, C{uptime} (seconds), C{address} (the LAN
        address vesyncd tells plugs / answers DNS with)."""

    def plugs(self) -> Deferred[list[dict[str, Any]]] | list[dict[str, Any]]:
        """Plugs the daemon knows: dicts with C{id}, C{alias}, C{online}, C{address},
        C{firmware}, C{last_seen} (ISO 8601, or None if never seen)."""

    def clock(self) -> tuple[datetime, str | None]:
        """This host's time (aware) and, if the system says it is synchronised, how (for
        example C{"kernel NTP status: synchronised"}); None when not synchronised or unknown."""


# --- the checks --------------------------------------------------------------------------------

_RESOLVED_FIX = (
    "systemd-resolved's stub listener holds 127.0.0.53:53, so vesyncd cannot bind port 53 on all "
    "addresses: bind vesyncd's DNS responder to this host's LAN address only, or turn the stub off "
    "(DNSStubListener=no in /etc/systemd/resolved.conf, `sudo systemctl restart systemd-resolved`, "
    "and link /etc/resolv.conf to /run/systemd/resolve/resolv.conf)"
)


def _portCheck(port: int, proto: str, holder: str | None, daemonUp: bool) -> Check:
    """Judge who holds one of vesyncd's ports."""
    name = f"port {port}/{proto}"
    if holder is None:
        if port == PLUG_PORT:
            return Check(
                name,
                Level.FAIL,
                "nothing listens here, so plugs cannot connect",
                "start vesyncd (it listens on 17273/tcp)" if not daemonUp
                else "check vesyncd's listen settings and its log for bind errors",
            )
        return Check(
            name,
            Level.WARN,
            "nothing answers DNS here; plugs that look up server2.vesync.com cannot be sent to "
            "vesyncd by this host",
            "enable vesyncd's DNS responder, or provision plugs with `vesyncctl provision "
            "--server-ip` (no DNS needed), or add a DNS override on your router",
        )
    if "vesyncd" in holder:
        return Check(name, Level.OK, f"held by {holder}")
    if "systemd-resolve" in holder and port == DNS_PORT:
        return Check(name, Level.WARN if daemonUp else Level.FAIL, f"held by {holder}", _RESOLVED_FIX)
    return Check(
        name,
        Level.FAIL,
        f"held by {holder}, not vesyncd",
        f"stop that program or move it off port {port}, or bind vesyncd to another address",
    )


def _isLocal(address: str, local: Sequence[str]) -> bool:
    """Whether C{address} is one of this host's non-loopback addresses."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not parsed.is_loopback and any(
        _sameAddress(parsed, other) for other in local
    )


def _sameAddress(parsed: ipaddress.IPv4Address | ipaddress.IPv6Address, other: str) -> bool:
    try:
        return parsed == ipaddress.ip_address(other)
    except ValueError:
        return False


def _expected(status: dict[str, Any] | None, local: Sequence[str]) -> str:
    """Words for the address a good answer would be."""
    if status and isinstance(status.get("address"), str):
        return status["address"]
    shown = [a for a in local if not _isLoopback(a)]
    return " or ".join(shown) if shown else "this host's LAN address"


def _isLoopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _good(answers: Sequence[str], status: dict[str, Any] | None, local: Sequence[str]) -> bool:
    """Whether an answer list points at vesyncd: the advertised address, else a local one."""
    if status and isinstance(status.get("address"), str):
        return status["address"] in answers
    return any(_isLocal(a, local) for a in answers)


def _systemDnsCheck(
    answers: list[str] | None, error: str | None, status: dict[str, Any] | None, local: list[str]
) -> Check:
    """Judge what the system resolver says about server2.vesync.com."""
    name = "dns system resolver"
    if answers is None:
        return Check(
            name,
            Level.WARN,
            f"{VESYNC_NAME} does not resolve through this host's resolver ({error})",
            "fine if plugs are provisioned with --server-ip; otherwise plugs on this network "
            "cannot find any server",
        )
    shown = ", ".join(answers) or "nothing"
    if _good(answers, status, local):
        return Check(name, Level.OK, f"{VESYNC_NAME} -> {shown} (this host)")
    return Check(
        name,
        Level.WARN,
        f"{VESYNC_NAME} -> {shown}, not this host ({_expected(status, local)}); plugs that use "
        "the same DNS server reach the VeSync cloud, not vesyncd",
        "provision plugs with `vesyncctl provision --server-ip` (and --dns), or make your router's "
        f"DNS answer {VESYNC_NAME} with this host's address",
    )


def _responderCheck(
    answers: list[str] | None,
    error: str | None,
    where: tuple[str, int],
    status: dict[str, Any] | None,
    local: list[str],
) -> Check:
    """Judge what vesyncd's own responder says about server2.vesync.com."""
    name = "dns vesyncd responder"
    at = f"{where[0]}:{where[1]}"
    if answers is None:
        return Check(
            name,
            Level.FAIL,
            f"no answer from vesyncd's DNS responder at {at} ({error})",
            "start vesyncd" if status is None
            else "check that vesyncd's DNS responder is enabled and listens there",
        )
    shown = ", ".join(answers) or "nothing"
    if not answers:
        return Check(
            name, Level.FAIL, f"the responder at {at} has no address for {VESYNC_NAME}",
            "configure the address vesyncd advertises to plugs (this host's LAN address)",
        )
    if _good(answers, status, local):
        return Check(name, Level.OK, f"{VESYNC_NAME} -> {shown} (this host) via {at}")
    if all(_isLoopback(a) for a in answers):
        why = "a loopback address, which plugs cannot reach"
    else:
        why = f"not this host ({_expected(status, local)})"
    return Check(
        name,
        Level.FAIL,
        f"the responder at {at} answers {VESYNC_NAME} -> {shown}, {why}",
        "set the address vesyncd advertises to this host's LAN address",
    )


def _parseTime(text: Any) -> datetime | None:
    """Parse an ISO 8601 time (a trailing Z allowed); naive times are taken as UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ago(then: datetime, now: datetime) -> str:
    """A rough "how long ago" for humans."""
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "in the future (clock skew?)"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _plugChecks(plugs: list[dict[str, Any]], now: datetime) -> list[Check]:
    """One check per plug, or one WARN when none was ever seen."""
    if not plugs:
        return [
            Check(
                "plugs",
                Level.WARN,
                "no plug has connected yet",
                "set a plug up with `vesyncctl provision`, or point server2.vesync.com at this "
                "host; see `vesyncctl doctor` DNS checks above",
            )
        ]
    checks = []
    for plug in plugs:
        ident = str(plug.get("id") or "?")
        alias = plug.get("alias")
        name = f"plug {alias} ({ident})" if alias else f"plug {ident}"
        seen = _parseTime(plug.get("last_seen"))
        where = plug.get("address") or "an unknown address"
        firmware = plug.get("firmware") or "unknown"
        when = f"last seen {_ago(seen, now)} ({seen.isoformat()})" if seen else "never seen"
        detail = f"{when} from {where}, firmware {firmware}"
        if plug.get("online"):
            checks.append(Check(name, Level.OK, f"online; {detail}"))
        else:
            checks.append(
                Check(
                    name,
                    Level.WARN,
                    f"offline; {detail}",
                    "check the plug has power and Wi-Fi, and can reach this host on 17273/tcp; "
                    "power-cycle it",
                )
            )
    return checks


def _clockCheck(now: datetime, reference: str | None) -> Check:
    """Judge this host's clock: plausible year, and synchronised if the system knows."""
    name = "clock"
    shown = now.isoformat(timespec="seconds")
    if now.year < 2024:
        return Check(
            name,
            Level.FAIL,
            f"this host says it is {shown}; plugs take their time from this server, so their "
            "schedules and energy history would be wrong",
            "set the clock and enable NTP (`sudo timedatectl set-ntp true`, or install chrony)",
        )
    if reference:
        return Check(name, Level.OK, f"{shown}, synchronised ({reference})")
    return Check(
        name,
        Level.WARN,
        f"{shown}, but not known to be synchronised; plugs take their time from this server",
        "enable NTP (`sudo timedatectl set-ntp true`, or install chrony)",
    )


async def _ask(probe: str, call: Callable[[], Any]) -> tuple[Any, str | None]:
    """Run one probe; return (value, None) or (None, reason) if it raised or failed."""
    try:
        result = maybeDeferred(call)
        value = await result
    except Exception as e:
        reason = str(e) or type(e).__name__
        _log.debug("doctor probe {probe} failed: {reason}", probe=probe, reason=reason)
        return None, reason
    return value, None


async def _runDoctor(probes: DoctorProbes, name: str) -> list[Check]:
    checks: list[Check] = []

    status, statusError = await _ask("daemonStatus", probes.daemonStatus)
    daemonUp = isinstance(status, dict)
    if daemonUp:
        parts = [f"vesyncd {status.get('version', '')}".strip(), "is running"]
        if status.get("pid") is not None:
            parts.append(f"(pid {status['pid']})")
        if isinstance(status.get("uptime"), (int, float)):
            parts.append(f"for {int(status['uptime'])} s")
        checks.append(Check("daemon", Level.OK, " ".join(parts) + " and answers its control socket"))
    else:
        why = statusError or "no answer on its control socket"
        checks.append(
            Check(
                "daemon",
                Level.FAIL,
                f"vesyncd is not running or not reachable ({why})",
                "start it (`systemctl start vesyncd`, or `twistd -n vesyncd`) and check its log",
            )
        )

    for port, proto in ((DNS_PORT, "udp"), (DNS_PORT, "tcp"), (PLUG_PORT, "tcp")):
        holder, error = await _ask("portHolder", lambda: probes.portHolder(port, proto))
        if error is not None:
            checks.append(
                Check(f"port {port}/{proto}", Level.WARN, f"cannot tell who listens ({error})",
                      "run doctor as root to see other users' sockets")
            )
        else:
            checks.append(_portCheck(port, proto, holder, daemonUp))

    local, localError = await _ask("localAddresses", probes.localAddresses)
    local = list(local or [])

    answers, error = await _ask("systemResolve", lambda: probes.systemResolve(name))
    checks.append(_systemDnsCheck(answers, error, status if daemonUp else None, local))

    where = tuple(probes.responder)
    answers, error = await _ask(
        "responderResolve", lambda: probes.responderResolve(name, where[0], where[1])
    )
    checks.append(
        _responderCheck(answers, error, (where[0], where[1]), status if daemonUp else None, local)
    )

    clock, clockError = await _ask("clock", probes.clock)
    now = clock[0] if clock else datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)

    if daemonUp:
        plugs, error = await _ask("plugs", probes.plugs)
        if error is not None:
            checks.append(Check("plugs", Level.FAIL, f"cannot list plugs ({error})", None))
        else:
            checks.extend(_plugChecks(list(plugs or []), now))
    else:
        checks.append(Check("plugs", Level.WARN, "unknown: the daemon is not reachable",
                            "start vesyncd first"))

    if clockError is not None:
        checks.append(Check("clock", Level.WARN, f"cannot read the clock status ({clockError})",
                            "plugs take their time from this server; make sure it uses NTP"))
    else:
        checks.append(_clockCheck(now, clock[1]))
    return checks


def runDoctor(probes: DoctorProbes, *, name: str = VESYNC_NAME) -> Deferred[list[Check]]:
    """Run every check against C{probes}.

    Never fails: a probe that raises becomes a WARN/FAIL check with the reason.  Check names are
    stable: C{daemon}, C{port 53/udp}, C{port 53/tcp}, C{port 17273/tcp}, C{dns system resolver},
    C{dns vesyncd responder}, C{plug <alias> (<id>)} per plug (or C{plugs}), C{clock}.

    @param name: the host name to look up (plugs use C{server2.vesync.com}).
    """
    return Deferred.fromCoroutine(_runDoctor(probes, name))


_LABELS = {Level.OK: "OK  ", Level.WARN: "WARN", Level.FAIL: "FAIL"}


def formatChecks(checks: Sequence[Check]) -> str:
    """One line per check: C{OK  }/C{WARN}/C{FAIL}, name, message, and C{-- fix: ...} if any."""
    lines = []
    for check in checks:
        line = f"{_LABELS[check.level]} {check.name}: {check.message}"
        if check.fix and check.level is not Level.OK:
            line += f" -- fix: {check.fix}"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def checksToJSON(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """Checks as JSON-ready dicts: C{{"name": str, "level": "OK"|"WARN"|"FAIL", "message": str,
    "fix": str|None}}, always these four keys, in check order."""
    return [
        {"name": c.name, "level": c.level.value, "message": c.message, "fix": c.fix}
        for c in checks
    ]


def exitCode(checks: Sequence[Check]) -> int:
    """A process exit status for C{vesyncctl doctor}: 1 if any check failed, else 0."""
    return 1 if any(c.level is Level.FAIL for c in checks) else 0
