"""Tests of the web feature's options and wiring."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet import task
from twisted.python import usage
from twisted.trial import unittest

from vesyncd.web import tap as web_tap
from vesyncd.web.api import WebApp


def config(**kw) -> dict:
    """Options as the tap would hold them after parsing."""
    base = {"http": web_tap.DEFAULT_HTTP, "no-http": False, "http-insecure": False, "metrics-public": False}
    base.update(kw)
    return base


class OptionTests(unittest.TestCase):
    """Plain HTTP beyond loopback needs an explicit --http-insecure."""

    def test_loopbackAllowed(self) -> None:
        """Loopback TCP (IPv4, IPv6, localhost) and UNIX sockets are fine."""
        for endpoint in ("tcp:8080:interface=127.0.0.1", r"tcp6:8080:interface=\:\:1", "tcp:80:interface=localhost",
                         "unix:/run/vesyncd/web.sock"):
            web_tap.checkOptions(config(http=endpoint))

    def test_publicRefused(self) -> None:
        """All interfaces or a LAN address without TLS is a usage error that says how to fix it."""
        for endpoint in ("tcp:8080", "tcp:8080:interface=0.0.0.0", "tcp:8080:interface=192.168.1.2"):
            with self.assertRaises(usage.UsageError) as e:
                web_tap.checkOptions(config(http=endpoint))
            self.assertIn("--http-insecure", str(e.exception))
            self.assertIn("ssl:", str(e.exception))

    def test_tlsOrInsecure(self) -> None:
        """TLS, an explicit --http-insecure or --no-http lift the rule."""
        web_tap.checkOptions(config(http="ssl:8443:privateKey=k.pem:certKey=c.pem"))
        web_tap.checkOptions(config(http="tcp:8080", **{"http-insecure": True}))
        web_tap.checkOptions(config(http="tcp:8080", **{"no-http": True}))


class WiringTests(unittest.TestCase):
    """makeServices adds the listener and loads the token when nobody did."""

    def test_makeServices(self) -> None:
        """The daemon's token lets clients in, the app is returned and its listener is listed."""
        from twisted.application import service

        from vesyncd.core.hub import Hub
        from vesyncd.service import DaemonInfo

        state = Path(tempfile.mkdtemp(prefix="vesyncd-web-")) / "state"
        self.addCleanup(shutil.rmtree, state.parent, True)
        clock = task.Clock()
        info = DaemonInfo(stateDir=state)
        parent = service.MultiService()
        app = web_tap.makeServices(parent, Hub(clock), config(**{"state-dir": state}), clock, "secret", info)
        self.assertIsInstance(app, WebApp)
        self.assertEqual(app.auth.token, "secret")
        self.assertIn("http", info.listeners)

    def test_tokenCreated(self) -> None:
        """The daemon creates the token in the state directory, and the web app takes that one."""
        from vesyncd import tap

        state = Path(tempfile.mkdtemp(prefix="vesyncd-web-")) / "state"
        self.addCleanup(shutil.rmtree, state.parent, True)
        options = tap.Options()
        options.parseOptions(["--state-dir", str(state), "--no-dns", "--http", "tcp:0:interface=127.0.0.1",
                              "--plugs", "tcp:0:interface=127.0.0.1"])
        top = tap.makeService(options, task.Clock())
        self.assertEqual(top.context.web.auth.token, (state / "control.token").read_text().strip())
        self.assertIn("http", top.context.listeners)

    def test_off(self) -> None:
        """--no-http adds nothing."""
        from twisted.application import service

        from vesyncd.service import DaemonInfo

        parent = service.MultiService()
        app = web_tap.makeServices(parent, None, config(**{"no-http": True}), task.Clock(), "t", DaemonInfo())
        self.assertIsNone(app)
        self.assertEqual(list(parent), [])
