"""A throwaway PostgreSQL server (initdb + pg_ctl as the postgres user) on loopback, for integration tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from tests.services.ports import free_port

SERVICE_USER = "postgres"
PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (PATH first, then Debian's versioned directory)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for candidate in PG_BIN_CANDIDATES:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def missing_reason() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    if find_pg_bin() is None:
        return "PostgreSQL's initdb/pg_ctl not found (apt-get install -y postgresql)"
    if shutil.which("runuser") is None and os.geteuid() == 0:
        return "runuser not found (initdb refuses to run as root)"
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return f"no '{SERVICE_USER}' user to run initdb as (apt-get install -y postgresql)"
    return None


@dataclass(frozen=True)
class Database:
    name: str
    url: str  # libpq URL for psycopg: postgresql://user:password@127.0.0.1:port/name
    sqlalchemy_url: str  # the same for SQLAlchemy/SQLModel: postgresql+psycopg://...
    # catalog.url as a station is configured: no password (libpq takes it from PGPASSWORD)
    config_url: str


class PostgresServer:
    """initdb into a temp directory owned by postgres, pg_ctl start on 127.0.0.1, a free port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.user = SERVICE_USER
        self.root: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=60, cwd="/"
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = ""
            if self.root is not None:
                with contextlib.suppress(OSError):
                    log = (self.root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stderr}\n{log}")

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="evidence-pg-"))
        account = pwd.getpwnam(SERVICE_USER)
        if os.geteuid() == 0:
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)
        password_file = self.root / "pwfile"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        password_file.chmod(0o600)
        self._check(
            self._as_postgres(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",  # a test database need not survive a power cut
            ),
            "initdb",
        )
        password_file.unlink()
        self._check(
            self._as_postgres(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "30",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off",
                "start",
            ),
            "pg_ctl start",
        )

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def url(self, database: str = "postgres", *, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> Database:
        name = name or "test_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return Database(
            name=name,
            url=self.url(name),
            sqlalchemy_url=self.url(name, driver="postgresql+psycopg"),
            config_url=f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}",
        )

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
