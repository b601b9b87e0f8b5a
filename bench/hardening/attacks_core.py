"""
Hostile-device attacks on what the core records, for the LAN part of the hardening run
(L{bench.hardening.lan}).  Each plays a device on 127.0.0.1 with plain asyncio sockets (no
reactor), is bounded in count and time (about 25 s at most, less with C{quick}), and judges its
own outcome by reading the victims' state through the HTTP API afterwards.

 - energy-poisoning: log in with a victim's id, send the largest C{/report}s the per-report check
   allows, reconnect, repeat.  Held when the victim's lifetime energy grew by no more than
   4000 W x (the wall time + the first-report allowance).
 - name-squatting: log in with a named victim's name as id (as typed, lower and upper case).
   Held when every such login is refused and the name still resolves to the victim.
 - takeover: log in with a victim's id and another account and firmware.  Held when the victim's
   state shows the conflict, naming the fields that differ.
 - id-flood: log in with hundreds of ids never seen before, as fast as possible.  Held when no
   more than the per-minute limit were taken and every victim is still known.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from vesyncd.sim.plug import maskedFrame, upgradeRequest

#: Seconds each attack may take at most.
BUDGET = 25.0
#: Watts and seconds of the largest report the per-report check allows (a day at 4000 W).
MAX_WATTS, DAY = 4000, 86400
#: Seconds of energy a plug's first report may claim before its first login, plus the slack.
ALLOWANCE = 210.0
#: The daemon's default limit on ids never seen before, per minute.
NEW_PER_MINUTE = 60


def _login(ident: str, account: str = "1234567", firmware: str = "1.89") -> dict[str, Any]:
    """A firmware 1.x login as a real plug sends it (protocol.md 1.2)."""
    return {"account": account, "id": ident, "deviceName": "vesync_wifi_outlet", "deviceVersion": "1.5",
            "deviceVersionCode": 5, "type": "wifi-switch", "apptype": "switch-measure",
            "firmName": "cosytek_firm_a", "firmVersion": firmware, "firmVersionCode": 89, "key": 0,
            "relay": "open"}


class Device:
    """One hostile plug connection over asyncio streams: the plug's upgrade, masked frames out,
    the server's small unmasked frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int, timeout: float = 5.0) -> "Device":
        """Connect and finish the WebSocket upgrade; raises ConnectionError when refused."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        device = cls(reader, writer)
        writer.write(upgradeRequest(host, port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            device.close()
            raise ConnectionError(f"upgrade refused: {head[:40]!r}")
        return device

    def send(self, obj: dict[str, Any]) -> None:
        """Queue one JSON text frame."""
        self.writer.write(maskedFrame(json.dumps(obj).encode(), False))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next JSON message, or None when the server closes (close frame or end of stream)."""
        try:
            while True:
                first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
                n = second & 0x7F
                if n == 126:
                    n = int.from_bytes(await self.reader.readexactly(2), "big")
                elif n == 127:
                    return None  # the server never sends that much: treat as hostile and stop
                payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
                if first & 0x0F == 8:
                    return None
                if first & 0x0F == 1:
                    return json.loads(payload)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ValueError):
            return None

    async def login(self, login: dict[str, Any]) -> bool:
        """Send a login; True if the server answered with C{/loginReply}."""
        self.send(login)
        reply = await self.receive()
        return bool(reply and reply.get("uri") == "/loginReply")

    def close(self) -> None:
        """Drop the connection at once."""
        self.writer.transport.abort()


