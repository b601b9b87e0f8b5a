"""Safe defaults: with no options every listener is on loopback or a UNIX socket, and nothing
beyond loopback is accepted without TLS or an explicit opt-in."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.python import usage
from twisted.trial import unittest

from vesyncd import tap


def defaults(stateDir: str, *extra: str) -> tap.Options:
    """Options as a user gets them with nothing but a state directory."""
    o = tap.Options()
    o.parseOptions(["--state-dir", stateDir, *extra])
    return o


def test_default_endpoints_name_loopback_or_unix() -> None:
    """The default plug, web, DNS and control listeners name loopback or a UNIX socket."""
    with tempfile.TemporaryDirectory() as d:
        o = defaults(d)
    assert "interface=127.0.0.1" in o["plugs"]
    assert "interface=127.0.0.1" in o["http"]
    assert o["dns-interface"] == "127.0.0.1"
    assert o["control"] is None or str(o["control"]).startswith("unix:")
    assert o["pb"] is None and o["mqtt"] is None


@pytest.mark.parametrize("argv, needle", [
    (["--http", "tcp:8080:interface=0.0.0.0"], "--http"),
    (["--control", "tcp:7000"], "--control"),
    (["--pb", "tcp:7001"], "--pb"),
])
def test_remote_listeners_need_tls_or_consent(argv: list[str], needle: str) -> None:
    """A plain TCP listener beyond loopback for an authenticated front end is a usage error."""
    with tempfile.TemporaryDirectory() as d, pytest.raises(usage.UsageError) as e:
        defaults(d, *argv)
    assert needle in str(e.value)


class BoundAddressTests(unittest.TestCase):
    """Start the daemon on its default interfaces (ports made free) and look at what is bound."""

    @defer.inlineCallbacks
    def test_every_default_listener_is_loopback(self) -> Any:
        """Plug server, web server, DNS (UDP and TCP) and control socket bind loopback or UNIX only."""
        stateDir = tempfile.mkdtemp(prefix="vesyncd-defaults-")
        o = defaults(stateDir)
        plugs = o["plugs"].replace(":17273:", ":0:")
        http = o["http"].replace(":8080:", ":0:")
        o = defaults(stateDir, "--plugs", plugs, "--http", http, "--dns-port", "0")
        service = tap.makeService(o, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        yield defer.succeed(None)
        listeners = service.context.listeners
        bound = {name: listener.port.getHost() for name, listener in listeners.items()}
        dns = service.context.dns
        bound["dns-udp"] = dns.udpPort.getHost()
        bound["dns-tcp"] = dns.tcpPort.getHost()
        self.assertEqual(set(bound), {"plugs", "http", "control", "dns-udp", "dns-tcp"})
        for name, address in bound.items():
            if name == "control":
                path = address.name.decode() if isinstance(address.name, bytes) else address.name
                self.assertEqual(Path(path), Path(stateDir) / "control.sock")
            else:
                self.assertEqual(address.host, "127.0.0.1", name)
