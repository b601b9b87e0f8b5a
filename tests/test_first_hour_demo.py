"""
Tests of the demo behind C{make run} (L{vesyncd.launch}): busy default ports move to free loopback
ports, a busy port the user chose is named with the option that moves it, C{MQTT=1} runs a private
mosquitto, and the printed lines are the ones that work.  The launcher runs as a subprocess on
loopback, bounded in time, and is stopped like Ctrl-C stops it.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from vesyncd import launch
from vesyncd.sim.demobroker import findMosquitto
from vesyncd.sim.demoports import (Listener, givenOptions, isLoopback, listeners, parseTCPEndpoint, planPorts,
                                   portFree)
from tests.twistd_helpers import followLines

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "etc" / "vesyncd-dev.toml"
MOSQUITTO = findMosquitto()
#: The longest the launcher may take to print its banner, and then to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def demoOptions(*extra: str) -> object:
    """The daemon options the demo parses: the demo config, then C{extra}."""
    config = launch.daemonOptions(["--config", str(DEMO_CONFIG), *extra])
    assert config is not None
    return config


def test_parseTCPEndpoint() -> None:
    """TCP endpoint strings give their port and interface and take another port; others give None."""
    endpoint = parseTCPEndpoint("tcp:17273:interface=127.0.0.1:backlog=4096")
    assert endpoint is not None and (endpoint.host, endpoint.port) == ("127.0.0.1", 17273)
    assert endpoint.withPort(40000) == "tcp:40000:interface=127.0.0.1:backlog=4096"
    keyword = parseTCPEndpoint("tcp:interface=127.0.0.1:port=8080")
    assert keyword is not None and keyword.withPort("PORT") == "tcp:interface=127.0.0.1:port=PORT"
    six = parseTCPEndpoint("tcp6:8080:interface=\\:\\:1")
    assert six is not None and six.host == "::1" and six.withPort(1) == "tcp6:1:interface=\\:\\:1"
    assert parseTCPEndpoint("tcp:17273").host == ""  # type: ignore[union-attr]
    assert parseTCPEndpoint("unix:/tmp/x.sock") is None
    assert parseTCPEndpoint("ssl:443:privateKey=k.pem") is None
    assert parseTCPEndpoint("tcp:http") is None


def test_onlyLoopbackIsProbed() -> None:
    """Port probes refuse any address beyond loopback, so the demo never binds one."""
    assert isLoopback("127.0.0.1") and isLoopback("::1") and isLoopback("localhost")
    assert not isLoopback("") and not isLoopback("0.0.0.0") and not isLoopback("192.168.1.10")
    with pytest.raises(ValueError):
        portFree("0.0.0.0", 8080, ("tcp",))


def test_demoListeners() -> None:
    """The demo config gives the plug, web and DNS listeners on loopback, none chosen by the user."""
    found = {item.option: item for item in listeners(demoOptions(), set())}
    assert set(found) == {"plugs", "http", "dns-port"}
    assert (found["plugs"].host, found["plugs"].port) == ("127.0.0.1", 17273)
    assert (found["http"].host, found["http"].port) == ("127.0.0.1", 8080)
    assert (found["dns-port"].port, found["dns-port"].kinds) == (5353, ("udp", "tcp"))
    assert not any(item.chosen for item in found.values())


def test_userOptionsAreTheirs() -> None:
    """Options in ARGS are the user's; --no-http drops the web listener; a user's --config owns them all."""
    user = ["--http", "tcp:8081:interface=127.0.0.1", "--dns-port=5454"]
    assert givenOptions(user) == {"http", "dns-port"}
    found = {item.option: item for item in listeners(demoOptions(*user), givenOptions(user))}
    assert found["http"].chosen and found["http"].port == 8081
    assert found["dns-port"].chosen and found["dns-port"].port == 5454
    assert not found["plugs"].chosen
    assert "http" not in {item.option for item in listeners(demoOptions("--no-http"), {"no-http"})}
    assert all(item.chosen for item in listeners(demoOptions(), {"config"}))
    assert "plugs" not in {item.option for item in listeners(demoOptions("--plugs", "tcp:17273"), {"plugs"})}


def test_planMovesBusyDefaults() -> None:
    """A busy default port moves to the picked one, with the option added and a note naming how to choose."""
    found = [Listener("http", "web page", "127.0.0.1", 8080, ("tcp",), False,
                      parseTCPEndpoint("tcp:8080:interface=127.0.0.1")),
             Listener("dns-port", "DNS responder", "127.0.0.1", 5353, ("udp", "tcp"), False),
             Listener("plugs", "plug server", "127.0.0.1", 17273, ("tcp",), False,
                      parseTCPEndpoint("tcp:17273:interface=127.0.0.1"))]
    busy = {8080, 5353}
    plan = planPorts(found, isFree=lambda host, port, kinds: port not in busy,
                     pickPort=lambda host, kinds: 40000 + len(kinds))
    assert plan.args == ["--http", "tcp:40001:interface=127.0.0.1", "--dns-port", "40002"]
    assert plan.blocked == []
    assert [item.port for item in found] == [40001, 40002, 17273]
    assert 'make run ARGS="--http tcp:PORT:interface=127.0.0.1"' in plan.moved[0]
    assert "port 8080 was busy" in plan.moved[0]
    assert 'make run ARGS="--dns-port PORT"' in plan.moved[1]


def test_planNamesBusyChosenPort() -> None:
    """A busy port the user chose is not moved: the plan reports it with the option that moves it."""
    found = [Listener("http", "web page", "127.0.0.1", 8081, ("tcp",), True,
                      parseTCPEndpoint("tcp:8081:interface=127.0.0.1"))]
    plan = planPorts(found, isFree=lambda host, port, kinds: False, pickPort=lambda host, kinds: 1 / 0)
    assert plan.args == [] and plan.moved == []
    assert plan.blocked == ["127.0.0.1:8081 (tcp) for the web page is in use by another program; pick another "
                            'port: make run ARGS="--http tcp:PORT:interface=127.0.0.1"']


def test_bannerLines() -> None:
    """The banner says the demo is loopback only, where each listener is, and the vesyncctl line to try."""
    config = demoOptions("--state-dir", "somewhere")
    found = listeners(config, set())
    plan = planPorts(found, isFree=lambda host, port, kinds: port != 8080, pickPort=lambda host, kinds: 45678)
    text = "\n".join(launch.banner(config, found, plan, None, None))
    assert "vesyncd demo: loopback only, fine for trying" in text
    assert "http://127.0.0.1:45678/" in text
    assert "127.0.0.1:17273, 2 simulated plugs" in text
    assert "127.0.0.1:5353 (udp+tcp)" in text
    assert "make run MQTT=1" in text
    assert re.search(r"vesyncctl --state-dir somewhere list$", text, re.M)
    wide = demoOptions("--plugs", "tcp:17273")
    assert "beyond loopback" in launch.banner(wide, listeners(wide, {"plugs"}), plan, None, None)[1]


@pytest.fixture
def heldPort() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 at a port the system picked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_busyChosenPortStopsTheDemo(heldPort: socket.socket, capsys: pytest.CaptureFixture[str]) -> None:
    """ARGS naming a busy port exits 1 before starting, naming the port and the option that moves it."""
    port = heldPort.getsockname()[1]
    status = launch.main(["--config", str(DEMO_CONFIG), "--", "--state-dir", "state",
                          "--http", f"tcp:{port}:interface=127.0.0.1"])
    assert status == 1
    error = capsys.readouterr().err
    assert f"127.0.0.1:{port} (tcp) for the web page is in use" in error
    assert 'make run ARGS="--http tcp:PORT:interface=127.0.0.1"' in error
    assert not Path("state").exists()


def test_missingMosquittoSaysHowToInstall(capsys: pytest.CaptureFixture[str]) -> None:
    """MQTT=1 without mosquitto exits 1 saying how to install it (apt-get, brew)."""
    status = launch.main(["--config", str(DEMO_CONFIG), "--mqtt", "--mosquitto", "/nonexistent/mosquitto", "--",
                          "--state-dir", "state"])
    assert status == 1
    error = capsys.readouterr().err
    assert "apt-get install mosquitto" in error and "brew install mosquitto" in error


class Demo:
    """The launcher as a subprocess whose output lines are read by a thread, so waits have deadlines."""

    def __init__(self, *args: str) -> None:
        self.seen: list[str] = []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vesyncd.launch", "--config", str(DEMO_CONFIG), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env)
        self.lines = followLines(self.process)

    def banner(self) -> list[str]:
        """The banner's lines, read up to its blank last line; fails after START_TIMEOUT."""
        deadline = time.monotonic() + START_TIMEOUT
        banner: list[str] | None = None
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError("the demo printed no banner:\n" + "\n".join(self.seen[-40:]))
            self.seen.append(line)
            if line.startswith(launch.PREFIX):
                banner = []
            if banner is not None:
                if not line:
                    return banner
                banner.append(line)

    def stop(self) -> int:
        """Stop the demo as Ctrl-C does and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError("the demo did not stop on SIGINT") from None


def _field(banner: list[str], label: str) -> str:
    """The text after a banner line's label."""
    for line in banner:
        if line.strip().startswith(label):
            return line.strip()[len(label):].strip()
    raise AssertionError(f"no {label!r} line in {banner}")


