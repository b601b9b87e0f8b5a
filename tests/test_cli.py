"""vesyncctl: its commands run in memory against the real AMP server (iosim), its formatting with plain
values, and one end-to-end run of the installed command against a daemon with simulated plugs."""

from __future__ import annotations

import io
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest

from vesyncd.cli.main import execute
from vesyncd.cli.formatting import ago, energyCSV, formatEvent, formatPlug, formatPlugs
from vesyncd.escape import printable
from vesyncd.core.settings import Settings
from vesyncd.plugs import codec as m

from control_helpers import CLIHarness, FakePlugConnection, World

BIN = Path(sys.executable).parent
#: What a hostile device or client could put in any string: clear screen, OSC title, bell, C1 CSI,
#: a bidirectional override and a line separator.
HOSTILE = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202egnp.exe\u2028X"


def test_ago() -> None:
    """Times are shown relative to now."""
    now = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert ago("2024-01-01T11:58:00Z", now) == "2 min ago"
    assert ago("2024-01-01T11:59:59Z", now) == "just now"
    assert ago(None, now) == "never"


def test_tableHasUnits() -> None:
    """The list table is aligned and shows W, V, dBm and kWh."""
    plug = {"id": "abc", "alias": "Kettle", "online": True, "relay": "on", "power_w": 12.0, "voltage_v": 230.0,
            "rssi_dbm": -50, "energy_today_kwh": 0.1, "energy_lifetime_kwh": 12.5, "last_seen": None}
    text = formatPlugs([plug])
    assert "12.0 W" in text and "230.0 V" in text and "-50 dBm" in text and "0.100 kWh" in text
    assert "12.500 kWh" in text and "LIFETIME" in text
    assert text.splitlines()[0].startswith("NAME")


def test_energyCSV() -> None:
    """CSV output has a header, one row per bucket and a total."""
    text = energyCSV({"buckets": [{"start": "s", "label": "00:00", "wh": 1.5}], "total_wh": 1.5})
    assert text.splitlines() == ["start,label,wh", "s,00:00,1.5", ",total,1.5"]


def test_printableEscapesEveryControl() -> None:
    """ESC, BEL, C1 controls, bidi overrides and line separators become visible escapes; the rest stays."""
    assert printable(HOSTILE) == "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202egnp.exe\\u2028X"
    assert printable("Küche ☕ 12 W") == "Küche ☕ 12 W"
    assert printable("a\nb\tc\x7f") == "a\\x0ab\\x09c\\x7f"
    assert printable(None) == "" and printable(3) == "3"


def test_eventLines() -> None:
    """watch's plain lines: relay as on/off with its cause, energy in Wh with the average power."""
    relay = {"event": "relay", "plug": "p", "name": "Kettle", "at": "T", "data": {"relay": True, "cause": "button"}}
    assert formatEvent(relay) == "T Kettle relay on (button)"
    energy = {"event": "energy", "plug": "p", "name": "Kettle", "at": "T",
              "data": {"watt_seconds": 2660, "seconds": 133, "average_w": 20.0}}
    assert formatEvent(energy) == "T Kettle energy 0.74 Wh over 133 s (avg 20 W)"


def test_statusShowsConflictAndRefusedEnergy() -> None:
    """A plug's takeover conflict and refused energy appear in `status`; neither when absent."""
    plug = {"id": "abc", "energy_refused_wh": 4608000.0,
            "conflict": {"at": "2024-05-01T10:00:00Z", "fields": ["account"], "first": {"account": "a1"},
                         "now": {"account": "b2"}}}
    text = formatPlug(plug)
    assert "Conflict:" in text and "account a1 -> b2" in text and "2024-05-01T10:00:00Z" in text
    assert "Refused:" in text and "4608000.0 Wh" in text
    quiet = formatPlug({"id": "abc", "energy_refused_wh": 0, "conflict": None})
    assert "Conflict" not in quiet and "Refused" not in quiet