def _get(target: Any, path: str) -> Any:
    """GET an HTTP API path with the control token; the decoded JSON, or None for an error status."""
    request = urllib.request.Request(f"http://{target.host}:{target.httpPort}{path}",
                                     headers={"Authorization": f"Bearer {target.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        return {"error_status": e.code}


def _plug(target: Any, ref: str) -> dict[str, Any]:
    """One plug's JSON by id or name."""
    return _get(target, "/api/plugs/" + urllib.parse.quote(ref, safe="")) or {}


def _names(target: Any) -> dict[str, str]:
    """The named victims (id -> name), from the target or, failing that, from the API."""
    names = dict(getattr(target, "names", None) or {})
    if not names:
        for plug in (_get(target, "/api/plugs") or {}).get("plugs", []):
            if plug.get("alias") and plug["id"] in target.victims:
                names[plug["id"]] = plug["alias"]
    return names


# -- energy-poisoning ------------------------------------------------------------------------------

async def _poison(target: Any, victim: str, rounds: int, deadline: float) -> tuple[int, int]:
    """Rounds of: log in as the victim, send maximal reports, drop.  Returns (logins, reports)."""
    logins = reports = 0
    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        try:
            device = await Device.open(target.host, target.plugPort)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
            continue
        try:
            if await device.login(_login(victim)):
                logins += 1
                # Within the plug server's frame burst; each claims as much as the per-report check allows.
                for seconds in (DAY, 3600, 600, 200, 10, 0) * 4:
                    device.send({"uri": "/report", "e": format(MAX_WATTS * max(seconds, 1), "x"),
                                 "t": format(seconds, "x")})
                    reports += 1
                device.send({"uri": "/ka", "rssi": -50})
                while (reply := await device.receive()) is not None and reply.get("uri") != "/kr":
                    pass
        finally:
            device.close()
        await asyncio.sleep(0.3)
    return logins, reports


def energyPoisoning(target: Any) -> dict[str, Any]:
    """Log in as a victim and send maximal reports over several reconnects; compare with the wall time."""
    victim = target.victims[-1]
    before = _plug(target, victim)
    if "id" not in before:
        return {"count": 0, "outcome": "error", "detail": f"victim {victim} not readable: {before}"}
    start = time.monotonic()
    logins, reports = asyncio.run(_poison(target, victim, 6 if target.quick else 20, start + BUDGET - 5))
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # the daemon has handled the last frames
    after = _plug(target, victim)
    grown = (after.get("energy_lifetime_kwh") or 0.0) - (before.get("energy_lifetime_kwh") or 0.0)
    bound = MAX_WATTS * (elapsed + ALLOWANCE) / 3.6e6
    claimed = MAX_WATTS * sum(max(s, 1) for s in (DAY, 3600, 600, 200, 10, 0)) * 4 * logins / 3.6e6
    detail = (f"{logins} logins as {victim[:8]}, {reports} reports claiming {claimed:.1f} kWh in {elapsed:.1f} s; "
              f"lifetime grew {grown:.4f} kWh (bound {bound:.4f} kWh), refused "
              f"{after.get('energy_refused_wh', 0) / 1000:.1f} kWh on record")
    if logins == 0:
        return {"count": reports, "outcome": "degraded", "detail": "no login as the victim got in; " + detail}
    outcome = "held" if grown <= bound + 1e-6 else ("degraded" if grown < 1.0 else "broke")
    return {"count": reports, "outcome": outcome, "detail": detail}


# -- name-squatting --------------------------------------------------------------------------------

async def _squat(target: Any, ids: list[str]) -> list[str]:
    """Log in with each id; the ids the server answered."""
    got: list[str] = []
    for ident in ids:
        try:
            device = await Device.open(target.host, target.plugPort)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            continue
        try:
            if await device.login(_login(ident, account="666")):
                got.append(ident)
        finally:
            device.close()
    return got


def nameSquatting(target: Any) -> dict[str, Any]:
    """Log in with named victims' names as ids; then check the names still reach the victims."""
    names = _names(target)
    if not names:
        return {"count": 0, "outcome": "skipped", "detail": "no named victims"}
    chosen = list(names.items())[:2 if target.quick else 5]
    ids = [form for _, name in chosen for form in dict.fromkeys((name, name.lower(), name.upper()))]
    answered = asyncio.run(_squat(target, ids))
    wrong = []
    for victim, name in chosen:
        for form in (name, name.lower()):
            found = _plug(target, form)
            if found.get("id") != victim:
                wrong.append(f"{form!r} -> {found.get('id') or found}")
    detail = (f"{len(ids)} logins with victims' names as ids: {len(answered)} answered; "
              f"{len(chosen) * 2} name look-ups, {len(wrong)} not the victim")
    if wrong:
        detail += f" (first: {wrong[0]})"
    outcome = "held" if not answered and not wrong else ("degraded" if not wrong else "broke")
    return {"count": len(ids), "outcome": outcome, "detail": detail}


# -- takeover ----------------------------------------------------------------------------------------

async def _takeover(target: Any, victim: str) -> bool:
    try:
        device = await Device.open(target.host, target.plugPort)
    except (OSError, ConnectionError, asyncio.TimeoutError):
        return False
    try:
        return await device.login(_login(victim, account="666", firmware="9.99"))
    finally:
        device.close()


def takeover(target: Any) -> dict[str, Any]:
    """Log in as a victim with another account and firmware; the victim must show the conflict."""
    victim = target.victims[2 % len(target.victims)]
    got = asyncio.run(_takeover(target, victim))
    time.sleep(0.5)
    conflict = _plug(target, victim).get("conflict")
    if not got:
        return {"count": 1, "outcome": "degraded", "detail": "the takeover login was not answered"}
    if not conflict:
        return {"count": 1, "outcome": "broke", "detail": f"login as {victim[:8]} with account 666 left no conflict"}
    return {"count": 1, "outcome": "held",
            "detail": f"conflict on {victim[:8]} recorded: fields {', '.join(conflict.get('fields', []))}, "
                      f"first account {conflict.get('first', {}).get('account')!r}, now "
                      f"{conflict.get('now', {}).get('account')!r}"}


# -- id-flood ----------------------------------------------------------------------------------------

async def _flood(target: Any, count: int, deadline: float) -> tuple[int, int, int]:
    """Log in with C{count} new ids, 100 at a time.  Returns (answered, refused, failed to connect)."""
    answered = refused = failed = 0
    tag = os.urandom(3).hex()
    slots = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        nonlocal answered, refused, failed
        async with slots:
            if time.monotonic() > deadline:
                return
            try:
                device = await Device.open(target.host, target.plugPort)
            except (OSError, ConnectionError, asyncio.TimeoutError):
                failed += 1
                return
            try:
                if await device.login(_login(f"flood-{tag}-{i:05d}")):
                    answered += 1
                else:
                    refused += 1
            finally:
                device.close()

    await asyncio.gather(*(one(i) for i in range(count)))
    return answered, refused, failed


def idFlood(target: Any) -> dict[str, Any]:
    """Log in with many ids never seen before; count how many the daemon took and check the victims."""
    before = len((_get(target, "/api/plugs") or {}).get("plugs", []))
    count = 300 if target.quick else 2000
    answered, refused, failed = asyncio.run(_flood(target, count, time.monotonic() + BUDGET - 5))
    plugs = (_get(target, "/api/plugs") or {}).get("plugs", [])
    known = {p["id"] for p in plugs}
    missing = [v for v in target.victims if v not in known]
    taken = len(plugs) - before
    detail = (f"{answered + refused + failed} logins with new ids: {answered} answered, {refused} refused, "
              f"{failed} not connected; known plugs {before} -> {len(plugs)}; victims missing {len(missing)}")
    if missing:
        outcome = "broke"
    elif answered <= NEW_PER_MINUTE and taken <= NEW_PER_MINUTE:
        outcome = "held"
    elif taken <= 10 * NEW_PER_MINUTE:
        outcome = "degraded"
    else:
        outcome = "broke"
    return {"count": answered + refused + failed, "outcome": outcome, "detail": detail}


ATTACKS: list[tuple[str, Callable[[Any], dict[str, Any]]]] = [
    ("energy-poisoning", energyPoisoning),
    ("name-squatting", nameSquatting),
    ("takeover", takeover),
    ("id-flood", idFlood),
]