def _holdDefaultHttpPort() -> socket.socket | None:
    """Listen on the demo's web port, 127.0.0.1:8080; None when another program already holds it."""
    sock = socket.socket()
    # As a server would: a connection an earlier test made to 8080 may leave it in TIME_WAIT, which must
    # not make this test think another program holds the port (the daemon, with SO_REUSEADDR, would
    # then take 8080 itself).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", 8080))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


def test_demoStartsWhenTheWebPortIsBusy(tmp_path: Path) -> None:
    """With 127.0.0.1:8080 held, the demo serves its page on another port, says so, and its vesyncctl line works."""
    holder = _holdDefaultHttpPort()
    demo = Demo("--", "--state-dir", str(tmp_path / "state"))
    try:
        banner = demo.banner()
        url = _field(banner, "web page").split()[0]
        port = int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/", url).group(1))  # type: ignore[union-attr]
        assert port != 8080
        assert any("port 8080 was busy: the web page uses" in line for line in banner), banner
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert 200 <= status < 500
        command = shlex.split(banner[banner.index("Try in another terminal:") + 1])
        assert command[1:] == ["--state-dir", str(tmp_path / "state"), "list"]
        listed = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0, listed.stderr
    finally:
        status = demo.stop()
        if holder is not None:
            holder.close()
    assert status in (0, -signal.SIGINT), "\n".join(demo.seen[-40:])


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto; "
                                               ".ci/run installs it)")
