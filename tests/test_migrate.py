"""vesyncctl migrate: an SQLite state directory copied into PostgreSQL, verified, refusals and errors."""

from __future__ import annotations

import io
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from vesyncd.cli.main import execute
from vesyncd.core.model import PlugState
from vesyncd.storage import postgres as pg
from vesyncd.storage.automationstore import SqliteAutomationStore
from vesyncd.storage.ledger import SQLiteLedger
from vesyncd.storage.migrate import MigrationError, migrateToPostgres
from vesyncd.storage.sidetables import BaselineStore, SwitchLog
from vesyncd.storage.store import Store
from vesyncd.storage.runner import inlineRunner
from tests.fakes import result
from tests.pgserver import PASSWORD, pgDatabase, postgres  # noqa: F401 - fixtures

BERLIN = ZoneInfo("Europe/Berlin")
NOW = 1_780_000_000.0


@pytest.fixture
def stateDir() -> Any:
    """A state directory holding a filled SQLite database: plugs, reports over three days, switches,
    baselines, automation items, a node and a lease."""
    path = Path(tempfile.mkdtemp(prefix="vesyncd-migrate-"))
    clock = Clock()
    clock.advance(NOW - 3 * 86400)
    store = Store.open(path / "vesyncd.sqlite3", BERLIN, clock, run=inlineRunner)
    ledger = SQLiteLedger(store, clock.seconds())
    switches = SwitchLog(store)
    for n in range(5):
        store.putPlug(PlugState(id=f"p{n}", alias=f"Plug {n}", online=True, relay=bool(n % 2), first_seen=NOW))
    for step in range(3 * 24 * 6):
        for n in range(5):
            ledger.record(f"p{n}", clock.seconds(), 600 * (n + 1) + step % 7, 600)
        clock.advance(600)
    for n in range(20):
        switches.add("p1", NOW + n, n % 2 == 0, f"schedule:s{n}")
    result(switches.flush())
    result(BaselineStore(store).save({"p1": b"\x00\x01\xff", "p2": b"two"}))
    automation = SqliteAutomationStore(store.run, store.connection)
    automation.save("schedule", "s1", "p1", {"at": "07:00:00"})
    result(automation.flush())
    conn = store.connection()
    conn.execute("INSERT INTO nodes VALUES ('a', '127.0.0.1:1', NULL, 1.0, 2.0)")
    conn.execute("INSERT INTO leases VALUES ('p1', 'a', 3.0, 1.0)")
    result(store.flush())
    store.detach()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_round_trip_verified(stateDir: Path, pgDatabase: str) -> None:
    """Every table is copied; a store opened on PostgreSQL gives the same plugs, totals, history and switches."""
    summary = migrateToPostgres(stateDir / "vesyncd.sqlite3", pgDatabase)
    assert summary.rows["reports"] == 5 * 3 * 24 * 6 and summary.rows["switches"] == 20
    assert summary.rows["baselines"] == 2 and summary.rows["nodes"] == 1 and summary.rows["leases"] == 1
    assert summary.plugs == 5 and PASSWORD not in summary.target and "***" in summary.target
    clock = Clock()
    clock.advance(NOW)
    before = Store.open(stateDir / "vesyncd.sqlite3", BERLIN, clock, run=inlineRunner)
    after = pg.openStore(pgDatabase, BERLIN, clock, run=inlineRunner)
    try:
        assert sorted(p.alias for p in after.loadPlugs()) == sorted(p.alias for p in before.loadPlugs())
        assert after.loadEnergy(NOW) == before.loadEnergy(NOW)
        day = "2026-05-27"
        assert result(SQLiteLedger(after, NOW).history("p3", "day", day)) == \
            result(SQLiteLedger(before, NOW).history("p3", "day", day))
        assert result(SwitchLog(after).switchHistory("p1", 3)) == result(SwitchLog(before).switchHistory("p1", 3))
        assert BaselineStore(after).load() == {"p1": b"\x00\x01\xff", "p2": b"two"}
        assert SqliteAutomationStore(after.run, after.connection).load() == [
            ("schedule", "s1", "p1", {"at": "07:00:00"})]
        # New rows continue after the copied ones.
        switches = SwitchLog(after)
        switches.add("p1", NOW + 100, True, "command")
        assert result(switches.switchHistory("p1", 1))[0]["cause"] == "command"
    finally:
        before.detach()
        after.detach()


