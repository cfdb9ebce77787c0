"""A real PostgreSQL server for the tests, started once a session in a temp directory.

Debian's ``postgresql`` package (``scripts/system-deps`` installs it) provides the binaries
under ``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root, so under
root ``initdb`` and ``postgres`` run as the ``postgres`` user (``runuser``). The server
listens on 127.0.0.1 on a free port with password (SCRAM) authentication, as the chart's
hub and MLflow connect: a URL without password plus ``PGPASSWORD``.

Without the binaries the tests that need it are skipped, except under ``CI=true``, where
they fail: CI must run them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .hub import free_port
from .processes import launch, log_tail, stop, wait_ready

SUPERUSER = "postgres"


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout, else $PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def missing_reason() -> str | None:
    """Why PostgreSQL cannot run here, or None."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser to drop to the postgres user"
        try:
            import pwd

            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return None


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; roles and databases created on demand."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # directly under /tmp: the postgres user must reach it (pytest's temp dirs are 0700)
        self.base = Path(tempfile.mkdtemp(prefix="dsplatform-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.password = secrets.token_urlsafe(18)
        self.log_path = self.base / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", SUPERUSER, "--", *command] if os.geteuid() == 0 else command

    def start(self, timeout: float = 60) -> PostgresServer:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.base, SUPERUSER, SUPERUSER)
            shutil.chown(pwfile, SUPERUSER, SUPERUSER)
        # fmt: off
        subprocess.run(
            self._as_owner([
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync",
            ]),
            check=True, capture_output=True, timeout=timeout,
        )
        pwfile.unlink()
        self.proc = launch(
            self._as_owner([
                str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.base), "-c", f"listen_addresses={self.host}",
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200",
            ]),
            log_path=self.log_path,
        )
        # fmt: on
        wait_ready(
            self.proc,
            self.accepts_connections,
            "postgres",
            timeout,
            self.log,
            interval=0.1,
            not_ready="did not accept connections in",
        )
        return self

    def accepts_connections(self) -> bool:
        try:
            with contextlib.closing(self.connect()):
                return True
        except Exception:  # not accepting connections yet
            return False

    def connect(self, database: str = "postgres", user: str = SUPERUSER, password: str = "") -> Any:
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=database,
            user=user,
            password=password or self.password,
            connect_timeout=5,
        )

    def create_database(self, name: str, owner: str, password: str) -> None:
        """A login role ``owner`` with ``password`` and a database ``name`` it owns."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(owner)),
                    [password],
                )
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(owner)
                    )
                )
        finally:
            conn.close()

    def query(self, database: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                rows: list[tuple[Any, ...]] = cur.fetchall()
                return rows
        finally:
            conn.close()

    def url(self, database: str, user: str) -> str:
        """SQLAlchemy URL without password (libpq takes it from PGPASSWORD), as the chart's."""
        return f"postgresql+psycopg2://{user}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        stop(self.proc, 30, term_signal=signal.SIGINT)  # SIGINT: fast shutdown
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        return log_tail(self.log_path, 4000)


@pytest.fixture(scope="session", name="postgres")
def postgres_fixture() -> Iterator[PostgresServer]:
    """The session's PostgreSQL; skipped where it cannot run, except under CI=true."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    bindir = find_bindir()
    assert bindir is not None
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()
