"""
The doctor's network checks: who holds vesyncd's ports, and what C{server2.vesync.com} resolves
to through the system resolver and through vesyncd's own responder.  Each takes what the probes
found and returns one L{Check}; none probes anything itself.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Sequence

from vesyncd.doctor.report import Check, Level

#: The name plugs look up to find the cloud.
VESYNC_NAME = "server2.vesync.com"
#: Ports vesyncd needs: DNS for plugs that look the cloud up, WebSocket for plugs.
DNS_PORT = 53
PLUG_PORT = 17273

_RESOLVED_FIX = (
    "systemd-resolved's stub listener holds 127.0.0.53:53, so vesyncd cannot bind port 53 on all "
    "addresses: bind vesyncd's DNS responder to this host's LAN address only, or turn the stub off "
    "(DNSStubListener=no in /etc/systemd/resolved.conf, `sudo systemctl restart systemd-resolved`, "
    "and link /etc/resolv.conf to /run/systemd/resolve/resolv.conf)"
)


def portCheck(port: int, proto: str, holder: str | None, daemonUp: bool) -> Check:
    """Judge who holds one of vesyncd's ports."""
    name = f"port {port}/{proto}"
    if holder is None:
        if port == PLUG_PORT:
            return Check(
                name,
                Level.FAIL,
                "nothing listens here, so plugs cannot connect",
                "start vesyncd (`systemctl start vesyncd`; it listens on 17273/tcp)" if not daemonUp
                else "check vesyncd's --plugs listen setting and its log for bind errors",
            )
        return Check(
            name,
            Level.WARN,
            "nothing answers DNS here; plugs that look up server2.vesync.com cannot be sent to "
            "vesyncd by this host",
            "enable vesyncd's DNS responder (no --no-dns; --dns-interface sets its address), or provision plugs with `vesyncctl provision "
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
        f"stop that program or move it off port {port}, or bind vesyncd to another address "
        "(--dns-interface for DNS, --plugs for plugs)",
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


def systemDnsCheck(
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


def responderCheck(
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
            "start vesyncd (`systemctl start vesyncd`)" if status is None
            else "check that vesyncd's DNS responder is enabled (no --no-dns) and listens there "
            "(--dns-interface, --dns-port)",
        )
    shown = ", ".join(answers) or "nothing"
    if not answers:
        return Check(
            name, Level.FAIL, f"the responder at {at} has no address for {VESYNC_NAME}",
            "set --address to the address vesyncd advertises to plugs (this host's LAN address)",
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
        "set the address vesyncd advertises to this host's LAN address with --address",
    )
