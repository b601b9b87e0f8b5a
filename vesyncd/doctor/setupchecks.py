"""
The doctor's checks that read what the running daemon says about itself (C{vesyncctl info}): where
its plug server and DNS responder listen and the address it advertises to plugs.

With them the doctor judges the daemon as it runs, not as a default install would: a responder on
5353 is not "nothing answers DNS", and a daemon whose listeners are all on loopback (the demo of
C{make run}) is said to be a demo, fine for trying, rather than a broken install.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Sequence

from vesyncd.addresses import splitHostPort
from vesyncd.doctor.netchecks import DNS_PORT, PLUG_PORT, VESYNC_NAME, portCheck
from vesyncd.doctor.report import Check, Level

#: What the doctor says about a daemon listening on loopback only.
DEMO = "demo: loopback only, fine for trying"
#: How to take a loopback-only daemon to real plugs.
GO_LIVE = ("for plugs on your LAN, listen there and advertise this host's LAN address "
           "(--plugs tcp:17273, --address LAN-IP, --dns-interface LAN-IP --dns-port 53)")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _hostPort(text: Any) -> tuple[str, int] | None:
    """C{("127.0.0.1", 17273)} from a listener as C{info} shows it (C{127.0.0.1:17273},
    C{[::1]:17273}); None for a UNIX path or anything else."""
    if not isinstance(text, str) or ":" not in text:
        return None
    try:
        host, port = splitHostPort(text, 0)
    except ValueError:
        return None
    return host, port


def plugListener(status: dict[str, Any] | None) -> tuple[str, int] | None:
    """Where the daemon's plug server listens, from its status, or None when it does not say."""
    listeners = (status or {}).get("listeners")
    return _hostPort(listeners.get("plugs")) if isinstance(listeners, dict) else None


def plugPort(status: dict[str, Any] | None) -> int:
    """The TCP port plugs connect to: the daemon's, else the default 17273."""
    where = plugListener(status)
    return where[1] if where else PLUG_PORT


def dnsListen(status: dict[str, Any] | None) -> tuple[str, int] | None:
    """Where the daemon's DNS responder answers (a wildcard address as loopback, so this host can
    ask it), or None when the daemon does not say or runs none."""
    listen = (status or {}).get("dns_listen")
    if not isinstance(listen, (list, tuple)) or len(listen) != 2:
        return None
    host, port = str(listen[0]), listen[1]
    if not isinstance(port, int):
        return None
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return host, port


def dnsOff(status: dict[str, Any] | None) -> bool:
    """Whether the daemon says it runs no DNS responder (C{--no-dns})."""
    return isinstance(status, dict) and "dns_listen" in status and not status["dns_listen"]


def loopbackOnly(status: dict[str, Any] | None) -> bool:
    """Whether the daemon says it listens for plugs, answers DNS and advertises on loopback only."""
    plugs = plugListener(status)
    if status is None or plugs is None or not _loopback(plugs[0]):
        return False
    address = status.get("address")
    if isinstance(address, str) and address and not _loopback(address):
        return False
    dns = dnsListen(status)
    return dnsOff(status) or (dns is not None and _loopback(dns[0]))


def setupCheck(status: dict[str, Any] | None) -> Check | None:
    """One OK line that says this is a loopback-only demo, or None for any other daemon."""
    if not loopbackOnly(status):
        return None
    where = plugListener(status)
    assert where is not None
    return Check("setup", Level.OK, f"{DEMO} (plug server on {where[0]}:{where[1]}); {GO_LIVE}")


def dnsPortCheck(proto: str, holder: str | None, status: dict[str, Any] | None, daemonUp: bool) -> Check:
    """Judge who holds port 53/C{proto}, knowing where the daemon's own responder answers."""
    name = f"port {DNS_PORT}/{proto}"
    if holder is not None and "vesyncd" in holder:
        return portCheck(DNS_PORT, proto, holder, daemonUp)
    dns = dnsListen(status)
    if loopbackOnly(status):
        where = f"vesyncd's DNS responder answers on {dns[0]}:{dns[1]}" if dns else "vesyncd runs no DNS responder"
        held = f"held by {holder}, " if holder else ""
        return Check(name, Level.OK, f"{held}not used by the demo: {where}")
    if holder is None and dnsOff(status):
        return Check(name, Level.WARN,
                     "nothing answers DNS here, and vesyncd's DNS responder is off (--no-dns)",
                     "fine when your router's DNS or `vesyncctl provision --server-ip` sends plugs here; "
                     "otherwise start vesyncd without --no-dns")
    if holder is None and dns is not None and dns[1] != DNS_PORT:
        return Check(name, Level.WARN,
                     f"nothing answers DNS on port {DNS_PORT}, where plugs ask; vesyncd's DNS responder "
                     f"answers on {dns[0]}:{dns[1]}",
                     f"run it on port {DNS_PORT} with --dns-port 53 (root or CAP_NET_BIND_SERVICE), or "
                     "provision plugs with `vesyncctl provision --server-ip`, or add a DNS override on your router")
    return portCheck(DNS_PORT, proto, holder, daemonUp)


def plugPortCheck(holder: str | None, status: dict[str, Any] | None, daemonUp: bool) -> Check:
    """Judge who holds the daemon's plug port; a daemon that advertises a LAN address while its plug
    server listens on loopback only cannot be reached by any plug."""
    port = plugPort(status)
    check = portCheck(port, "tcp", holder, daemonUp)
    where = plugListener(status)
    if check.level is Level.OK and where is not None and _loopback(where[0]) and not loopbackOnly(status):
        address = (status or {}).get("address")
        return Check(check.name, Level.FAIL,
                     f"vesyncd's plug server listens on {where[0]} only, while it tells plugs to connect to "
                     f"{address}; plugs on your LAN cannot reach it",
                     f"listen on the LAN with --plugs tcp:{port}")
    return check


def systemDnsDemoCheck(answers: list[str] | None, error: str | None) -> Check:
    """What the system resolver says, for a loopback-only demo: never a problem there."""
    found = f"-> {', '.join(answers) or 'nothing'}" if answers is not None else f"does not resolve ({error})"
    return Check("dns system resolver", Level.OK,
                 f"{VESYNC_NAME} {found}; not used by the demo: its plugs connect directly")


def addressCheck(status: dict[str, Any] | None, local: Sequence[str]) -> Check | None:
    """Judge the address the daemon advertises to plugs (DNS answers, provisioning); None when the
    daemon does not say."""
    if not isinstance(status, dict) or "address" not in status:
        return None
    name = "advertised address"
    address = status.get("address")
    lan = [a for a in local if not _loopback(a)]
    suggestion = f" (this host has {', '.join(lan[:4])})" if lan else ""
    if not isinstance(address, str) or not address:
        return Check(name, Level.FAIL, "vesyncd does not know the LAN address to give plugs",
                     f"set it with --address LAN-IP{suggestion}")
    if _loopback(address):
        if loopbackOnly(status):
            return Check(name, Level.OK, f"{address}, loopback: fine for the demo")
        return Check(name, Level.FAIL,
                     f"vesyncd tells plugs to use {address}, a loopback address they cannot reach",
                     f"set this host's LAN address with --address LAN-IP{suggestion}")
    if local and address not in local:
        return Check(name, Level.WARN, f"{address} is not an address of this host",
                     f"set this host's LAN address with --address LAN-IP{suggestion}")
    return Check(name, Level.OK, f"{address}: vesyncd's DNS answers and provisioning send plugs here")
