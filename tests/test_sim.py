"""The simulated plug on a fake clock: cadence, reports, commands, reconnects, setup mode."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.trial import unittest

from vesyncd.plugs import codec as m
from vesyncd.setup import client as provision
from vesyncd.setup import codec as setupcodec
from vesyncd.sim import main as simmain
from vesyncd.sim import plug as sim
from vesyncd.sim import runner as simrunner
from vesyncd.sim.setupmode import SetupModePlug


class RecordingProtocol:
    """Stands in for a connection: keeps what the plug sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.transport = self

    def sendJSON(self, obj: dict[str, Any]) -> None:
        self.sent.append(obj)

    def abortConnection(self) -> None:
        self.aborted = True


def connectedPlug(**kw: Any) -> tuple[sim.SimPlug, RecordingProtocol, Clock]:
    """A simulated plug on a fake clock, logged in."""
    clock = Clock()
    plug = sim.SimPlug(clock, "p", **kw)
    proto = RecordingProtocol()
    plug.connected(proto)  # type: ignore[arg-type]
    plug.received({"uri": "/loginReply"})
    return plug, proto, clock


def test_login_fields_in_capture_order() -> None:
    """The login has the captured field order and the firmware profile's versions."""
    plug, proto, clock = connectedPlug(firmware="2.123")
    login = proto.sent[0]
    assert list(login) == ["account", "id", "deviceName", "deviceVersion", "deviceVersionCode", "type",
                           "apptype", "firmName", "firmVersion", "firmVersionCode", "key", "relay"]
    assert login["firmVersion"] == "2.123" and plug.encrypted


def test_keepalive_cadence_and_report_after_kr() -> None:
    """/ka about every 180 s (scaled by speed), and a /report 3 s after each /kr with e = load x t."""
    plug, proto, clock = connectedPlug(load_w=20.0, speed=10.0)
    clock.advance(18.1)
    kas = [s for s in proto.sent if s.get("uri") == "/ka"]
    assert len(kas) == 1 and isinstance(kas[0]["rssi"], int)
    plug.received({"uri": "/kr"})
    clock.advance(0.31)
    report = proto.sent[-1]
    assert report["uri"] == "/report"
    e, t = int(report["e"], 16), int(report["t"], 16)
    assert abs(e / t - 20.0) < 0.6
    clock.advance(18.6)
    assert len([s for s in proto.sent if s.get("uri") == "/ka"]) == 2


def test_relay_and_runtime_answers() -> None:
    """/relay switches and answers /runtimeInfo in the vendor encoding; server /ka gets a bare /kr."""
    plug, proto, clock = connectedPlug(load_w=491.049, relay=False)
    plug.received({"uri": "/relay", "action": "open"})
    info = proto.sent[-1]
    assert info["relay"] == "open" and info["power"] == "1eb031:1eb031" and info["current"] == "NaN"
    assert m.decodePair(info["voltage"], "voltage")[0] == 120.4
    plug.received({"uri": "/ka"})
    assert proto.sent[-1] == {"uri": "/kr"}
    plug.press()
    assert proto.sent[-1] == {"uri": "/state", "relay": "break"}


def test_no_kr_means_reconnect() -> None:
    """A plug that gets no /kr for two cycles drops the connection to reconnect."""
    plug, proto, clock = connectedPlug(speed=100.0)
    clock.pump([0.1] * 100)
    assert getattr(proto, "aborted", False)


def test_ids_are_stable() -> None:
    """Ids depend only on seed and index."""
    assert sim.plugId("a", 1) == sim.plugId("a", 1) != sim.plugId("a", 2)


def test_backoff_grows_and_is_capped() -> None:
    """Failed connects are retried with growing, jittered, capped delays."""
    clock = Clock()
    runner = simrunner.PlugRunner(clock, sim.SimPlug(clock, "x"), "127.0.0.1", 1)
    runner.running = True
    delays = []
    for _ in range(12):
        runner.connectionEnded()
        assert runner.retryCall is not None
        delays.append(runner.retryCall.getTime() - clock.seconds())
        runner.retryCall.cancel()
    assert delays[0] < 1.1 and max(delays) <= simrunner.MAX_BACKOFF + 0.1 and delays[5] > delays[0]


def test_parse_server() -> None:
    """--server takes HOST:PORT, HOST, and [v6]:PORT."""
    assert simmain.parseServer("10.0.0.2:17273") == ("10.0.0.2", 17273)
    assert simmain.parseServer("server2.vesync.com") == ("server2.vesync.com", 17273)
    assert simmain.parseServer("[::1]:5") == ("::1", 5)


def test_cli_usage_error() -> None:
    """vesyncd-sim refuses a zero count with exit code 2."""
    out = subprocess.run([sys.executable, "-m", "vesyncd.sim", "--count", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "--count" in out.stderr


class SetupModeTests(unittest.TestCase):
    """Setup mode over loopback: provisioned, then connects to the server it was given."""

    @defer.inlineCallbacks
    def test_provision_then_connect(self) -> Any:
        """After /beginConfigRequest the plug connects to serverIP:serverPort and sends its upgrade."""
        from twisted.internet.protocol import Factory, Protocol

        received: list[bytes] = []
        closed: defer.Deferred = defer.Deferred()
        holder: dict[str, SetupModePlug] = {}

        class Catch(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)
                holder["plug"].sim.stop()
                self.transport.loseConnection()

            def connectionLost(self, reason: Any = None) -> None:
                closed.callback(None)

        server = reactor.listenTCP(0, Factory.forProtocol(Catch), interface="127.0.0.1")
        self.addCleanup(server.stopListening)
        events: list[dict[str, Any]] = []
        plug = holder["plug"] = SetupModePlug(reactor, serverPort=server.getHost().port, onEvent=events.append)
        port = plug.listen("127.0.0.1", 0)
        request = provision.buildConfigRequest("HomeNet", "secretpass", "127.0.0.1")
        reply = yield provision.provision(reactor, "127.0.0.1", port.getHost().port, request, timeout=5)
        self.assertIsNotNone(setupcodec.interpretReply(reply))
        yield closed
        self.assertTrue(received[0].startswith(b"GET /gnws HTTP/1.1"))
        self.assertEqual(events[0]["event"], "provisioned")
        self.assertNotIn("secretpass", json.dumps(events))