class CommandTests(CLIHarness, unittest.TestCase):
    """Each command of vesyncctl, run by L{execute} against the AMP server in memory."""

    def setUp(self) -> None:
        self.world = World()

    def test_listJSONSchema(self) -> None:
        """`list --json` is an array of plugs with the documented keys and types; plain has a header."""
        code, out, err = self.run_("--json", "list")
        self.assertEqual((code, err), (0, ""))
        plugs = json.loads(out)
        self.assertEqual(len(plugs), 2)
        types = {"id": str, "alias": (str, type(None)), "online": bool, "relay": (str, type(None)),
                 "power_w": (float, int, type(None)), "voltage_v": (float, int, type(None)),
                 "rssi_dbm": (int, type(None)), "firmware": (str, type(None)), "address": (str, type(None)),
                 "last_seen": (str, type(None)), "energy_today_kwh": (float, int),
                 "energy_lifetime_kwh": (float, int)}
        for plug in plugs:
            for key, kind in types.items():
                self.assertIsInstance(plug[key], kind, key)
            self.assertIn(plug["relay"], ("on", "off", None))
            self.assertTrue(plug["last_seen"].endswith("Z"))
        code, out, _ = self.run_("list")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("NAME"))

    def test_onOffWaitForThePlug(self) -> None:
        """`on` answers only after the plug confirmed; `--json off` prints the plug with relay off."""
        d, out, _ = self.start("on", "00aa")
        self.assertNoResult(d)
        self.world.confirm(0, True)
        self.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(out.getvalue(), "00aa-plug-0 is on\n")
        code, out2, _ = self.run_("--json", "off", "00aa-plug-0", between=lambda: self.world.confirm(0, False))
        self.assertEqual((code, json.loads(out2)["relay"]), (0, "off"))

    def test_renameStatusForgetPowerOn(self) -> None:
        """rename, status, power-on, info and forget print one clear line or block each."""
        self.assertEqual(self.run_("rename", "10aa", "Fan")[1], "10aa-plug-1 is now called Fan\n")
        status = self.run_("status", "fan")[1]
        self.assertIn("Name:       Fan", status)
        self.assertIn("Firmware:   1.89", status)
        self.assertEqual(self.run_("power-on", "Fan", "last")[1], "Fan: power-on last\n")
        self.assertIn("version:", self.run_("info")[1])
        self.assertEqual(self.run_("forget", "Fan")[1], "forgot Fan\n")
        self.assertEqual(self.run_("status", "fan")[0], 1)

    def test_energy(self) -> None:
        """`energy` prints a day's hours with a total, a year as 12 JSON buckets, a month as CSV."""
        code, out, _ = self.run_("--json", "energy", "10aa", "--year", "2024")
        self.assertEqual((code, len(json.loads(out)["buckets"])), (0, 12))
        self.assertIn("total", self.run_("energy", "10aa")[1])
        self.assertEqual(self.run_("energy", "10aa", "--csv", "--month", "2024-02")[1].count("\n"), 29 + 2)

    def test_exitCodes(self) -> None:
        """1 with one line naming the reference for an unknown plug; 2 for a usage error."""
        code, out, err = self.run_("on", "no-such-plug")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("no plug is called", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        for argv in (["power-on", "x", "sometimes"], ["frobnicate"]):
            d = defer.ensureDeferred(execute(self.world.clock, argv, io.StringIO(), io.StringIO()))
            self.assertEqual(self.successResultOf(d), 2)

    def test_ambiguousNameIsAnError(self) -> None:
        """A reference the hub finds ambiguous is an error with the hub's words (exit 1), never a pick."""
        self.world.hub.login(FakePlugConnection("192.0.2.66:5000"), m.Login(id="00ab-other", firmVersion="1.89"))
        d, out, err = self.start("off", "00a")
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(out.getvalue(), "")
        self.assertIn("matches 2 plugs", err.getvalue())
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)
        self.assertIs(self.world.hub.get("00aa-plug-0").relay, False)

    def test_watchPrintsEventsUntilClosed(self) -> None:
        """`--json watch` prints each event as one JSON line in the one shape; plain watch a readable line;
        the watch ends with exit 1 when the daemon closes the connection."""
        d, out, err = self.start("--json", "watch")
        self.assertIn("watching events", err.getvalue())
        self.world.sessions[0].received(m.State(relay=True))
        self.flush()
        event = json.loads(out.getvalue().splitlines()[-1])
        self.assertEqual((event["event"], event["plug"], event["data"]["relay"], event["data"]["cause"]),
                         ("relay", "00aa-plug-0", True, "button"))
        self.assertTrue(event["at"].endswith("Z"))
        plain, plainOut, _ = self.start("watch")
        self.world.sessions[1].received(m.State(relay=True))
        self.flush()
        self.assertRegex(plainOut.getvalue(), r"Z 10aa-plug-1 relay on \(button\)\n$")
        for conn in list(self.world.factory.connections):
            conn.transport.loseConnection()
        self.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertIn("closed", err.getvalue())
        self.successResultOf(plain)

    def test_pendingAndApprove(self) -> None:
        """`pending` lists plugs held by --new-plugs hold and `approve` takes one in."""
        self.world = heldWorld()
        code, out, _ = self.run_("pending")
        self.assertEqual(code, 0)
        self.assertIn("ab12cd-new", out)
        self.assertEqual(json.loads(self.run_("--json", "pending")[1])[0]["id"], "ab12cd-new")
        code, out, _ = self.run_("approve", "ab12")
        self.assertEqual((code, out), (0, "approved ab12cd-new\n"))
        self.assertEqual(json.loads(self.run_("--json", "pending")[1]), [])
        self.assertIn("ab12cd-new", self.run_("list")[1])
        self.assertEqual(self.run_("approve", "nothing-held")[0], 1)

    def test_takeoverShowsInStatusAndCanBeCleared(self) -> None:
        """A second device logging in with a plug's id shows as a Conflict in `status` and a plug_conflict
        event in `watch`; `clear-conflict` accepts the new login and the line goes away."""
        d, out, _ = self.start("watch")
        self.world.hub.login(FakePlugConnection("198.51.100.7:5000"),
                             m.Login(id="00aa-plug-0", account="intruder", firmVersion="6.66"))
        self.flush()
        self.assertIn("00aa-plug-0 plug_conflict", out.getvalue())
        status = self.run_("status", "00aa")[1]
        self.assertRegex(status, r"Conflict: +.*firmware 1\.89 -> 6\.66")
        code, text, _ = self.run_("clear-conflict", "00aa")
        self.assertEqual((code, text), (0, "00aa-plug-0: conflict cleared; its latest login is now its identity\n"))
        self.assertNotIn("Conflict", self.run_("status", "00aa")[1])
        self.flush()
        self.assertIn("00aa-plug-0 plug_conflict cleared", out.getvalue())

    def test_connectionLostMidCommand(self) -> None:
        """A daemon that goes away before answering is an error on one line (exit 1), not a traceback."""
        d, out, err = self.start("on", "00aa")
        for conn in list(self.world.factory.connections):
            conn.transport.loseConnection()
        self.flush()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(err.getvalue(), "vesyncctl: the connection to vesyncd was closed before it answered\n")

    def test_hostileStringsAreEscaped(self) -> None:
        """Firmware, model and alias texts with terminal escapes reach plain output escaped, whatever the
        source: here straight from a stub daemon, so no cleaning upstream can hide a gap."""
        plug = {"id": "abc", "alias": HOSTILE, "online": True, "relay": "on", "firmware": HOSTILE, "model": HOSTILE,
                "address": HOSTILE, "last_seen": HOSTILE, "conflict": {"fields": [HOSTILE], "first": {}, "now": {}}}
        event = {"event": HOSTILE, "plug": "abc", "name": HOSTILE, "at": HOSTILE, "data": {"reason": HOSTILE}}
        client = StubClient(plug, event)

        async def connect(reactor: Any, args: Any) -> Any:
            return client

        for argv in (["list"], ["status", "abc"], ["pending"], ["info"], ["watch"], ["on", "abc"]):
            out, err = io.StringIO(), io.StringIO()
            self.successResultOf(defer.ensureDeferred(execute(self.world.clock, argv, out, err, connect=connect)))
            for text in (out.getvalue(), err.getvalue()):
                self.assertFalse(set(text) & {"\x1b", "\x07", "\x9b", "\u202e", "\u2028"}, (argv, text))
            self.assertIn("\\x1b", out.getvalue() + err.getvalue(), argv)

    def test_hostileLoginThroughTheHub(self) -> None:
        """A plug logging in with escape sequences in its firmware and model cannot reach the terminal."""
        self.world.hub.login(FakePlugConnection("192.0.2.77:5000"),
                             m.Login(id="ee11-evil", firmVersion=HOSTILE, deviceName=HOSTILE))
        for argv in (["status", "ee11"], ["list"]):
            code, out, _ = self.run_(*argv)
            self.assertEqual(code, 0)
            self.assertFalse(set(out) & {"\x1b", "\x07", "\x9b", "\u202e", "\u2028"}, out)


