"""Tests of where the DNS responder stands: the address it answers with, the upstreams from
options and resolv.conf, and the checks of makeDNSService's options.  No network."""

from __future__ import annotations

import pytest
from twisted.internet import task

from vesyncd.dns.discovery import AnswerAddressFinder, parseUpstream, systemUpstreams
from vesyncd.dns.server import makeDNSService


# --- answer address ---------------------------------------------------------------------------


def test_answerAddressChoice():
    """Fixed address wins; else the specific local address; else the route to the peer; else LAN."""
    clock = task.Clock()
    assert AnswerAddressFinder(clock, "10.0.0.7")("192.168.1.5", "192.168.1.1") == "10.0.0.7"
    finder = AnswerAddressFinder(clock, None, route=lambda peer: "192.168.1.1",
                                 primary=lambda: "192.168.9.9")
    assert finder("192.168.1.5", "192.168.3.3") == "192.168.3.3"
    assert finder("192.168.1.5", "0.0.0.0") == "192.168.1.1"
    assert finder("192.168.1.5", None) == "192.168.1.1"
    assert finder("fd00::1", None) == "192.168.9.9"
    assert finder("::ffff:192.168.1.6", "::ffff:192.168.1.1") == "192.168.1.1"


def test_answerAddressFallbacks():
    """With no route and no LAN address, loopback peers get 127.0.0.1, others nothing."""
    finder = AnswerAddressFinder(task.Clock(), None, route=lambda peer: None, primary=lambda: None)
    assert finder("127.0.0.1", None) == "127.0.0.1"
    assert finder("192.168.1.5", None) is None
    finder = AnswerAddressFinder(task.Clock(), None, route=lambda p: "0.0.0.0", primary=lambda: None)
    assert finder("192.168.1.5", "0.0.0.0") is None


def test_answerAddressCachedWithExpiry():
    """The route look-up is cached per peer and redone after the cache TTL."""
    calls = []
    clock = task.Clock()
    finder = AnswerAddressFinder(clock, None, ttl=300,
                                 route=lambda p: calls.append(p) or "10.0.0.1", primary=lambda: None)
    finder("10.0.0.5", None)
    finder("10.0.0.5", None)
    assert calls == ["10.0.0.5"]
    clock.advance(301)
    finder("10.0.0.5", None)
    assert len(calls) == 2


# --- option helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("192.168.1.1", ("192.168.1.1", 53)),
    ("192.168.1.1:5353", ("192.168.1.1", 5353)),
    ("fd00::1", ("fd00::1", 53)),
    ("[fd00::1]:5353", ("fd00::1", 5353)),
    ("[::1]", ("::1", 53)),
])
def test_parseUpstream(text, expected):
    """HOST[:PORT] and [V6]:PORT parse to (address, port) with 53 as the default port."""
    assert parseUpstream(text) == expected


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:0", "1.2.3.4:x", "[::1", "[::1]x",
                                  "0.0.0.0", "1.2.3.4:70000"])
def test_parseUpstreamErrors(text):
    """Names, bad ports and unspecified addresses are rejected with ValueError."""
    with pytest.raises(ValueError):
        parseUpstream(text)


def test_systemUpstreams(tmp_path):
    """resolv.conf nameservers are used, minus this host's own addresses when on port 53."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nnameserver 127.0.0.1\nnameserver 192.0.2.53 # x\nsearch lan\n"
                    "nameserver fd00::53\nnameserver bogus\n")
    assert systemUpstreams(53, "", [str(conf)]) == [("192.0.2.53", 53), ("fd00::53", 53)]
    assert systemUpstreams(5353, "", [str(conf)])[0] == ("127.0.0.1", 53)
    assert systemUpstreams(53, "192.168.1.1", [str(conf)])[0] == ("127.0.0.1", 53)
    only = tmp_path / "stub.conf"
    only.write_text("nameserver 127.0.0.1\n")
    assert systemUpstreams(53, "", [str(only), str(conf)]) == [("192.0.2.53", 53),
                                                              ("fd00::53", 53)]
    assert systemUpstreams(53, "", [str(tmp_path / "missing")]) == []


@pytest.mark.parametrize("kw", [{"address": "0.0.0.0"}, {"address": "nope"},
                                {"address": "fd00::1"}, {"interface": "eth0"},
                                {"allow": ["10.0.0.0/33"]}, {"intercept": ["a..b"]},
                                {"upstreams": ["dns.google"]}, {"port": 70000}])
def test_makeDNSServiceValidates(kw):
    """Bad options are rejected with ValueError before anything is bound."""
    with pytest.raises(ValueError):
        makeDNSService(task.Clock(), **{"upstreams": [], **kw})
