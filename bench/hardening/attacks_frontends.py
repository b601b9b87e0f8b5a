"""
Attacks on the web and MQTT front ends, for the LAN part of the hardening run (L{bench.hardening.lan}).

 - http-slow-headers: one hostile host (127.0.0.2) opens a few thousand HTTP connections and trickles
   their request heads a byte at a time, reopening what the daemon closes.  Meanwhile a new plug must
   still get its WebSocket upgrade, C{vesyncctl info} must work, and an HTTP request from the user's
   own host (127.0.0.1) must be answered.  Held when all of those worked throughout and the daemon
   held at most its per-host cap of the attacker's connections (read from its C{/metrics}).
 - mqtt-republish: ten C{online}s on C{homeassistant/status} in a row, then a relay toggle over MQTT.
   Held when they brought at most two full sets of discovery configs and the toggle was confirmed
   within two seconds.  Skipped when no broker runs.
 - http-nested-json: JSON nested thousands deep (and other hostile bodies) to the login and rename
   routes.  Held when each got a C{400} with a JSON error, the daemon's log holds no traceback and
   the API still answers.

Each attack is synchronous, talks to 127.0.0.1 (and 127.0.0.2, also loopback) only and ends within
about 30 s.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.hardening.common import raiseFileLimit
from vesyncd.sim.plug import upgradeRequest

#: The attacking host: another loopback address, so the user's own 127.0.0.1 is a different source.
ATTACKER = "127.0.0.2"


def _source(target: Any, port: int) -> str:
    """The attacker's source address: 127.0.0.2 where this machine routes it, else the user's own."""
    try:
        with socket.create_connection((target.host, port), timeout=2, source_address=(ATTACKER, 0)):
            return ATTACKER
    except OSError:
        return target.host


def _httpGet(target: Any, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One authenticated GET from the user's host: (status, body), or (0, reason) when it failed."""
    conn = http.client.HTTPConnection(target.host, target.httpPort, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {target.token}"})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def _plugUpgrade(target: Any) -> bool:
    """True when a new plug connection gets its WebSocket upgrade (the daemon still has a handle for it)."""
    try:
        with socket.create_connection((target.host, target.plugPort), timeout=5) as sock:
            sock.sendall(upgradeRequest(target.host, target.plugPort))
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                data = sock.recv(4096)
                if not data:
                    return False
                head += data
            return head.startswith(b"HTTP/1.1 101")
    except OSError:
        return False


def _vesyncctl(target: Any, *args: str) -> bool:
    """True when C{vesyncctl ARGS} over the daemon's control port succeeds within 15 s."""
    command = [str(Path(sys.executable).parent / "vesyncctl"), "--state-dir", str(target.stateDir),
               "--connect", f"tcp:{target.host}:{target.controlPort}", *args]
    try:
        return subprocess.run(command, capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _metric(text: bytes, name: str) -> float | None:
    """One unlabelled sample of a Prometheus text exposition."""
    match = re.search(rb"^" + re.escape(name.encode()) + rb" ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


# -- http-slow-headers -----------------------------------------------------------------------------------


def _dropClosed(held: list[socket.socket], wait: float) -> int:
    """Close and forget the sockets the server closed (EOF or reset); returns how many."""
    closed = []
    for start in range(0, len(held), 500):  # select() takes a bounded number of descriptors
        readable, _, _ = select.select(held[start:start + 500], [], [], wait if start == 0 else 0)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 503"):
                closed.append(sock)
    for sock in closed:
        held.remove(sock)
        sock.close()
    return len(closed)


def slowHeaders(target: Any) -> dict[str, Any]:
    """Thousands of connections trickling their request heads while plugs, vesyncctl and the user need the daemon."""
    wanted = 1000 if target.quick else 3000
    seconds = 15.0 if target.quick else 25.0
    raiseFileLimit(wanted + 500)
    source = _source(target, target.httpPort)
    head = b"GET /api/status HTTP/1.1\r\nHost: vesyncd\r\nX-Slow: " + b"a" * 64
    held: list[socket.socket] = []
    sent: dict[socket.socket, int] = {}
    opened = failedOpens = closedByServer = 0
    checks = {"plug upgrade": [0, 0], "vesyncctl info": [0, 0], "user's HTTP": [0, 0]}
    daemonHeld: list[float] = []
    start = time.monotonic()
    nextTrickle = nextCheck = start
    try:
        while time.monotonic() - start < seconds:
            # Top up what the daemon closed, spread over the attack: twice the wanted number in all.
            while (len(held) < wanted and time.monotonic() - start < seconds
                   and opened < wanted * (1 + (time.monotonic() - start) / seconds)):
                try:
                    sock = socket.create_connection((target.host, target.httpPort), timeout=2,
                                                    source_address=(source, 0))
                except OSError:
                    failedOpens += 1
                    break
                sock.setblocking(False)
                try:
                    sock.send(head[:1])
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
                sent[sock] = 1
                opened += 1
            closedByServer += _dropClosed(held, 0.2)
            now = time.monotonic()
            if now >= nextTrickle:
                nextTrickle = now + 2.0
                for sock in list(held):
                    position = sent.get(sock, 1)
                    try:
                        sock.send(head[position:position + 1] or b"a")
                        sent[sock] = position + 1
                    except OSError:
                        held.remove(sock)
                        sock.close()
                        closedByServer += 1
            if now >= nextCheck:
                nextCheck = now + 3.0
                for name, ok in (("plug upgrade", _plugUpgrade(target)), ("vesyncctl info", _vesyncctl(target, "info"))):
                    checks[name][0] += ok
                    checks[name][1] += 1
                status, body = _httpGet(target, "/metrics")
                checks["user's HTTP"][0] += status == 200
                checks["user's HTTP"][1] += 1
                if status == 200:
                    value = _metric(body, "vesyncd_http_connections")
                    if value is not None:
                        daemonHeld.append(value)
    finally:
        for sock in held:
            sock.close()
    status, body = _httpGet(target, "/metrics")
    refused = {reason: _metricLabelled(body, "vesyncd_http_connections_refused_total", reason)
               for reason in ("total", "per_host")} if status == 200 else {}
    timeouts = _metric(body, "vesyncd_http_request_timeouts_total") if status == 200 else None
    most = max(daemonHeld, default=None)
    summary = ", ".join(f"{name} {ok}/{n}" for name, (ok, n) in checks.items())
    detail = (f"{opened} slow connections from {source} ({failedOpens} could not be opened, {closedByServer} closed "
              f"by the daemon); the daemon held at most {most if most is None else int(most)} HTTP connections; "
              f"refused {refused}, cut by the request deadline {timeouts}; {summary}")
    if any(ok < n for name, (ok, n) in checks.items() if name != "user's HTTP") or not checks["plug upgrade"][1]:
        outcome = "broke"
    elif source == target.host or checks["user's HTTP"][0] < checks["user's HTTP"][1] or most is None or most > 64:
        outcome = "degraded"
    else:
        outcome = "held"
    return {"count": opened, "outcome": outcome, "detail": detail}


def _metricLabelled(text: bytes, name: str, reason: str) -> float | None:
    """The sample of C{name{reason="..."}}."""
    match = re.search(rb"^" + re.escape(name.encode()) + rb'\{reason="' + reason.encode() + rb'"\} ([0-9.e+-]+)$',
                      text, re.M)
    return float(match.group(1)) if match else None


# -- mqtt-republish --------------------------------------------------------------------------------------


class _Listener:
    """A paho client (its own network thread) counting discovery configs and following one relay topic."""

    def __init__(self, port: int, relayTopic: str) -> None:
        from paho.mqtt import client as pahoclient

        self.lock = threading.Lock()
        self.configs = 0
        self.relay: bytes | None = None
        self.relayTopic = relayTopic
        self.subscribed = threading.Event()
        self.client = pahoclient.Client(pahoclient.CallbackAPIVersion.VERSION2, client_id="hardening-mqtt")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([("homeassistant/#", 0), (relayTopic, 0)])
        self.client.on_subscribe = lambda c, u, mid, rc, p: self.subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            if msg.topic == self.relayTopic:
                self.relay = bytes(msg.payload)
            elif not msg.retain and msg.topic.endswith("/config") and "/vesyncd/" in msg.topic:
                self.configs += 1

    def count(self) -> int:
        """Discovery configs published live (not the retained copies sent on subscribing)."""
        with self.lock:
            return self.configs

    def settle(self, quiet: float, limit: float) -> int:
        """Wait until no config arrived for C{quiet} seconds (at most C{limit}); the count then."""
        end = time.monotonic() + limit
        last, lastChange = self.count(), time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.1)
            now = self.count()
            if now != last:
                last, lastChange = now, time.monotonic()
            elif time.monotonic() - lastChange >= quiet:
                break
        return last

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def mqttRepublish(target: Any) -> dict[str, Any]:
    """Ten Home Assistant 'online's in a row: at most two full republishes, and a toggle stays prompt."""
    if target.mqttPort is None:
        return {"count": 0, "outcome": "skipped", "detail": "no MQTT broker (mosquitto is not installed)"}
    victim = target.victims[-1]  # has no alias: its topics use its id
    listener = _Listener(target.mqttPort, f"vesyncd/{victim}/relay")
    try:
        if not listener.subscribed.wait(5):
            return {"count": 0, "outcome": "broke", "detail": "could not subscribe to the broker"}
        time.sleep(1.0)  # the retained copies arrive first
        # One 'online' after a quiet spell: the size of one full set of discovery configs.
        first = time.monotonic()
        listener.client.publish("homeassistant/status", b"online", qos=1)
        fullSet = listener.settle(quiet=1.5, limit=10)
        before = listener.count()
        storm = 10
        for _ in range(storm):
            listener.client.publish("homeassistant/status", b"online", qos=1)
        time.sleep(0.5)
        # A toggle over MQTT while the storm's republishes are due.
        was = listener.relay
        t0 = time.monotonic()
        listener.client.publish(f"vesyncd/{victim}/relay/set", b"TOGGLE", qos=1)
        toggled = None
        while time.monotonic() - t0 < 10:
            if listener.relay not in (None, was):
                toggled = time.monotonic() - t0
                break
            time.sleep(0.02)
        # The daemon may hold a republish back until 10 s after the first 'online': wait past that,
        # then until the configs stop coming.
        time.sleep(max(0.0, first + 12.0 - time.monotonic()))
        after = listener.settle(quiet=2.0, limit=10) - before
    finally:
        listener.close()
    sets = after / fullSet if fullSet else None
    detail = (f"{storm + 1} 'online's; one full set is {fullSet} discovery configs, the storm of {storm} brought "
              f"{after} ({'?' if sets is None else f'{sets:.1f}'} sets); toggle confirmed "
              f"{'never' if toggled is None else f'in {toggled:.2f} s'}")
    if not fullSet or toggled is None or sets is None or sets > 5:
        outcome = "broke"
    elif sets > 2.0 or toggled > 2.0:
        outcome = "degraded"
    else:
        outcome = "held"
    return {"count": storm + 1, "outcome": outcome, "detail": detail}


# -- http-nested-json ------------------------------------------------------------------------------------


def _bodies(victim: str) -> list[tuple[str, str, bytes]]:
    """Hostile JSON bodies for the login and rename routes."""
    nested = [b"[" * 10_000, b"[" * 5_000 + b"]" * 5_000, b'{"a":' * 2_500 + b"1" + b"}" * 2_500,
              b'{"token": ' + b"[" * 3_000 + b"]" * 3_000 + b"}", b'{"alias": NaN}', b"\xff\xfe", b'"just a string"']
    routes = [("POST", "/api/session"), ("PUT", f"/api/plugs/{victim}/alias")]
    return [(method, path, body) for method, path in routes for body in nested]


def nestedJSON(target: Any) -> dict[str, Any]:
    """Deeply nested and otherwise hostile JSON bodies: each a 400 with a JSON error, no traceback in the log."""
    log = target.work / "daemon.log"
    logStart = log.stat().st_size if log.exists() else 0
    rounds = 5 if target.quick else 20
    answers: dict[int, int] = {}
    notJSON = 0
    count = 0
    for _ in range(rounds):
        for method, path, body in _bodies(target.victims[-1]):
            conn = http.client.HTTPConnection(target.host, target.httpPort, timeout=10)
            try:
                conn.request(method, path, body=body, headers={"Authorization": f"Bearer {target.token}",
                                                               "Content-Type": "application/json"})
                response = conn.getresponse()
                status, raw = response.status, response.read()
            except (OSError, http.client.HTTPException):
                status, raw = 0, b""
            finally:
                conn.close()
            count += 1
            answers[status] = answers.get(status, 0) + 1
            try:
                if status and "error" not in json.loads(raw):
                    notJSON += 1
            except ValueError:
                notJSON += 1
    alive = _httpGet(target, "/api/status")[0] == 200
    logged = ""
    if log.exists():
        with open(log, "rb") as f:
            f.seek(logStart)
            logged = f.read(4 << 20).decode("utf-8", "replace")
    tracebacks = logged.count("Traceback") + logged.count("RecursionError")
    detail = (f"{count} hostile bodies; answers {dict(sorted(answers.items()))}; {notJSON} without a JSON error; "
              f"{tracebacks} tracebacks in the daemon's log; API answering afterwards: {'yes' if alive else 'no'}")
    if not alive or answers.get(0) or any(status >= 500 for status in answers):
        outcome = "broke"
    elif set(answers) != {400} or notJSON or tracebacks:
        outcome = "degraded"
    else:
        outcome = "held"
    return {"count": count, "outcome": outcome, "detail": detail}


ATTACKS = [("http-slow-headers", slowHeaders), ("mqtt-republish", mqttRepublish), ("http-nested-json", nestedJSON)]
