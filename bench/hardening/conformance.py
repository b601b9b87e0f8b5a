"""
WebSocket conformance of the plug server's Autobahn options, with the Autobahn|Testsuite.

C{wstest -m fuzzingclient} (Python 2.7 only) is run against L{bench.hardening.echo_server} on
127.0.0.1, cases 1-7 and 10.  Cases 9 (limits/performance: up to 16 MiB messages, far over the
production 64 KiB limit, and minutes of runtime) and 12/13 (permessage-deflate, which vesyncd
refuses on purpose) are excluded.  The JSON report is parsed; FAILED, UNCLEAN and WRONG CODE are
failures, NON-STRICT and INFORMATIONAL are accepted.

Install the suite (once): C{python -m bench.hardening.conformance --install}, which runs
C{PY27 -m pip install --target DIR autobahntestsuite} (DIR defaults to C{~/.cache/vesyncd-wstest},
PY27 to the pyenv 2.7.18 interpreter; override with C{VESYNCD_WSTEST_DIR} / C{VESYNCD_PY27}).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY27 = os.environ.get("VESYNCD_PY27", "/root/.pyenv/versions/2.7.18/bin/python")
WSTEST_DIR = os.environ.get("VESYNCD_WSTEST_DIR", os.path.expanduser("~/.cache/vesyncd-wstest"))
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
EXCLUDED = ["9.*", "12.*", "13.*"]
BAD = ("FAILED", "UNCLEAN", "WRONG CODE")
#: The runner: process the target dir's .pth files (zope is a namespace package), then wstest.
_RUNNER = ("import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ['wstest'] + sys.argv[2:]; "
           "from autobahntestsuite.wstest import run; run()")


def available() -> str | None:
    """None when Python 2.7 and autobahntestsuite are usable; else why not."""
    if not os.path.exists(PY27):
        return f"Python 2.7 not found at {PY27}"
    if not os.path.isdir(os.path.join(WSTEST_DIR, "autobahntestsuite")):
        return f"autobahntestsuite not installed in {WSTEST_DIR} (python -m bench.hardening.conformance --install)"
    return None


def install() -> int:
    """Install autobahntestsuite for Python 2.7 into L{WSTEST_DIR}."""
    if not os.path.exists(PY27):
        print(f"Python 2.7 not found at {PY27} (set VESYNCD_PY27); the conformance test will be skipped")
        return 0
    # Run from a neutral directory so pip does not see this checkout's own package metadata.
    return subprocess.call([PY27, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target",
                            WSTEST_DIR, "autobahntestsuite"], cwd=tempfile.gettempdir())


def run(failByDrop: str = "production", timeout: float = 300.0, cases: list[str] | None = None) -> dict[str, Any]:
    """Run the fuzzing client against a fresh echo server; returns a summary dict."""
    why = available()
    if why:
        return {"skipped": why}
    work = Path(tempfile.mkdtemp(prefix="vesyncd-wstest-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, "-m", "bench.hardening.echo_server", "--port", "0",
                               "--fail-by-drop", failByDrop, "--max-seconds", str(timeout + 30)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT))
    try:
        line = server.stdout.readline().decode().split()
        port = int(line[1])
        spec = {
            "outdir": str(work / "reports"),
            "servers": [{"agent": "vesyncd", "url": f"ws://127.0.0.1:{port}"}],
            "cases": cases or CASES,
            "exclude-cases": EXCLUDED,
            "exclude-agent-cases": {},
        }
        (work / "spec.json").write_text(json.dumps(spec))
        started = time.monotonic()
        proc = subprocess.run([PY27, "-c", _RUNNER, WSTEST_DIR, "-m", "fuzzingclient", "-s", "spec.json"],
                              cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(10)
    return summarize(work / "reports", elapsed, proc.returncode, proc.stdout.decode("utf-8", "replace")[-2000:])


def summarize(outdir: Path, elapsed: float, rc: int = 0, tail: str = "") -> dict[str, Any]:
    """Count behaviours in a fuzzingclient report directory."""
    index = json.loads((outdir / "index.json").read_text())
    counts: dict[str, int] = {}
    bad: list[dict[str, Any]] = []
    for agent, results in index.items():
        for case, result in results.items():
            for key in ("behavior", "behaviorClose"):
                counts[f"{key}:{result[key]}"] = counts.get(f"{key}:{result[key]}", 0) + 1
            if result["behavior"] in BAD or result["behaviorClose"] in BAD:
                detail = {"case": case, "behavior": result["behavior"], "behaviorClose": result["behaviorClose"]}
                path = outdir / result.get("reportfile", "")
                if path.is_file():
                    rep = json.loads(path.read_text())
                    detail["description"] = rep.get("description", "")[:200]
                    detail["result"] = rep.get("result", "")[:300]
                    detail["resultClose"] = rep.get("resultClose", "")[:300]
                bad.append(detail)
    total = sum(len(r) for r in index.values())
    return {"cases": total, "bad": bad, "counts": counts, "seconds": round(elapsed, 1), "wstest_rc": rc,
            "report_dir": str(outdir), "tail": tail if rc else ""}


def main(argv: list[str]) -> int:
    if "--install" in argv:
        return install()
    fbd = "production"
    for arg in argv:
        if arg.startswith("--fail-by-drop="):
            fbd = arg.split("=", 1)[1]
    result = run(fbd)
    print(json.dumps(result, indent=2))
    return 0 if not result.get("bad") and "skipped" not in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
