"""Shared helpers of the DNS responder's tests: query packets, a core on a fake clock, and a
datagram transport that records what is sent."""

from __future__ import annotations

from dnslib import EDNS0, DNSRecord
from twisted.internet import task

from vesyncd.dns.answers import DNSCore

#: A querier on the LAN.
LAN = ("192.168.1.50", 40000)


def makeCore(address: str | None = "192.168.1.2", **kw) -> DNSCore:
    """A core answering with C{address}, with a fake clock."""
    kw.setdefault("intercept", ["server2.vesync.com"])
    kw.setdefault("allow", None)
    return DNSCore(answerAddress=lambda peer, local: address, clock=task.Clock(), **kw)


def query(name: str = "server2.vesync.com", qtype: str = "A", qid: int = 0x1234,
          edns: bool = False, do: bool = False, rd: bool = True,
          payload: int | None = None) -> bytes:
    """A query packet built with dnslib; with C{edns} or a C{payload}, an EDNS record advertising
    that UDP size (4096 by default) and the DO bit if C{do}."""
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    if edns or payload is not None:
        q.add_ar(EDNS0(flags="do" if do else "", udp_len=4096 if payload is None else payload))
    return bytes(q.pack())


class FakeDatagramTransport:
    """Records datagrams written, as (data, addr)."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Record one datagram."""
        self.written.append((data, addr))
