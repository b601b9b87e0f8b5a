"""
What the LAN attacks share: a blocking plug connection, the vesyncctl command line for the daemon
under attack, and the checks for characters a terminal would act on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from vesyncd.sim.plug import maskedFrame, upgradeRequest


class RawPlug:
    """A blocking plug connection: the exact upgrade of a plug, then masked JSON text frames."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.sendall(upgradeRequest(host, port))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head[:60]!r}")

    def read(self) -> None:
        """Add what the server sent next to the buffer; at most 1 MiB is kept."""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data
        if len(self.buffer) > 1 << 20:
            raise ConnectionError("the server sent more than 1 MiB")

    def send(self, obj: dict[str, Any]) -> None:
        """Send one JSON text frame."""
        self.sock.sendall(maskedFrame(json.dumps(obj).encode(), False))

    def receive(self) -> dict[str, Any]:
        """The next server message (an unmasked text frame with a 7- or 16-bit length)."""
        while True:
            if len(self.buffer) >= 2:
                n, offset = self.buffer[1] & 0x7F, 2
                if n == 126 and len(self.buffer) >= 4:
                    n, offset = int.from_bytes(self.buffer[2:4], "big"), 4
                if n != 126 and len(self.buffer) >= offset + n:
                    payload, self.buffer = self.buffer[offset:offset + n], self.buffer[offset + n:]
                    return json.loads(payload)
            self.read()

    def close(self) -> None:
        """Drop the connection."""
        self.sock.close()


def vesyncctl(target: Any) -> list[str]:
    """The vesyncctl command line for the daemon under attack (over its loopback TCP control port)."""
    return [str(Path(sys.executable).parent / "vesyncctl"), "--state-dir", str(target.stateDir),
            "--connect", f"tcp:{target.host}:{target.controlPort}"]


def runVesyncctl(target: Any, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess:
    """One vesyncctl call; a call that hangs counts as a failed one (exit status 124)."""
    try:
        return subprocess.run([*vesyncctl(target), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, e.stdout or "", (e.stderr or "") + "timed out")


def unsafeCharacters(text: str) -> list[str]:
    """The characters of C{text} a terminal would act on rather than show (newlines and tabs excepted)."""
    return sorted({ch for ch in text if not ch.isprintable() and ch not in "\n\t"})


def strings(value: Any) -> list[str]:
    """Every string in C{value}, keys included, walking dicts, lists, tuples and dataclasses."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "__dataclass_fields__"):
            stack.extend(getattr(item, name) for name in item.__dataclass_fields__)
    return found
