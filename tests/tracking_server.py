"""Real PostgreSQL 15 and ``mlflow server`` processes for the tests, as a team runs them: the
server on PostgreSQL with its artifacts proxied to a folder (``--artifacts-destination``), each
on 127.0.0.1 and a free port. ``Postgres`` also serves tests that read a database."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.serving.server import _free_port as free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15 (scripts/system-deps.sh)
_DATABASES = itertools.count(1)  # one database per tracking server of the session


class Postgres:
    """A PostgreSQL 15 cluster of its own: ``initdb`` into a temporary folder, trust
    authentication, 127.0.0.1 only, a free port. Run as the ``postgres`` user when the tests
    run as root (PostgreSQL refuses root), in a folder that user owns. One role signs in with a
    password (``password_user``, SCRAM), as a team's warehouse user does, for the tests of
    credentials."""

    host = "127.0.0.1"
    user = "postgres"  # the superuser initdb makes
    password_user = ("warehouse", "wh-Secret-7f3a")  # (role, password): SCRAM, not trust

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="inmarket-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()

    def start(self) -> Postgres:
        """Make the cluster and start it; returns once it takes connections."""
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", self.data, "-U", self.user, "-A", "trust", "-E", "UTF8", "-N")
        hba = self.data / "pg_hba.conf"  # the first matching line wins: the role's password first
        role, password = self.password_user
        hba.write_text(f"host all {role} {self.host}/32 scram-sha-256\n" + hba.read_text())
        options = (
            f"-h {self.host} -p {self.port} -k {self.folder} "
            # a test database: nothing to keep if the machine stops
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        return self

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL of ``database`` (``driver="postgresql"``: libpq's own form)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():  # (not if it never started)
                self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str | Path) -> None:
        command = [str(PG_BIN / program), *map(str, args)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}{log}"[-3000:])


class TrackingServer:
    """``mlflow server`` on a new database of ``postgres``, its artifacts proxied to a folder
    (clients get ``mlflow-artifacts:/`` URIs, never the folder). ``uri`` is all a client needs;
    ``start`` waits for ``/health``, ``kill`` crashes it, ``start`` again restarts it."""

    def __init__(self, postgres: Postgres, folder: Path) -> None:
        self.database = f"mlflow_{next(_DATABASES)}"
        self.backend = postgres.create_database(self.database)
        self.artifacts = folder / f"{self.database}-artifacts"
        self.log = folder / f"{self.database}.log"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> TrackingServer:
        """Start the server (again, after ``kill``: same port, database and artifacts) and wait
        until ``/health`` answers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "mlflow", "server"),
                    *("--backend-store-uri", self.backend),
                    *("--artifacts-destination", str(self.artifacts)),
                    *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: kill() reaches its workers
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.uri}/health", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not come up: {self.log.read_text()[-3000:]}")
            time.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL to the server and its workers: a crash, not a shutdown."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM to the server and its workers; SIGKILL if they outlive 5 s (what it wrote
        is in PostgreSQL already)."""
        self._signal(signal.SIGTERM)

    def _signal(self, sent: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sent)
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
