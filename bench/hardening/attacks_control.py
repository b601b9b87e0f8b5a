"""
Attacks on the control plane, for the LAN part of the hardening run (L{bench.hardening.lan}).

 - control-flood: one hostile host (source address 127.0.0.2) opens hundreds of control connections
   that never log in, and reopens each one the daemon closes, for the whole attack.  Meanwhile the
   user's own C{vesyncctl info} (from 127.0.0.1) must keep working.  Held when the daemon kept at
   most its per-host cap of the attacker's connections open and every C{vesyncctl} call succeeded.
 - terminal-escapes: a plug logs in with terminal escapes (clear screen, window title, bell, C1 CSI,
   bidi override, line separator) in every login string while C{vesyncctl watch} runs; then
   C{status}, C{list}, C{pending}, C{info} and a C{status} of a hostile name (the error path) run.
   Held when no output of C{vesyncctl} (standard output or error) carries a raw control character.

Each attack is synchronous, talks to 127.0.0.1 (and 127.0.0.2, also loopback) only and ends within
about 30 s.
"""

from __future__ import annotations

import queue
import select
import socket
import subprocess
import threading
import time
from typing import Any

from bench.hardening.rawplug import RawPlug, runVesyncctl, unsafeCharacters, vesyncctl

#: The attacking host: another loopback address, so the user's own 127.0.0.1 is a different source.
ATTACKER = "127.0.0.2"
#: Terminal controls a plug puts in its strings: clear screen, OSC window title, bell, C1 CSI,
#: DEL, bidi override, line separator, zero-width space.
HOSTILE = ["\x1b[2J\x1b[H", "\x1b]0;owned\x07", "\x07\x07", "\u009b31mred", "a\x7fb", "\u202eevil\u202c",
           "one\u2028two", "\u200bzero"]
ESCAPES_ID = "terminal-escapes"
#: A plug name given on the command line that comes back in the daemon's error message.
HOSTILE_REF = "\x1b[2J\x1b]0;owned\x07\u202e"


# -- control-flood ---------------------------------------------------------------------------------------


def _open(target: Any, source: str) -> socket.socket | None:
    """One TCP connection to the control port from C{source}, or None when it cannot be made."""
    try:
        sock = socket.create_connection((target.host, target.controlPort), timeout=2, source_address=(source, 0))
    except OSError:
        return None
    sock.setblocking(False)
    return sock


def _closedByServer(socks: list[socket.socket], wait: float) -> list[socket.socket]:
    """The sockets among C{socks} that the server closed (EOF or reset) within C{wait} seconds."""
    closed: list[socket.socket] = []
    for start in range(0, len(socks), 500):  # select() takes a bounded number of descriptors
        chunk = socks[start:start + 500]
        readable, _, _ = select.select(chunk, [], [], wait if start == 0 else 0)
        for sock in readable:
            try:
                if sock.recv(4096) == b"":
                    closed.append(sock)
            except (ConnectionResetError, BrokenPipeError):
                closed.append(sock)
            except BlockingIOError:
                pass
    return closed


