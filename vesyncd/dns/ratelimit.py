"""
Response-rate limiting of UDP answers per source network, as BIND's and Unbound's RRL do.

A UDP query's source address can be forged, so a responder that answers every query can be
used to flood a victim with answers it never asked for.  L{ResponseRateLimiter} gives each
source network (an IPv4 /24, an IPv6 /56: one household or one attacker's forged range) a
budget of answers per second.  Over budget, answers are dropped, except every C{slip}-th, which
is replaced by an empty TC reply: no bigger than the query, and a real client that receives it
retries over TCP, which cannot be forged and is not limited.

Network-free: time comes from an injected clock; the table of sources is bounded.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime

#: Answers per second per source network by default: far above what a home network's plugs
#: and phones ask (plugs resolve one name at boot), far below a useful flood.
DEFAULT_RATE = 100
#: Every this-many-th limited answer is sent as an empty TC reply instead of dropped.
DEFAULT_SLIP = 2
#: Source networks tracked at once; the least recently seen one is forgotten beyond this.
MAX_SOURCES = 4096


class ResponseRateLimiter:
    """Decides, per UDP answer, whether to send it, send an empty TC reply instead, or drop it.

    Each source network has a token bucket holding at most C{burst} answers (default: one
    second's worth), refilled at C{rate} per second.  A C{rate} of 0 turns limiting off.
    """

    SEND = "send"
    SLIP = "slip"
    DROP = "drop"

    def __init__(self, clock: IReactorTime, rate: float = DEFAULT_RATE, *,
                 burst: float | None = None, slip: int = DEFAULT_SLIP, v4Prefix: int = 24,
                 v6Prefix: int = 56, maxSources: int = MAX_SOURCES) -> None:
        if rate < 0 or slip < 0 or maxSources < 1:
            raise ValueError("rate and slip must be >= 0 and maxSources >= 1")
        self.clock = clock
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self.slip = slip
        self.v4Prefix = v4Prefix
        self.v6Prefix = v6Prefix
        self.maxSources = maxSources
        # source network -> [tokens, time of last refill, answers limited so far]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        # source address -> its network, so the hot path skips the parsing (bounded like the table)
        self._keys: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        """Whether answers are limited at all (C{rate} above 0)."""
        return self.rate > 0

    def sources(self) -> int:
        """How many source networks are tracked now (never above C{maxSources})."""
        return len(self._buckets)

    def sourceNetwork(self, host: str) -> str:
        """The network C{host} is counted in, as text (C{"192.168.1.0/24"}); C{host} if unparsable."""
        if self.v4Prefix == 24 and ":" not in host and host.count(".") == 3:
            return host[:host.rfind(".")] + ".0/24"  # the common case, without ipaddress's cost
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        prefix = self.v4Prefix if ip.version == 4 else self.v6Prefix
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    def check(self, host: str) -> str:
        """Spend one answer of C{host}'s network: L{SEND}, L{SLIP} (send an empty TC reply), or
        L{DROP}."""
        if self.rate <= 0:
            return self.SEND
        key = self._keys.get(host)
        if key is None:
            key = self.sourceNetwork(host)
            if len(self._keys) >= self.maxSources:
                self._keys.clear()
            self._keys[host] = key
        now = self.clock.seconds()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = [self.burst, now, 0.0]
            if len(buckets) > self.maxSources:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                tokens = bucket[0] + elapsed * self.rate
                bucket[0] = tokens if tokens < self.burst else self.burst
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return self.SEND
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            return self.SLIP
        return self.DROP
