"""Tests for vesyncd.doctor.probes: the real probes' /proc parsing, clock reading and responder
query (loopback only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial import unittest

from vesyncd.doctor import probes as DP

LAN = "192.168.1.10"

_UDP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 1234 2 0000000000000000 0
 2: 0A01A8C0:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5678 2 0000000000000000 0
 3: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9999 2 0000000000000000 0
"""
_TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
 0: 00000000000000000000000000000000:4379 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4321 1 0000000000000000 100 0 0 10 0
 1: 00000000000000000000000001000000:4379 00000000000000000000000001000000:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4322 1 0000000000000000 100 0 0 10 0
"""
_FIB = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.168.1.0
        /24 link UNICAST
     |-- 192.168.1.10
        /32 host LOCAL
Local:
     |-- 192.168.1.10
        /32 host LOCAL
"""
_IF_INET6 = "00000000000000000000000000000001 01 80 10 80       lo\n"


def fakeProc(root: Path) -> str:
    """A /proc tree: resolved (612) and vesyncd (42) hold sockets 1234 and 5678/4321."""
    (root / "net").mkdir(parents=True)
    (root / "net" / "udp").write_text(_UDP)
    (root / "net" / "tcp6").write_text(_TCP6)
    (root / "net" / "fib_trie").write_text(_FIB)
    (root / "net" / "if_inet6").write_text(_IF_INET6)
    for pid, comm, cmdline, inodes in (
        (612, "systemd-resolve", b"/lib/systemd/systemd-resolved\0", [1234]),
        (42, "twistd", b"/usr/bin/python3\0/usr/bin/twistd\0-n\0vesyncd\0", [5678, 4321]),
        (77, "other", b"other\0", []),
    ):
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
        (root / str(pid) / "cmdline").write_bytes(cmdline)
        for n, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", root / str(pid) / "fd" / str(n + 3))
        os.symlink("/dev/null", root / str(pid) / "fd" / "0")
    return str(root)


def test_systemPortHolder(tmp_path: Path) -> None:
    """portHolder names each listener's process and address from /proc (IPv4 and IPv6); an
    established socket on the same port is ignored; a truncated comm gets its full name."""
    probes = DP.SystemProbes(reactor, daemonStatus=lambda: None, plugs=lambda: [], procRoot=fakeProc(tmp_path))
    assert probes.portHolder(53, "udp") == (
        "systemd-resolved (pid 612) on 127.0.0.53; vesyncd (pid 42) on 192.168.1.10"
    )
    assert probes.portHolder(17273, "tcp") == "vesyncd (pid 42) on ::"
    assert probes.portHolder(53, "tcp") is None
    assert probes.portHolder(17273, "udp") is None


def test_systemPortHolderUnknownOwner(tmp_path: Path) -> None:
    """A socket whose owner cannot be read is described as another user's."""
    probes = DP.SystemProbes(reactor, daemonStatus=lambda: None, plugs=lambda: [], procRoot=fakeProc(tmp_path))
    assert probes.portHolder(8080, "udp") == "a process of another user (run as root to name it) on 127.0.0.1"


def test_localAddressesFromProc(tmp_path: Path) -> None:
    """LOCAL fib_trie entries and if_inet6 addresses, each once."""
    assert DP.localAddressesFromProc(fakeProc(tmp_path)) == ["127.0.0.1", "192.168.1.10", "::1"]


def test_systemClockShape() -> None:
    """The real clock probe returns an aware datetime and a string or None."""
    probes = DP.SystemProbes(reactor, daemonStatus=lambda: None, plugs=lambda: [])
    now, reference = probes.clock()
    assert now.tzinfo is not None and (reference is None or isinstance(reference, str))


def test_responderRefusesForeignAddress() -> None:
    """The real responder probe refuses any non-loopback address that is not its own responder."""
    probes = DP.SystemProbes(reactor, ("127.0.0.1", 53), daemonStatus=lambda: None, plugs=lambda: [])
    with pytest.raises(ValueError, match="refusing"):
        probes.responderResolve("server2.vesync.com", "192.0.2.1", 53)


class _FakeResponder(DatagramProtocol):
    """Answers every A query with 192.168.1.10 and every AAAA query with nothing."""

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        from dnslib import QTYPE, RR, A, DNSRecord

        query = DNSRecord.parse(data)
        reply = query.reply()
        if query.q.qtype == QTYPE.A:
            reply.add_answer(RR(str(query.q.qname), QTYPE.A, rdata=A(LAN), ttl=60))
        self.transport.write(reply.pack(), addr)


class SystemResponderTests(unittest.TestCase):
    """SystemProbes.responderResolve against a dnslib responder on 127.0.0.1, port 0."""

    def test_resolve(self) -> Deferred[None]:
        """The A answer of the loopback responder comes back."""
        port = reactor.listenUDP(0, _FakeResponder(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        where = ("127.0.0.1", port.getHost().port)
        probes = DP.SystemProbes(reactor, where, daemonStatus=lambda: None, plugs=lambda: [])

        async def go() -> None:
            answers = await probes.responderResolve("server2.vesync.com", *where)
            self.assertEqual(answers, [LAN])

        return Deferred.fromCoroutine(go())

    def test_silentResponderTimesOut(self) -> Deferred[None]:
        """A responder that never answers makes the probe fail after dnsTimeout."""
        port = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        where = ("127.0.0.1", port.getHost().port)
        probes = DP.SystemProbes(reactor, where, daemonStatus=lambda: None, plugs=lambda: [], dnsTimeout=0.2)

        async def go() -> None:
            with self.assertRaises(TimeoutError) as info:
                await probes.responderResolve("server2.vesync.com", *where)
            self.assertIn("0.2 s", str(info.exception))

        return Deferred.fromCoroutine(go())
