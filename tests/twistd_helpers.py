"""
C{twistd -n vesyncd} as a subprocess on loopback for the few tests that need the real daemon, with
its log read by a thread so that every wait has a deadline.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Where twistd, twist and vesyncctl of this Python are.
BIN = Path(sys.executable).parent
#: The longest the daemon may take to start, and to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def followLines(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """A queue that a daemon thread fills with C{process}'s output lines (newline stripped), then
    C{None} when the output ends, so that a test can wait for a line with a deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


class Twistd:
    """C{twistd -n vesyncd} on loopback as a subprocess; its log lines are read by a thread, so every
    wait has a deadline."""

    def __init__(self, tmp_path: Path, *args: str, config: Path | None = None) -> None:
        """Start C{twistd -n vesyncd} with C{args}: with a C{config} file, only the ports move to free
        ones (no web server); without one, loopback listeners and one simulated plug."""
        self.stateDir = tmp_path / "state"
        self.seen: list[str] = []
        base = ["--config", str(config)] if config else [
            "--dns-interface", "127.0.0.1", "--address", "127.0.0.1", "--demo-plugs", "1"]
        command = [str(BIN / "twistd"), "-n", "--pidfile=", "vesyncd", *base, "--state-dir", str(self.stateDir),
                   "--plugs", "tcp:0:interface=127.0.0.1", "--no-http", "--dns-port", "0", *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
        self.lines = followLines(self.process)

    def waitFor(self, text: str) -> str:
        """The first log line containing C{text}; fails after START_TIMEOUT or when the daemon ends."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no log line with {text!r}:\n" + "\n".join(self.seen[-40:]))
            self.seen.append(line)
            if text in line:
                return line

    def vesyncctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one vesyncctl command against this daemon."""
        return subprocess.run([str(BIN / "vesyncctl"), "--state-dir", str(self.stateDir), *args],
                              capture_output=True, text=True, timeout=START_TIMEOUT)

    def stop(self) -> list[str]:
        """Stop the daemon with SIGTERM and return every line it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError("twistd did not stop on SIGTERM") from None
        while (line := self.lines.get(timeout=STOP_TIMEOUT)) is not None:
            self.seen.append(line)
        return self.seen
