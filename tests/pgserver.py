"""A real PostgreSQL for the tests: the Debian server binaries started once per test session in a
temporary directory, listening on 127.0.0.1 only (a free port, its unix socket in the directory), as
an unprivileged user (C{nobody} when the tests run as root: initdb refuses root), and a fresh database
per test.

Use it from a test module with C{from tests.pgserver import postgres, pgDatabase  # noqa: F401}:
C{postgres} is the session's L{PostgresServer}; C{pgDatabase} (function scope) creates a database and
sets C{databaseUrl} on a test case instance (for C{twisted.trial} classes, with
C{@pytest.mark.usefixtures("pgDatabase")}) and returns its URL.

The superuser C{postgres} is trusted on loopback; the role L{USER} logs in with L{PASSWORD}
(SCRAM), for the password and authentication tests.  A system cluster on port 5432 is never touched.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

USER = "vesyncd"
PASSWORD = "s3cret-pw-%71"  # the URL-encoded form must be masked too
#: Seconds the server may take to start or stop.
START_TIMEOUT = 30.0


def serverBinaries() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def freePort() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory: start, stop, restart, and databases for tests."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="vesyncd-pg-"))
        self.data = self.root / "data"
        self.port = freePort()
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._asUser: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody", "nogroup")
            self._asUser = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--pdeathsig=KILL"]

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._asUser, *argv], check=True, cwd=self.root, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=START_TIMEOUT)

    def init(self) -> None:
        """Create the cluster: C{postgres} trusted on loopback, L{USER} with a SCRAM password."""
        pwfile = self.root / "pw"
        pwfile.write_text("unused\n")
        if self._asUser:
            shutil.chown(pwfile, "nobody", "nogroup")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--no-sync", "-E", "UTF8",
                  "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", str(pwfile))
        hba = self.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        argv = [*self._asUser, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50",
                "-c", "shared_buffers=16MB", "-c", "logging_collector=off"]
        self.process = subprocess.Popen(argv, cwd=self.root, stdout=subprocess.DEVNULL,
                                        stderr=open(self.root / "server.log", "ab"))
        self._waitReady()

    def _waitReady(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                psycopg.connect(self.url("postgres", superuser=True), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut, committed data kept)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(START_TIMEOUT)
        self.process = None

    def url(self, database: str, *, superuser: bool = False, password: str | None = PASSWORD) -> str:
        """The URL of C{database}: as the trusted superuser, or as L{USER} with C{password}."""
        if superuser:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        from urllib.parse import quote

        return f"postgresql://{USER}:{quote(password or '', safe='')}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg

        with psycopg.connect(self.url("postgres", superuser=True), autocommit=True) as conn:
            conn.execute(sql)

    def createDatabase(self) -> str:
        """A new empty database owned by L{USER}; its URL (with L{USER}'s password)."""
        name = f"test{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} OWNER {USER} TEMPLATE template0")
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server and remove its directory (again: nothing)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: list[PostgresServer] = []


def sharedServer(bindir: Path) -> PostgresServer:
    """The one server of this test process, started on first use.

    Each test module that imports the C{postgres} fixture gets its own session-scoped fixture
    definition; they all return this server, so it starts once per session.
    """
    if not _shared:
        server = PostgresServer(bindir)
        try:
            server.init()
            server.start()
            server.admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        except BaseException:
            server.destroy()
            raise
        _shared.append(server)
        atexit.register(server.destroy)  # should the session end without fixture teardown
    return _shared[0]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (skips when the server binaries are not installed); stopped and
    removed when the session ends."""
    bindir = serverBinaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin): "
                    "install the Debian package postgresql (.ci/run does)")
    server = sharedServer(bindir)
    yield server
    if _shared:
        _shared.clear()
        server.destroy()


@pytest.fixture
def pgDatabase(request: Any, postgres: PostgresServer) -> str:
    """A fresh database for one test; its URL, also set as C{databaseUrl} on a test case instance."""
    if postgres.process is None:  # a test that stopped the server failed before starting it again
        postgres.start()
    url = postgres.createDatabase()
    if request.instance is not None:
        request.instance.databaseUrl = url
        request.instance.postgres = postgres
    return url


# -- running the store's tests on both backends ---------------------------------------------------------

class BackendCase:
    """Mixin for C{twisted.trial} test cases of the store: L{openStore} opens a L{Store} on the class's
    C{backend}: C{"sqlite"} (the file C{tmp/vesyncd.sqlite3}) or C{"postgresql"} (the test's fresh
    database, from the C{pgDatabase} fixture: decorate the PostgreSQL subclass with
    C{@pytest.mark.usefixtures("pgDatabase")})."""

    backend = "sqlite"
    databaseUrl: str | None = None

    def openStore(self, tmp: Path, zone: Any, clock: Any, **kw: Any) -> Any:
        """A store writing inline unless C{run} is given, detached when the test ends."""
        from vesyncd.storage import postgres as pg
        from vesyncd.storage.store import Store
        from vesyncd.storage.runner import inlineRunner

        kw.setdefault("run", inlineRunner)
        if self.backend == "postgresql":
            assert self.databaseUrl, "the PostgreSQL variant needs the pgDatabase fixture"
            store = pg.openStore(self.databaseUrl, zone, clock, **kw)
        else:
            store = Store.open(tmp / "vesyncd.sqlite3", zone, clock, **kw)
        self.addCleanup(store.detach)  # type: ignore[attr-defined]
        return store

    def openAt(self, tmp: Path, zone: Any, clock: Any, **kw: Any) -> tuple[Any, Any]:
        """A store (see L{openStore}) and its ledger."""
        from vesyncd.storage.ledger import SQLiteLedger

        store = self.openStore(tmp, zone, clock, **kw)
        return store, SQLiteLedger(store, clock.seconds())


def onPostgres(cls: type) -> type:
    """The PostgreSQL variant of a L{BackendCase} test class (same tests, the test's own database)."""
    variant = type(f"{cls.__name__}OnPostgres", (cls,), {"backend": "postgresql", "__module__": cls.__module__,
                                                         "__doc__": f"{cls.__doc__} (on PostgreSQL)"})
    return pytest.mark.usefixtures("pgDatabase")(variant)


@pytest.fixture(params=["sqlite", "postgresql"])
def anyConnection(request: Any) -> Iterator[Any]:
    """A connection with the whole schema on each backend: SQLite in memory, or a fresh PostgreSQL
    database (through the store's wrapper)."""
    from zoneinfo import ZoneInfo

    from vesyncd.storage.schema import migrateDatabase

    if request.param == "sqlite":
        import sqlite3

        conn: Any = sqlite3.connect(":memory:", isolation_level=None)
        migrateDatabase(conn, ZoneInfo("UTC"), ":memory:")
        yield conn
        conn.close()
        return
    from vesyncd.storage import postgres as pg

    database, conn = pg.openDatabase(request.getfixturevalue("pgDatabase"), ZoneInfo("UTC"))
    yield conn
    conn.close()
    database.close()