def heldWorld() -> World:
    """A world whose hub holds new plugs (--new-plugs hold), with one unknown plug waiting."""
    world = World(plugs=0, settings=Settings(command_timeout=5.0, new_plugs="hold"))
    world.hub.login(FakePlugConnection("192.0.2.99:5000"), m.Login(id="ab12cd-new", firmVersion="1.89"))
    return world


class StubClient:
    """A control client answering every request with the same (hostile) plug and event."""

    def __init__(self, plug: dict[str, Any], event: dict[str, Any]) -> None:
        self.plug, self.event = plug, event

    def listPlugs(self) -> defer.Deferred:
        """Every plug: the one."""
        return defer.succeed([self.plug])

    def getPlug(self, ref: str) -> defer.Deferred:
        """The plug."""
        return defer.succeed(self.plug)

    def switch(self, ref: str, state: str) -> defer.Deferred:
        """The plug, as if switched."""
        return defer.succeed(self.plug)

    def pending(self) -> defer.Deferred:
        """The plug as held."""
        return defer.succeed({"pending": [self.plug], "total": 1})

    def info(self) -> defer.Deferred:
        """Facts with hostile keys and values."""
        return defer.succeed({HOSTILE: HOSTILE})

    def watch(self, onEvent: Callable[[dict[str, Any]], None]) -> defer.Deferred:
        """Push the event at once."""
        onEvent(self.event)
        return defer.succeed(None)

    def lost(self) -> defer.Deferred:
        """The connection ends with a hostile reason."""
        return defer.succeed(HOSTILE)

    def close(self) -> None:
        """Nothing to close."""


