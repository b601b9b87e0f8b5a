"""Shared helpers of the hardening suite: loopback only, bounded waits, file limits, RSS."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

LOOPBACK = "127.0.0.1"


def raiseFileLimit(want: int = 20000) -> int:
    """Raise the soft open-file limit towards C{want} (never above the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def freePort() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def rssKiB(pid: int | str = "self") -> int:
    """Resident set size of a process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def readJSON(path: Path) -> dict[str, Any] | None:
    """A JSON file written atomically by another process, or None."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def writeJSON(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def waitUntil(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> float | None:
    """Poll until C{predicate()} is true; returns the seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def percentile(values: list[float], q: float) -> float | None:
    """The C{q}-th percentile (0-100, nearest rank) of C{values}, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def stopProcess(proc: "subprocess.Popen[Any]", grace: float = 10.0) -> None:
    """Terminate C{proc} (waking it first if it was stopped), killing it when it outlives C{grace} seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
