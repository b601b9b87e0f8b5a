"""
Spreading plugs over the nodes of a cluster through DNS: the order in which the live nodes' addresses
are answered to one asker.

A plug takes the first A record of C{server2.vesync.com} and falls back to the next ones.  L{NodeSpreader}
orders the live nodes' addresses by rendezvous (highest random weight) hashing of the asker's address and
each node's address: every node's responder gives one asker the same order (the hash is a keyed BLAKE2b,
not Python's per-process C{hash}), a plug lands on the same node after any restart, and when a node joins
or leaves only the plugs whose first choice it is (about 1/N of them) move.  Rotating answers would
instead move plugs at every look-up and spread one plug's reconnects over every node.

The addresses come from a callable (the cluster's view of live nodes), so this package imports nothing of
the core; what it returns is hostile-in-principle data from a shared database: every entry is checked
(an IPv4 address, optionally with C{:PORT}, which is dropped: DNS carries no port), duplicates dropped,
and at most L{MAX_NODE_ANSWERS} are answered.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Callable, Iterable, Sequence

from twisted.logger import Logger

log = Logger()

#: Addresses answered at most (16 A records keep a reply far below 512 bytes).
MAX_NODE_ANSWERS = 16
#: Entries of the per-asker order cache before it is emptied.
ORDER_CACHE_SIZE = 4096

#: Returns the live nodes' plug addresses (C{"192.0.2.10"} or C{"192.0.2.10:17273"}).
NodeAddresses = Callable[[], Sequence[str]]


def nodeIPv4(entry: object) -> str | None:
    """The IPv4 address of one advertised node address (C{IP} or C{IP:PORT}), or None when it is not one."""
    if not isinstance(entry, str) or len(entry) > 64:
        return None
    text = entry.strip()
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return None
    return str(ip)


def cleanAddresses(entries: Iterable[object]) -> tuple[str, ...]:
    """The valid, distinct IPv4 addresses of C{entries}, sorted (so the order given does not matter)."""
    seen: set[str] = set()
    for entry in entries:
        ip = nodeIPv4(entry)
        if ip is not None:
            seen.add(ip)
    return tuple(sorted(seen, key=lambda a: ipaddress.IPv4Address(a).packed))


def weight(asker: str, node: str) -> bytes:
    """The rendezvous weight of C{node} for C{asker}: stable across processes and hosts."""
    return hashlib.blake2b(f"{asker}|{node}".encode("ascii", "replace"), digest_size=8,
                           person=b"vesyncd-dns").digest()


def rendezvousOrder(asker: str, addresses: Sequence[str]) -> tuple[str, ...]:
    """C{addresses} ordered for C{asker}: highest weight first."""
    return tuple(sorted(addresses, key=lambda node: weight(asker, node), reverse=True))


class NodeSpreader:
    """The addresses to answer one asker with, from the cluster's live nodes.

    C{order(asker)} is empty when there are no (valid) live node addresses, and the responder then answers
    with this host's own address as a single node does.  A failing callable counts as no node (logged once
    per failure streak), so a database hiccup never stops DNS.
    """

    def __init__(self, nodeAddresses: NodeAddresses, maximum: int = MAX_NODE_ANSWERS) -> None:
        self.nodeAddresses = nodeAddresses
        self.maximum = maximum
        self._orders: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self._failing = False

    def live(self) -> tuple[str, ...]:
        """The checked, distinct live addresses (empty when the callable fails)."""
        try:
            entries = self.nodeAddresses() or ()
        except Exception:
            if not self._failing:
                log.failure("DNS: the cluster's live node addresses could not be read; answering with this node")
            self._failing = True
            return ()
        self._failing = False
        return cleanAddresses(list(entries)[: self.maximum * 4])

    def order(self, asker: str) -> tuple[str, ...]:
        """The live nodes' addresses for C{asker}, its own node first, at most C{maximum}."""
        live = self.live()
        if not live:
            return ()
        key = (asker, live)
        found = self._orders.get(key)
        if found is None:
            if len(self._orders) >= ORDER_CACHE_SIZE:
                self._orders.clear()
            found = self._orders[key] = rendezvousOrder(asker, live)[: self.maximum]
        return found