class UnreachableTests(unittest.TestCase):
    """Where vesyncctl looked, when the daemon cannot be reached (real reactor, nothing listening)."""

    @defer.inlineCallbacks
    def test_unreachableDaemonSaysWhere(self) -> None:
        """Without a token file the error names the state directory; with one, the control socket."""
        stateDir = Path(self.mktemp())
        stateDir.mkdir()
        err = io.StringIO()
        code = yield defer.ensureDeferred(execute(reactor, ["--state-dir", str(stateDir), "list"], io.StringIO(), err))
        self.assertEqual(code, 1)
        self.assertIn(str(stateDir), err.getvalue())
        (stateDir / "control.token").write_text("00" * 32)
        err = io.StringIO()
        code = yield defer.ensureDeferred(execute(reactor, ["--state-dir", str(stateDir), "list"], io.StringIO(), err))
        self.assertEqual(code, 1)
        self.assertIn("control.sock", err.getvalue())


def test_provisionRefusesTooLongBeforeSending(capsys: pytest.CaptureFixture[str]) -> None:
    """A password that cannot fit the one-byte length is refused with exit 1 and a clear line, before
    any connection is attempted (nothing listens at the plug address)."""
    err = io.StringIO()
    d = defer.ensureDeferred(execute(reactor, ["provision", "--ssid", "S" * 32, "--password", "p" * 63,
                                               "--server-ip", "127.0.0.1", "--plug-address", "127.0.0.1:9"],
                                     io.StringIO(), err))
    results: list[Any] = []
    d.addBoth(results.append)
    assert results and results[0] in (1, 2)
    assert "shorten" in err.getvalue() and "p" * 63 not in err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1