def test_demoWithMQTT(tmp_path: Path) -> None:
    """MQTT=1: a private mosquitto on loopback gets the plugs' Home Assistant discovery, and stops with the demo."""
    from paho.mqtt import client as pahoclient

    demo = Demo("--mqtt", "--", "--state-dir", str(tmp_path / "state"))
    try:
        banner = demo.banner()
        broker = re.fullmatch(r"mqtt://127\.0\.0\.1:(\d+) \(a private mosquitto, stopped with the demo\)",
                              _field(banner, "MQTT"))
        assert broker is not None, banner
        port = int(broker.group(1))
        assert banner[-1].strip() == (f"mosquitto_sub -h 127.0.0.1 -p {port} -t 'vesyncd/#' "
                                      "-t 'homeassistant/#' -v")
        discovered = threading.Event()
        client = pahoclient.Client(pahoclient.CallbackAPIVersion.VERSION2, client_id="first-hour-watch")
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([("homeassistant/#", 0), ("vesyncd/#", 0)])
        client.on_message = lambda c, u, message: (message.topic.startswith("homeassistant/")
                                                   and message.topic.endswith("/config") and discovered.set())
        client.connect("127.0.0.1", port)
        client.loop_start()
        try:
            assert discovered.wait(START_TIMEOUT), "no Home Assistant discovery config on the demo's broker"
        finally:
            client.loop_stop()
            client.disconnect()
    finally:
        demo.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "mosquitto still listens after the demo stopped"
