"""
Hostile-device attacks on the plug port, for the LAN part of the hardening run (L{bench.hardening.lan}).

 - deflate-client: real third-party WebSocket clients (Python's C{websockets}, which like browsers
   and npm C{ws} offers permessage-deflate by default) log in as a firmware 1.x plug and do a
   C{/ka} -> C{/kr} round trip.  Held when every one gets its 101 and its C{/kr} at once.
 - control-chars: a plug logs in with terminal escapes (clear screen, window title, bell), raw C1
   controls, DEL and bidi overrides in every login string, in unknown fields and in an unknown URI.
   Held when neither the HTTP API's strings nor C{vesyncctl list}/C{status} output carry any of them.

Each attack is synchronous, talks to 127.0.0.1 only and ends within about 30 s.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import Any, Callable

from bench.hardening.rawplug import RawPlug, strings, unsafeCharacters, vesyncctl

#: What a plug sends in every string field of the control-chars attack.
HOSTILE = ["\x1b[2J\x1b[H", "\x1b]0;owned\x07", "\x07\x07\x07", "\u009b31mred", "a\x7fb",
           "\u202eevil\u202c", "one\u2028two", "\u200bzero"]
HOSTILE_ID = "hostile-strings"
DEFLATE_ID = "deflate-client"
#: Seconds the attacks may take in all (the LAN part allows each about 30 s).
BUDGET = 25.0


def _login(ident: str, strings: list[str] | None = None) -> dict[str, Any]:
    """A firmware 1.89 login; with C{strings}, every string field but the id carries one of them."""
    login: dict[str, Any] = {
        "account": "0", "id": ident, "deviceName": "vesync_wifi_outlet", "deviceVersion": "1.5",
        "deviceVersionCode": 5, "type": "wifi-switch", "apptype": "switch-measure",
        "firmName": "cosytek_firm_a", "firmVersion": "1.89", "firmVersionCode": 89, "key": 0, "relay": "open",
    }
    if strings:
        for i, name in enumerate(("account", "deviceName", "deviceVersion", "type", "apptype", "firmName",
                                  "firmVersion")):
            login[name] = strings[i % len(strings)]
        login["\x1b[31mnote\x07"] = {"\u202ekey": strings}
    return login


# -- deflate-client ----------------------------------------------------------------------------------


def deflateClient(target: Any) -> dict[str, Any]:
    """Log in with the websockets library (permessage-deflate offered) and time 101 + /ka -> /kr."""
    try:
        from websockets.sync.client import connect
    except ImportError:
        return {"count": 0, "outcome": "skipped", "detail": "the websockets library is not installed"}
    wanted = 5 if target.quick else 20
    url = f"ws://{target.host}:{target.plugPort}/gnws"
    done, failures, accepted, times = 0, [], [], []
    start = time.monotonic()
    for _ in range(wanted):
        if time.monotonic() - start > BUDGET or len(failures) >= 3:
            break
        t0 = time.monotonic()
        try:
            with connect(url, open_timeout=5, close_timeout=2) as conn:
                offered = conn.request.headers.get("Sec-WebSocket-Extensions") or ""
                extension = conn.response.headers.get("Sec-WebSocket-Extensions")
                conn.send(json.dumps(_login(DEFLATE_ID)))
                reply = json.loads(conn.recv(timeout=5))
                conn.send(json.dumps({"uri": "/ka", "rssi": -50}))
                kr = json.loads(conn.recv(timeout=5))
            if "permessage-deflate" not in offered:
                failures.append("the client did not offer permessage-deflate")
            elif reply.get("uri") != "/loginReply" or kr.get("uri") != "/kr":
                failures.append(f"unexpected replies {reply.get('uri')!r}, {kr.get('uri')!r}")
            else:
                done += 1
                times.append(time.monotonic() - t0)
                if extension:
                    accepted.append(extension)
        except Exception as e:  # a hang shows as a timeout here: the bug this attack looks for
            failures.append(f"{type(e).__name__}: {e}"[:120])
    tried = done + len(failures)
    slowest = f"{max(times) * 1000:.0f} ms" if times else "-"
    detail = (f"{done}/{tried} websockets clients offering permessage-deflate logged in and got /kr "
              f"(slowest {slowest}); extension accepted by the server: {accepted[0] if accepted else 'none'}")
    if failures:
        detail += f"; first failure: {failures[0]}"
    if done == 0:
        outcome = "broke"
    elif failures or accepted:
        outcome = "degraded"
    else:
        outcome = "held"
    return {"count": tried, "outcome": outcome, "detail": detail}


# -- control-chars ---------------------------------------------------------------------------------------


def controlChars(target: Any) -> dict[str, Any]:
    """Send hostile strings in every field a plug controls, then look for them in the API and the CLI."""
    plug = RawPlug(target.host, target.plugPort)
    sent = 0
    try:
        plug.send(_login(HOSTILE_ID, HOSTILE))
        sent += 8
        if plug.receive().get("uri") != "/loginReply":
            return {"count": sent, "outcome": "degraded", "detail": "the hostile login got no /loginReply"}
        for message in ({"uri": "/nonsense\x1b[2J\x07", "x\x1b]0;t\x07": HOSTILE},
                        {"uri": "/timer", "error": 0, "\u202ename": "\x1b[5m\u009b", "list": HOSTILE},
                        {"uri": "/ka", "rssi": -40, "\x07": "\x1b[2J"}):
            plug.send(message)
            sent += 1
        # The /kr for the /ka above: everything sent before it has been handled.
        while plug.receive().get("uri") != "/kr":
            pass
        found: dict[str, list[str]] = {}
        request = urllib.request.Request(f"http://{target.host}:{target.httpPort}/api/plugs",
                                         headers={"Authorization": f"Bearer {target.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            api = json.loads(response.read())
        bad = sorted({ch for s in strings(api) for ch in unsafeCharacters(s)})
        if bad:
            found["/api/plugs"] = bad
        ctl = vesyncctl(target)
        for args in (["list"], ["status", HOSTILE_ID], ["info"]):
            out = subprocess.run([*ctl, *args], capture_output=True, timeout=15)
            text = (out.stdout + out.stderr).decode("utf-8", "replace")
            bad = unsafeCharacters(text)
            if bad:
                found["vesyncctl " + args[0]] = bad
    finally:
        plug.close()
    subprocess.run([*vesyncctl(target), "forget", HOSTILE_ID], capture_output=True, timeout=15)
    if found:
        shown = "; ".join(f"{where}: {', '.join(repr(ch) for ch in chars)}" for where, chars in found.items())
        return {"count": sent, "outcome": "broke", "detail": f"raw control characters reached {shown}"}
    return {"count": sent, "outcome": "held",
            "detail": f"{sent} hostile messages; /api/plugs strings and vesyncctl list/status/info output "
                      "hold no control, bidi or format character"}


ATTACKS: list[tuple[str, Callable[[Any], dict[str, Any]]]] = [
    ("deflate-client", deflateClient),
    ("control-chars", controlChars),
]