# --- one end-to-end run of the installed command -------------------------------------------------


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lines:
    """Reads a stream's lines on a thread so that the test can wait for one with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.q.put(line)
        self.q.put(None)  # the end: waiting longer cannot help

    def waitLine(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        """The first line (from now on) satisfying C{predicate}, or fail after C{timeout} s."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not seen within {timeout} s; lines: {self.seen[-10:]}") from None
            if line is None:
                self.q.put(None)
                raise AssertionError(f"the stream ended; last lines: {self.seen[-10:]}")
            self.seen.append(line)
            if predicate(line):
                return line

    def waitJSON(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """The first JSON line satisfying C{predicate}."""

        def matches(line: str) -> bool:
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            return isinstance(obj, dict) and predicate(obj)

        return json.loads(self.waitLine(matches, timeout))


def ctl(stateDir: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the installed vesyncctl against the test daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESYNCD_")}
    return subprocess.run([str(BIN / "vesyncctl"), "--state-dir", stateDir, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def startDaemonAndSim(stateDir: str, procs: list[subprocess.Popen], env: dict[str, str], count: int,
                      *options: str) -> tuple[_Lines, int, subprocess.Popen, _Lines]:
    """Start `twistd vesyncd` (loopback, no web, plus C{options}) in C{stateDir} and, once its control port
    listens, C{vesyncd-sim} with C{count} plugs reporting events; both are appended to C{procs} for the
    caller to stop. Returns the daemon's log, its plug port, the simulator and the simulator's lines."""
    daemon = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "vesyncd", "--plugs", "tcp:0:interface=127.0.0.1",
         "--state-dir", stateDir, "--refresh-interval", "0", "--dns-port", "0",
         "--dns-interface", "127.0.0.1", "--no-http", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=stateDir, env=env)
    procs.append(daemon)
    log = _Lines(daemon.stdout)
    plugPort = int(log.waitLine(lambda line: "plug server listening on" in line).strip().rsplit(":", 1)[1])
    log.waitLine(lambda line: "control port listening on" in line)
    sim = subprocess.Popen([str(BIN / "vesyncd-sim"), "--server", f"127.0.0.1:{plugPort}", "--count", str(count),
                            "--events"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    procs.append(sim)
    return log, plugPort, sim, _Lines(sim.stdout)


def test_vesyncctlAgainstADaemon() -> None:
    """The installed vesyncctl against `twistd vesyncd` with 3 simulated plugs on loopback: list, on/off
    reaching the plug, watch seeing a button press, doctor finding the daemon and its plugs, and provision
    bringing a factory-reset plug that watch announces and `off` switches (its password shown nowhere)."""
    procs: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESYNCD_")}
    with tempfile.TemporaryDirectory() as stateDir:
        try:
            _log, plugPort, sim, simLines = startDaemonAndSim(stateDir, procs, env, 3)
            online: set[str] = set()
            while len(online) < 3:
                online.add(simLines.waitJSON(lambda e: e.get("event") == "online")["plug"])

            listed = ctl(stateDir, "--json", "list")
            assert listed.returncode == 0, listed.stderr
            plugs = json.loads(listed.stdout)
            assert len(plugs) == 3 and all(p["online"] for p in plugs)
            assert "NAME" in ctl(stateDir, "list").stdout

            plugId = plugs[0]["id"]
            first, second = ("off", "on") if plugs[0]["relay"] == "on" else ("on", "off")
            result = ctl(stateDir, first, plugId[:8])
            assert result.returncode == 0 and f"is {first}" in result.stdout, result.stderr
            simLines.waitJSON(lambda e: e.get("event") == "relay" and e.get("plug") == plugId and e["relay"] == first)
            result = ctl(stateDir, "--json", second, plugId)
            assert result.returncode == 0 and json.loads(result.stdout)["relay"] == second
            simLines.waitJSON(lambda e: e.get("event") == "relay" and e.get("plug") == plugId and e["relay"] == second)

            watcher = subprocess.Popen([str(BIN / "vesyncctl"), "--state-dir", stateDir, "--json", "watch"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            procs.append(watcher)
            watched, watchNotes = _Lines(watcher.stdout), _Lines(watcher.stderr)
            watchNotes.waitLine(lambda line: "watching events" in line)
            sim.stdin.write("press 0\n")
            sim.stdin.flush()
            event = watched.waitJSON(lambda e: e.get("event") == "relay" and e["data"].get("cause") == "button")
            assert event["data"]["relay"] in (True, False) and event["at"].endswith("Z")

            doctor = ctl(stateDir, "doctor", "--json")
            checks = {c["name"]: c for c in json.loads(doctor.stdout)}
            assert set(checks["daemon"]) == {"name", "level", "message", "fix"}
            assert checks["daemon"]["level"] == "OK", checks["daemon"]
            responder = checks["dns vesyncd responder"]
            assert "no answer" not in responder["message"], responder
            assert "server2.vesync.com" in responder["message"] or "127.0.0.1" in responder["message"], responder
            plugChecks = [c for name, c in checks.items() if name.startswith("plug ")]
            assert len(plugChecks) == 3 and all(c["level"] == "OK" for c in plugChecks)
            assert all("firmware 1.89" in c["message"] and "127.0.0.1" in c["message"] for c in plugChecks)
            assert doctor.returncode == (1 if any(c["level"] == "FAIL" for c in checks.values()) else 0)

            setupPort = _freePort()
            fresh = subprocess.Popen([str(BIN / "vesyncd-sim"), "--setup-mode", "--listen", f"127.0.0.1:{setupPort}",
                                      "--server-port", str(plugPort), "--seed", "provisioned", "--events"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(fresh)
            freshLines = _Lines(fresh.stdout)
            freshLines.waitJSON(lambda e: e.get("event") == "setup_mode")
            result = ctl(stateDir, "provision", "--ssid", "HomeNet", "--password", "s3cret-pass", "--server-ip",
                         "127.0.0.1", "--plug-address", f"127.0.0.1:{setupPort}", "--timeout", "10")
            assert result.returncode == 0, result.stderr
            assert "vesyncctl list" in result.stdout
            assert "s3cret-pass" not in result.stdout + result.stderr
            new = watched.waitJSON(lambda e: e.get("event") == "plug_new")
            freshLines.waitJSON(lambda e: e.get("event") == "online")
            switched = ctl(stateDir, "--json", "off", new["plug"][:12])
            assert switched.returncode == 0, switched.stderr
            assert json.loads(switched.stdout)["relay"] == "off"
            freshLines.waitJSON(lambda e: e.get("event") == "relay" and e.get("relay") == "off")
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
        assert "s3cret-pass" not in "".join(freshLines.seen)