def controlFlood(target: Any) -> dict[str, Any]:
    """Hold as many unauthenticated control connections from one host as the daemon allows."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    except (ImportError, ValueError, OSError):
        pass
    wanted = 200 if target.quick else 600
    seconds = 10.0 if target.quick else 20.0
    source = ATTACKER
    probe = _open(target, source)
    if probe is None:
        source = target.host  # no second loopback address here: the flood shares the user's host
    else:
        probe.close()
    opened = refused = 0
    held: list[socket.socket] = []
    most = 0
    calls: list[tuple[int, float]] = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            while len(held) < wanted and time.monotonic() - start < seconds:
                sock = _open(target, source)
                if sock is None:
                    refused += 1
                    break
                opened += 1
                held.append(sock)
            # Settle: the daemon may not have accepted (and closed) the newest ones yet.
            settle = time.monotonic() + 3
            while time.monotonic() < settle:
                closed = _closedByServer(held, 0.5)
                if not closed:
                    break
                for sock in closed:
                    held.remove(sock)
                    sock.close()
                    refused += 1
            most = max(most, len(held))
            t0 = time.monotonic()
            result = runVesyncctl(target, "info")
            calls.append((result.returncode, time.monotonic() - t0))
    finally:
        for sock in held:
            sock.close()
    ok = sum(1 for code, _ in calls if code == 0)
    slowest = max((t for _, t in calls), default=0.0)
    detail = (f"{opened} connections opened from {source} without logging in; at most {most} kept open at once, "
              f"{refused} closed or refused; the user's vesyncctl info: {ok}/{len(calls)} ok "
              f"(slowest {slowest:.2f} s)")
    if not calls or ok < len(calls):
        outcome = "broke"
    elif source == target.host or most > 32:
        # With the user's own address, or no per-host cap to speak of, the user is at the flood's mercy.
        outcome = "degraded"
    else:
        outcome = "held"
    return {"count": opened, "outcome": outcome, "detail": detail}


# -- terminal-escapes ------------------------------------------------------------------------------------


def _hostileLogin() -> dict[str, Any]:
    """A firmware 1.89 login whose every string but the id carries terminal controls."""
    login: dict[str, Any] = {"id": ESCAPES_ID, "deviceVersionCode": 5, "firmVersionCode": 89, "key": 0,
                             "relay": "open"}
    for i, name in enumerate(("account", "deviceName", "deviceVersion", "type", "apptype", "firmName",
                              "firmVersion")):
        login[name] = HOSTILE[i % len(HOSTILE)] + "x"
    return login


def _drain(stream: Any, into: "queue.Queue[str | None]") -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def terminalEscapes(target: Any) -> dict[str, Any]:
    """Hostile login strings while `watch` runs, then every reading command: no raw control may reach a terminal."""
    watcher = subprocess.Popen([*vesyncctl(target), "watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outLines: queue.Queue[str | None] = queue.Queue()
    errLines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(watcher.stdout, outLines), daemon=True).start()
    threading.Thread(target=_drain, args=(watcher.stderr, errLines), daemon=True).start()
    outputs: dict[str, str] = {}
    failures: list[str] = []
    count = 0
    try:
        deadline = time.monotonic() + 10
        ready = ""
        while "watching events" not in ready and time.monotonic() < deadline:
            try:
                ready = errLines.get(timeout=max(0.0, deadline - time.monotonic())) or ""
            except queue.Empty:
                break
        if "watching events" not in ready:
            failures.append("vesyncctl watch did not start")
        plug = RawPlug(target.host, target.plugPort)
        try:
            plug.send(_hostileLogin())
            count += 1
            if plug.receive().get("uri") != "/loginReply":
                failures.append("the hostile login got no /loginReply")
            plug.send({"uri": "/ka", "rssi": -40})
            while plug.receive().get("uri") != "/kr":
                pass
            for args in (["status", ESCAPES_ID], ["list"], ["pending"], ["info"],
                         ["status", HOSTILE_REF], ["--json", "status", ESCAPES_ID]):
                result = runVesyncctl(target, *args)
                count += 1
                label = " ".join(args[:2]) if args[-1] != HOSTILE_REF else "status (hostile name)"
                outputs[label] = result.stdout + result.stderr
                if result.returncode not in (0, 1):
                    failures.append(f"vesyncctl {args[0]} exited {result.returncode}")
        finally:
            plug.close()
        # The watch has seen the hostile plug come online (and go offline as it left) by now.
        end = time.monotonic() + 5
        watched = []
        while time.monotonic() < end:
            try:
                line = outLines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            watched.append(line)
            if ESCAPES_ID in line and " offline" in line:
                break
        outputs["watch"] = "".join(watched)
    finally:
        watcher.terminate()
        try:
            watcher.wait(5)
        except subprocess.TimeoutExpired:
            watcher.kill()
        runVesyncctl(target, "forget", ESCAPES_ID)
    bad = {name: unsafeCharacters(text) for name, text in outputs.items() if unsafeCharacters(text)}
    sawPlug = ESCAPES_ID in outputs.get("watch", "")
    detail = (f"{len(outputs)} vesyncctl outputs read ({', '.join(outputs)}); watch saw the plug: "
              f"{'yes' if sawPlug else 'no'}")
    if bad:
        detail += "; raw controls in " + ", ".join(f"{k}: {[hex(ord(c)) for c in v]}" for k, v in bad.items())
        outcome = "broke"
    elif failures or not sawPlug:
        detail += "; " + "; ".join(failures or ["the watch never showed the hostile plug"])
        outcome = "degraded"
    else:
        outcome = "held"
    return {"count": count, "outcome": outcome, "detail": detail}


ATTACKS = [("control-flood", controlFlood), ("terminal-escapes", terminalEscapes)]
