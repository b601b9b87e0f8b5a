"""The twistd plugin and the options: found by twistd, documented, configurable from TOML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from vesyncd import tap

ROOT = Path(__file__).resolve().parent.parent


def test_plugin_is_found() -> None:
    """getPlugins(IServiceMaker) finds the vesyncd service maker."""
    names = [p.tapname for p in getPlugins(IServiceMaker)]
    assert "vesyncd" in names


def test_plugin_file_is_one_service_maker() -> None:
    """The plugin file imports only Twisted (nothing from vesyncd, so twistd's plugin scan stays cheap)
    and holds one ServiceMaker pointing at vesyncd.tap."""
    import ast

    tree = ast.parse((ROOT / "twisted" / "plugins" / "vesyncd_plugin.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = [node.module if isinstance(node, ast.ImportFrom) else alias.name
               for node in imports for alias in node.names]
    assert modules and all(str(name).startswith("twisted") for name in modules), modules
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert len(calls) == 1 and getattr(calls[0].func, "id", None) == "ServiceMaker"
    assert [arg.value for arg in calls[0].args[:2]] == ["vesyncd", "vesyncd.tap"]  # type: ignore[attr-defined]
    assert "--log-level" in tap.Options().getUsage()


def test_twistd_help_documents_options() -> None:
    """`twistd vesyncd --help` lists the options with their documentation."""
    out = subprocess.run([sys.executable, "-m", "twisted", "--help"], capture_output=True, text=True)
    assert "vesyncd" in out.stdout
    twistd = Path(sys.executable).with_name("twistd")
    help_ = subprocess.run([str(twistd), "vesyncd", "--help"], capture_output=True, text=True, cwd="/")
    assert help_.returncode == 0, help_.stderr
    for option in ("--plugs", "--config", "--state-dir", "--offline-after", "--command-timeout"):
        assert option in help_.stdout


def test_config_file_sets_options_and_command_line_wins(tmp_path: Path) -> None:
    """Keys named like long options set values; the command line overrides them."""
    cfg = tmp_path / "v.toml"
    cfg.write_text('plugs = "tcp:1234"\noffline-after = 90\nkeepalive-idle = 30\ndemo-plugs = 2\n')
    o = tap.Options()
    o.parseOptions(["--config", str(cfg), "--plugs", "tcp:999"])
    assert o["plugs"] == "tcp:999"
    assert o["offline-after"] == 90.0 and o["keepalive-idle"] == 30.0 and o["demo-plugs"] == 2


@pytest.mark.parametrize("text, needle", [
    ('bogus = 1\n', "'bogus' is not an option"),
    ('offline-after = "soon"\n', "'offline-after'"),
    ('plugs = ["a", "b"]\n', "'plugs' takes one value"),
    ('[section]\nx = 1\n', "tables are not used"),
    ('this is not toml', "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    """An unknown key or bad value stops start-up with a message naming it."""
    cfg = tmp_path / "v.toml"
    cfg.write_text(text)
    with pytest.raises(usage.UsageError) as e:
        tap.Options().parseOptions(["--config", str(cfg)])
    assert needle in str(e.value)


def test_inconsistent_timeouts_refused() -> None:
    """An offline deadline shorter than the keepalive idle time is a usage error."""
    with pytest.raises(usage.UsageError, match="--offline-after"):
        tap.Options().parseOptions(["--offline-after", "10", "--keepalive-idle", "20"])


def test_example_config_is_valid() -> None:
    """etc/vesyncd.toml.example parses with the current options."""
    o = tap.Options()
    o.parseOptions(["--config", str(ROOT / "etc" / "vesyncd.toml.example")])
    assert o["plugs"] == "tcp:17273"


def test_default_listeners_are_loopback() -> None:
    """With no options the plug server listens on loopback only."""
    o = tap.Options()
    o.parseOptions([])
    assert "interface=127.0.0.1" in o["plugs"]


def test_plug_listener_gets_a_deep_backlog() -> None:
    """TCP and TLS plug endpoints get backlog=4096 unless they name one; others are untouched."""
    from vesyncd.service import withBacklog

    assert withBacklog("tcp:17273") == "tcp:17273:backlog=4096"
    assert withBacklog("ssl:17273:privateKey=k.pem") == "ssl:17273:privateKey=k.pem:backlog=4096"
    assert withBacklog("tcp:1:backlog=5") == "tcp:1:backlog=5"
    assert withBacklog("unix:/tmp/x") == "unix:/tmp/x"


def test_twist_finds_the_plugin() -> None:
    """`twist vesyncd --help` works as well as twistd."""
    twist = Path(sys.executable).with_name("twist")
    out = subprocess.run([str(twist), "vesyncd", "--help"], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "--plugs" in out.stdout


def test_startup_error_is_one_clear_line(tmp_path: Path) -> None:
    """A plug port already in use stops start-up with a message that names the endpoint."""
    import socket

    from vesyncd.service import StartupError

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        o = tap.Options()
        o.parseOptions(["--plugs", f"tcp:{port}:interface=127.0.0.1", "--no-dns", "--no-http", "--state-dir", str(tmp_path)])
        from twisted.internet import reactor

        service = tap.makeService(o, reactor)
        with pytest.raises(StartupError) as e:
            service.privilegedStartService()
        assert f"tcp:{port}" in str(e.value) and "in use" in str(e.value)
    finally:
        holder.close()


def test_daemon_publishes_its_database_and_broker_for_the_doctor(tmp_path: Path) -> None:
    """The wired daemon says in C{info} which database it writes and whether its broker is connected; the
    doctor's checks read exactly that (here: the SQLite file is written to, the broker not connected yet)."""
    from twisted.internet import reactor

    from vesyncd.doctor.clusterchecks import clusterChecks

    o = tap.Options()
    o.parseOptions(["--plugs", "tcp:0:interface=127.0.0.1", "--no-dns", "--no-http",
                    "--mqtt", "mqtt://user:secret@127.0.0.1:1", "--state-dir", str(tmp_path)])
    daemon = tap.makeService(o, reactor)
    facts = daemon.context.info.facts
    database, broker = facts["database"](), facts["broker"]()
    assert database["kind"] == "sqlite" and database["reachable"] is True and str(tmp_path) in database["url"]
    assert broker == {"broker": "mqtt://user@127.0.0.1:1", "connected": False}
    checks = {check.name: check for check in clusterChecks({"database": database, "broker": broker})}
    assert checks["database"].level.value == "OK"
    assert checks["mqtt broker"].level.value == "WARN" and "secret" not in checks["mqtt broker"].message
