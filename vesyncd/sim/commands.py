"""
Line commands for a running simulator (C{vesyncd-sim --events}), read from standard input.

C{press PLUG} presses a plug's button, C{load PLUG WATTS} changes its load, C{status} prints one
line per plug.  PLUG is an index or an id prefix.  Answers and errors go out as JSON events.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.protocol import Protocol

from vesyncd.sim.runner import Simulator

#: The longest command line accepted; a longer one is reported and thrown away.
MAX_LINE = 4096


class StdinCommands(Protocol):
    """Line commands on standard input: C{press PLUG}, C{load PLUG WATTS}, C{status}."""

    def __init__(self, sim: Simulator, out: Callable[[dict[str, Any]], None]) -> None:
        self.sim = sim
        self.out = out
        self._buf = b""

    def dataReceived(self, data: bytes) -> None:
        """Run every complete line; a line longer than L{MAX_LINE} is an error, not a memory leak."""
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self.command(line.decode("utf-8", "replace").split())
        if len(self._buf) > MAX_LINE:
            self._buf = b""
            self.out({"event": "error", "error": f"command line longer than {MAX_LINE} bytes"})

    def command(self, words: list[str]) -> None:
        """Run one command given as words; a bad one is answered with an C{error} event."""
        try:
            if words[:1] == ["press"]:
                self.sim.find(words[1]).press()
            elif words[:1] == ["load"]:
                self.sim.find(words[1]).load_w = float(words[2])
            elif words[:1] == ["status"]:
                for p in self.sim.plugs:
                    self.out({"event": "status", "plug": p.id, "online": p.loggedIn,
                              "relay": "on" if p.relay else "off", "load_w": p.load_w})
        except (IndexError, KeyError, ValueError) as e:
            self.out({"event": "error", "error": f"bad command {' '.join(words)!r}: {e}"})
