"""
The real probes behind C{vesyncctl doctor}: who listens on a port (from C{/proc}), name
resolution through the system and through vesyncd's responder, this host's addresses, and
whether the kernel's clock is synchronised.  The checks themselves are in L{vesyncd.doctor.checks}.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import socket
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from twisted.internet import defer
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThreadPool

from vesyncd.doctor.netchecks import DNS_PORT

# --- the real probes ---------------------------------------------------------------------------

_LISTEN_STATES = {"tcp": "0A", "udp": "07"}  # TCP_LISTEN; an unconnected UDP socket


def _hexAddress(text: str) -> str:
    """Decode the C{/proc/net} hex address of an IPv4 or IPv6 socket."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def listeningSockets(procRoot: str, port: int, proto: str) -> list[tuple[str, int]]:
    """(address, inode) of sockets bound/listening on C{port} from C{procRoot}/net/C{proto}{,6}."""
    found = []
    for table in (proto, proto + "6"):
        try:
            with open(os.path.join(procRoot, "net", table)) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            address, hexPort = fields[1].rsplit(":", 1)
            if int(hexPort, 16) != port or fields[3] != _LISTEN_STATES[proto]:
                continue
            found.append((_hexAddress(address), int(fields[9])))
    return found


def socketOwners(procRoot: str, inodes: set[int]) -> dict[int, int]:
    """Map socket inodes to the pid of a process holding them (readable processes only)."""
    owners: dict[int, int] = {}
    try:
        pids = [int(p) for p in os.listdir(procRoot) if p.isdigit()]
    except OSError:
        return owners
    targets = {f"socket:[{inode}]": inode for inode in inodes}
    for pid in pids:
        fdDir = os.path.join(procRoot, str(pid), "fd")
        try:
            fds = os.listdir(fdDir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fdDir, fd))
            except OSError:
                continue
            inode = targets.get(target)
            if inode is not None:
                owners.setdefault(inode, pid)
    return owners


def processName(procRoot: str, pid: int) -> str:
    """C{"vesyncd"} if the command line mentions it, else the process's name.

    The name is C{comm}, or the program file's base name when C{comm} is its 15-character
    truncation (C{systemd-resolve} -> C{systemd-resolved}).
    """
    base = os.path.join(procRoot, str(pid))
    cmdline = b""
    try:
        with open(os.path.join(base, "cmdline"), "rb") as f:
            cmdline = f.read()
    except OSError:
        pass
    if b"vesyncd" in cmdline:
        return "vesyncd"
    try:
        with open(os.path.join(base, "comm")) as f:
            comm = f.read().strip()
    except OSError:
        comm = ""
    program = os.path.basename(cmdline.split(b"\0", 1)[0].decode("utf-8", "replace"))
    if comm and program.startswith(comm) and len(program) > len(comm):
        return program
    return comm or program or "?"


def localAddressesFromProc(procRoot: str) -> list[str]:
    """This host's IPv4 (C{net/fib_trie} LOCAL entries) and IPv6 (C{net/if_inet6}) addresses."""
    found: list[str] = []
    try:
        with open(os.path.join(procRoot, "net", "fib_trie")) as f:
            last = None
            for line in f:
                stripped = line.strip()
                if stripped.startswith("|--"):
                    last = stripped[3:].strip()
                elif "/32 host LOCAL" in stripped and last and last not in found:
                    found.append(last)
    except OSError:
        pass
    try:
        with open(os.path.join(procRoot, "net", "if_inet6")) as f:
            for line in f:
                fields = line.split()
                if fields and len(fields[0]) == 32:
                    address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
                    if address not in found:
                        found.append(address)
    except OSError:
        pass
    return found


