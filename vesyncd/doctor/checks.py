"""
C{vesyncctl doctor}: find out why plugs do not reach vesyncd.

L{runDoctor} asks a L{DoctorProbes} object about this host and the daemon and turns the answers
into L{Check}s (OK / WARN / FAIL, a message and a fix).  All probing goes through that object, so
the logic runs in memory in tests; L{SystemProbes} is the real implementation (C{/proc}, the
system resolver, a DNS query to vesyncd's own responder, and callables the CLI wires to the
daemon's control interface).

Checks, in order: the daemon, whether it is a loopback-only demo, who holds ports 53/udp, 53/tcp and its
plug port (L{vesyncd.doctor.setupchecks} reads where the daemon says it listens), what
C{server2.vesync.com} resolves to through the system resolver and through vesyncd's responder
(L{vesyncd.doctor.netchecks}), which plugs were seen and whether their logins disagree, plugs
waiting for approval (L{vesyncd.doctor.plugchecks}), the database, the MQTT broker and the cluster's
nodes as the daemon reports them (L{vesyncd.doctor.clusterchecks}), and whether this host's clock is sane.
Findings are shown by L{vesyncd.doctor.report}.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Protocol as TypingProtocol, runtime_checkable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from vesyncd.doctor.clusterchecks import clusterChecks
from vesyncd.doctor.netchecks import (
    DNS_PORT, PLUG_PORT, VESYNC_NAME, responderCheck, systemDnsCheck,
)
from vesyncd.doctor.plugchecks import pendingCheck, plugChecks, slugCollisionCheck
from vesyncd.doctor.report import Check, Level, checksToJSON, exitCode, formatChecks
from vesyncd.doctor.setupchecks import (addressCheck, dnsListen, dnsOff, dnsPortCheck, loopbackOnly, plugPort,
                                        plugPortCheck, setupCheck, systemDnsDemoCheck)

__all__ = [
    "DNS_PORT", "PLUG_PORT", "VESYNC_NAME", "Check", "DoctorProbes", "Level", "checksToJSON",
    "exitCode", "formatChecks", "runDoctor",
]

_log = Logger(namespace="vesyncd.doctor.checks")


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

    def pending(self) -> Deferred[Any] | Any:
        """Plugs held until approved (C{--new-plugs hold}): the control port's
        C{{"pending": [plug JSON...], "total": N}}, or None when that is not known."""

    def clock(self) -> tuple[datetime, str | None]:
        """This host's time (aware) and, if the system says it is synchronised, how (for
        example C{"kernel NTP status: synchronised"}); None when not synchronised or unknown."""



def clockCheck(now: datetime, reference: str | None) -> Check:
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

    # What the daemon says about itself (where it listens, what it advertises) beats the defaults.
    known = status if daemonUp else None
    demo = setupCheck(known)
    if demo is not None:
        checks.append(demo)
    for port, proto in ((DNS_PORT, "udp"), (DNS_PORT, "tcp"), (plugPort(known), "tcp")):
        holder, error = await _ask("portHolder", lambda: probes.portHolder(port, proto))
        if error is not None:
            checks.append(
                Check(f"port {port}/{proto}", Level.WARN, f"cannot tell who listens ({error})",
                      "run `sudo vesyncctl doctor` to see other users' sockets")
            )
        elif port == DNS_PORT:
            checks.append(dnsPortCheck(proto, holder, known, daemonUp))
        else:
            checks.append(plugPortCheck(holder, known, daemonUp))

    local, localError = await _ask("localAddresses", probes.localAddresses)
    local = list(local or [])

    answers, error = await _ask("systemResolve", lambda: probes.systemResolve(name))
    if loopbackOnly(known):
        checks.append(systemDnsDemoCheck(answers, error))
    else:
        checks.append(systemDnsCheck(answers, error, known, local))

    where = dnsListen(known) or tuple(probes.responder)
    if dnsOff(known):
        checks.append(Check("dns vesyncd responder", Level.WARN, "vesyncd's DNS responder is off (--no-dns)",
                            "fine when your router's DNS or `vesyncctl provision --server-ip` sends plugs here"))
    else:
        answers, error = await _ask(
            "responderResolve", lambda: probes.responderResolve(name, where[0], where[1])
        )
        checks.append(responderCheck(answers, error, (where[0], where[1]), known, local))
    advertised = addressCheck(known, local)
    if advertised is not None:
        checks.append(advertised)

    clock, clockError = await _ask("clock", probes.clock)
    now = clock[0] if clock else datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)

    if daemonUp:
        plugs, error = await _ask("plugs", probes.plugs)
        if error is not None:
            checks.append(Check("plugs", Level.FAIL, f"cannot list plugs ({error})",
                                "check the daemon's log; `vesyncctl list` shows the same error"))
        else:
            checks.extend(plugChecks(list(plugs or []), now))
        pending, error = await _ask("pending", probes.pending)
        if error is not None:
            checks.append(Check("pending plugs", Level.WARN,
                                f"cannot list plugs waiting for approval ({error})",
                                "run `vesyncctl pending`"))
        else:
            held = pendingCheck(pending)
            if held is not None:
                checks.append(held)
        collisions = slugCollisionCheck(status)
        if collisions is not None:
            checks.append(collisions)
        checks.extend(clusterChecks(status))
    else:
        checks.append(Check("plugs", Level.WARN, "unknown: the daemon is not reachable",
                            "start vesyncd first (`systemctl start vesyncd`)"))

    if clockError is not None:
        checks.append(Check("clock", Level.WARN, f"cannot read the clock status ({clockError})",
                            "plugs take their time from this server; make sure it uses NTP "
                            "(`sudo timedatectl set-ntp true`)"))
    else:
        checks.append(clockCheck(now, clock[1]))
    return checks


def runDoctor(probes: DoctorProbes, *, name: str = VESYNC_NAME) -> Deferred[list[Check]]:
    """Run every check against C{probes}.

    Never fails: a probe that raises becomes a WARN/FAIL check with the reason.  Check names are
    stable: C{daemon}, C{setup} (only for a loopback-only demo), C{port 53/udp}, C{port 53/tcp},
    C{port 17273/tcp} (the daemon's plug port), C{dns system resolver}, C{dns vesyncd responder},
    C{advertised address} (when the daemon says), C{plug <alias> (<id>)} per plug (or C{plugs}), each followed by
    C{plug <alias> (<id>) logins} when its logins disagree, C{pending plugs} when some wait for
    approval, C{mqtt topic names} when aliases cannot be MQTT topics, C{database}, C{mqtt broker} and
    C{cluster nodes} when the daemon reports them (L{vesyncd.doctor.clusterchecks}), C{clock}.

    @param name: the host name to look up (plugs use C{server2.vesync.com}).
    """
    return Deferred.fromCoroutine(_runDoctor(probes, name))
