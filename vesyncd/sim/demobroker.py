"""
A private mosquitto for the demo (C{make run MQTT=1}): anonymous, on a free loopback port, with its
configuration in a temporary directory, stopped with the demo.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vesyncd.sim.demoports import freePort

#: Where package managers put mosquitto when C{sbin} is not on a user's PATH (Debian, Homebrew).
MOSQUITTO_PLACES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")

INSTALL_HINT = ("install it with `sudo apt-get install mosquitto` (Debian, Ubuntu), `brew install mosquitto` "
                "(macOS) or your system's package manager; `mosquitto_sub` comes with mosquitto-clients "
                "(Debian, Ubuntu) or mosquitto (Homebrew)")


class BrokerError(Exception):
    """The demo's mosquitto could not be found or started; the message says why and what to do."""


def findMosquitto() -> str | None:
    """The mosquitto program on PATH or in a usual sbin directory, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((place for place in MOSQUITTO_PLACES if os.access(place, os.X_OK)), None)


def _dieWithParent() -> None:
    # On Linux, mosquitto gets SIGTERM when the demo dies without cleaning up (a closed terminal's
    # SIGHUP, kill -9); mosquitto itself treats SIGHUP as "reload", so it would outlive the demo.
    try:
        import ctypes

        prSetPdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(prSetPdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class DemoBroker:
    """A mosquitto listening on C{127.0.0.1:port} only, accepting anonymous clients, keeping nothing."""

    host = "127.0.0.1"

    def __init__(self, program: str) -> None:
        self.program = program
        self.port = freePort(self.host, ("tcp",))
        self.directory = Path(tempfile.mkdtemp(prefix="vesyncd-demo-mqtt-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL to give C{--mqtt}."""
        return f"mqtt://{self.host}:{self.port}"

    def watchCommand(self, prefix: str = "vesyncd", discoveryPrefix: str = "homeassistant") -> str:
        """The C{mosquitto_sub} line that shows vesyncd's topics and its Home Assistant discovery."""
        return (f"mosquitto_sub -h {self.host} -p {self.port} -t '{prefix}/#' -t '{discoveryPrefix}/#' -v")

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and return once it accepts connections.

        @raise BrokerError: it exited or did not listen within C{timeout} seconds, with its log.
        """
        config = self.directory / "mosquitto.conf"
        log = self.directory / "mosquitto.log"
        config.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
                          f"log_dest stderr\n")
        with log.open("wb") as logFile:
            self.process = subprocess.Popen(
                [self.program, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=logFile, stderr=logFile,
                preexec_fn=_dieWithParent if sys.platform.startswith("linux") else None)
        deadline = time.monotonic() + timeout
        while not self._accepting():
            try:
                # Waiting on the process is the pause between attempts, and notices an early exit.
                self.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                self.stop()
                raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout:g} s: "
                                  f"{self._tail(log)}") from None
            output = self._tail(log)
            self.stop()
            raise BrokerError(f"mosquitto exited at start: {output}")

    def _accepting(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex((self.host, self.port)) == 0

    @staticmethod
    def _tail(log: Path, lines: int = 5) -> str:
        try:
            text = log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " / ".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL after 5 s) and remove its directory; safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)