def _kernelSynchronised() -> bool | None:
    """The kernel NTP status (what timedatectl's NTPSynchronized reads), None if unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes=0 reads only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != 5  # TIME_ERROR: the clock is not synchronised


class _DNSQuery(DatagramProtocol):
    """Send one packed DNS query and fire with the first reply datagram."""

    def __init__(self, packet: bytes, host: str, port: int, done: Deferred[bytes]) -> None:
        self._packet = packet
        self._where = (host, port)
        self._done = done

    def startProtocol(self) -> None:
        """Connect the socket to the responder and send the query."""
        self.transport.connect(*self._where)
        self.transport.write(self._packet)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """The first datagram is the answer."""
        if not self._done.called:
            self._done.callback(data)

    def connectionRefused(self) -> None:
        """ICMP port unreachable: nothing listens at the responder address."""
        if not self._done.called:
            self._done.errback(ConnectionRefusedError("port unreachable: nothing listens there"))


class SystemProbes:
    """The real L{DoctorProbes}: this host's C{/proc}, resolver and clock, plus the daemon.

    C{responderResolve} only ever queries the configured responder address, and only if that is
    a loopback address or one of this host's own addresses, so doctor sends no DNS packets to
    other machines itself (C{systemResolve} does use the system resolver, as any program would).
    """

    def __init__(
        self,
        reactor: Any,
        responder: tuple[str, int] = ("127.0.0.1", DNS_PORT),
        *,
        daemonStatus: Callable[[], Deferred[dict[str, Any] | None] | Awaitable[Any] | Any],
        plugs: Callable[[], Deferred[list[dict[str, Any]]] | Awaitable[Any] | Any],
        pending: Callable[[], Deferred[Any] | Awaitable[Any] | Any] | None = None,
        procRoot: str = "/proc",
        dnsTimeout: float = 3.0,
    ) -> None:
        """
        @param responder: (host, port) of vesyncd's DNS responder.
        @param daemonStatus: returns the daemon status dict, None, or a Deferred of either
            (fails with the reason when unreachable).
        @param plugs: returns the daemon's plug list (see L{DoctorProbes.plugs}) or a Deferred.
        @param pending: returns the control port's list of plugs held for approval
            (C{{"pending": [...], "total": N}}) or a Deferred; None when not wired.
        @param procRoot: where C{/proc} is (tests point it at a fake tree).
        @param dnsTimeout: seconds to wait for the responder.
        """
        self.reactor = reactor
        self.responder = (responder[0], int(responder[1]))
        self._daemonStatus = daemonStatus
        self._plugs = plugs
        self._pending = pending
        self.procRoot = procRoot
        self.dnsTimeout = dnsTimeout

    def portHolder(self, port: int, proto: str) -> str | None:
        """Read C{/proc/net} and C{/proc/*/fd}; see L{DoctorProbes.portHolder}."""
        sockets = listeningSockets(self.procRoot, port, proto)
        if not sockets:
            return None
        owners = socketOwners(self.procRoot, {inode for _, inode in sockets})
        described: list[str] = []
        for address, inode in sockets:
            pid = owners.get(inode)
            who = (
                f"{processName(self.procRoot, pid)} (pid {pid})"
                if pid is not None
                else "a process of another user (run as root to name it)"
            )
            text = f"{who} on {address}"
            if text not in described:
                described.append(text)
        return "; ".join(described)

    def systemResolve(self, name: str) -> Deferred[list[str]]:
        """C{getaddrinfo} in a thread; distinct addresses in the resolver's order."""

        def lookup() -> list[str]:
            seen: list[str] = []
            for *_, sockaddr in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP):
                if sockaddr[0] not in seen:
                    seen.append(sockaddr[0])
            return seen

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), lookup)

    def localAddresses(self) -> list[str]:
        """See L{localAddressesFromProc}."""
        return localAddressesFromProc(self.procRoot)

    def responderResolve(self, name: str, host: str, port: int) -> Deferred[list[str]]:
        """Ask the responder for A and AAAA of C{name} over UDP (dnslib), within C{dnsTimeout}.

        @raise ValueError: C{host} is neither loopback nor the configured responder on this host.
        """
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"responder address {host!r} must be an IP address") from None
        own = (host, port) == self.responder and (
            parsed.is_loopback or host in self.localAddresses()
        )
        if not (parsed.is_loopback or own):
            raise ValueError(f"refusing to query {host}: not loopback or this host's responder")
        from dnslib import QTYPE, DNSRecord

        async def ask() -> list[str]:
            answers: list[str] = []
            for qtype in ("A", "AAAA"):
                query = DNSRecord.question(name, qtype)
                done: Deferred[bytes] = Deferred()
                protocol = _DNSQuery(query.pack(), host, port, done)
                listening = self.reactor.listenUDP(0, protocol, interface=host)
                done.addTimeout(self.dnsTimeout, self.reactor)
                try:
                    data = await done
                except defer.TimeoutError:
                    raise TimeoutError(f"no reply within {self.dnsTimeout:g} s") from None
                finally:
                    await maybeDeferred(listening.stopListening)
                reply = DNSRecord.parse(data)
                if reply.header.id != query.header.id:
                    raise ValueError("the responder answered with a wrong query id")
                for record in reply.rr:
                    if record.rtype in (QTYPE.A, QTYPE.AAAA):
                        answers.append(str(record.rdata))
            return answers

        return Deferred.fromCoroutine(ask())

    def daemonStatus(self) -> Deferred[dict[str, Any] | None]:
        """The injected daemon status callable."""
        return maybeDeferred(self._daemonStatus)

    def plugs(self) -> Deferred[list[dict[str, Any]]]:
        """The injected plug list callable."""
        return maybeDeferred(self._plugs)

    def pending(self) -> Deferred[Any]:
        """The injected list of plugs held for approval; None when none was injected."""
        if self._pending is None:
            return succeed(None)
        return maybeDeferred(self._pending)

    def clock(self) -> tuple[datetime, str | None]:
        """Now (UTC) and the kernel's NTP status, or systemd-timesyncd's flag file."""
        now = datetime.now(timezone.utc)
        synced = _kernelSynchronised()
        if synced:
            return now, "kernel NTP status: synchronised"
        if synced is None and os.path.exists("/run/systemd/timesync/synchronized"):
            return now, "systemd-timesyncd: synchronised"
        return now, None