def test_non_empty_target_refused_unless_forced(stateDir: Path, pgDatabase: str) -> None:
    """A second copy into the same database is refused; with force it replaces the rows (no doubles)."""
    migrateToPostgres(stateDir / "vesyncd.sqlite3", pgDatabase)
    with pytest.raises(MigrationError, match="is not empty .*--force") as caught:
        migrateToPostgres(stateDir / "vesyncd.sqlite3", pgDatabase)
    assert PASSWORD not in str(caught.value)
    summary = migrateToPostgres(stateDir / "vesyncd.sqlite3", pgDatabase, force=True)
    assert summary.rows["reports"] == 5 * 3 * 24 * 6


def test_verification_catches_a_difference(stateDir: Path, pgDatabase: str, monkeypatch: Any) -> None:
    """A copy that lost rows fails its check with a one-line error naming the table."""
    from vesyncd.storage import migrate

    real = migrate.copyTables

    def lossy(source: Any, target: Any, **kw: Any) -> dict[str, int]:
        copied = real(source, target, **kw)
        target.execute("DELETE FROM hours WHERE plug = 'p2' AND hour = (SELECT MIN(hour) FROM hours)")
        return copied

    monkeypatch.setattr(migrate, "copyTables", lossy)
    with pytest.raises(MigrationError, match="verification failed: table hours has"):
        migrateToPostgres(stateDir / "vesyncd.sqlite3", pgDatabase)


def run(argv: list[str]) -> tuple[int, str, str]:
    """vesyncctl with C{argv}: exit code, standard output and standard error."""
    out, err = io.StringIO(), io.StringIO()
    code = result(ensureDeferred(execute(Clock(), argv, out, err)))
    return code, out.getvalue(), err.getvalue()


def test_command_prints_a_summary(stateDir: Path, pgDatabase: str) -> None:
    """vesyncctl migrate copies, verifies and says so, without the password; again: exit 1, one line."""
    code, out, err = run(["migrate", "--to", pgDatabase, "--state-dir", str(stateDir)])
    assert code == 0, err
    assert "verified: row counts of 11 tables and the energy of 5 plugs match" in out and PASSWORD not in out
    code, out, err = run(["migrate", "--to", pgDatabase, "--state-dir", str(stateDir)])
    assert code == 1 and "--force" in err and err.count("\n") == 1 and PASSWORD not in err


def test_command_refuses_while_the_daemon_answers(stateDir: Path) -> None:
    """With something listening on the state directory's control socket, migrate refuses."""
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(stateDir / "control.sock"))
        listener.listen(1)
        code, out, err = run(["migrate", "--to", "postgresql://u:pw@127.0.0.1:1/db", "--state-dir", str(stateDir)])
    assert code == 1 and "vesyncd is running" in err and "pw" not in err


def test_command_errors(stateDir: Path, postgres: Any) -> None:
    """Not a URL: usage error; no database in the state directory; unreachable server: one line each."""
    code, _, err = run(["migrate", "--to", "mysql://u:pw@h/db", "--state-dir", str(stateDir)])
    assert code == 2 and "not a PostgreSQL URL" in err and ":pw@" not in err
    code, _, err = run(["migrate", "--to", postgres.url("x"), "--state-dir", str(stateDir / "nowhere")])
    assert code == 1 and "no vesyncd database" in err
    code, _, err = run(["migrate", "--to", postgres.url("nosuchdb"), "--state-dir", str(stateDir)])
    assert code == 1 and "does not exist" in err and PASSWORD not in err and err.count("\n") == 1
