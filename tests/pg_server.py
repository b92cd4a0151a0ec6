"""A throwaway PostgreSQL server for tests and benchmarks, and its pytest fixture.

:class:`PostgresServer` runs ``initdb`` in a temporary directory and ``pg_ctl start`` on a
free loopback port, with durability switched off (this data is thrown away) and password
authentication over TCP, so that the tests see a real server the way production does::

    with PostgresServer() as pg:
        dsn = pg.new_database()        # a fresh, empty database per test
        store = PostgresStore(dsn)

PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` OS user
(``runuser``), which Debian's ``postgresql`` package creates. The binaries are taken from
``/usr/lib/postgresql/<version>/bin`` (the newest) or ``PATH``; if there are none the
fixture fails, never skips, saying to run ``scripts/setup.sh``.

To use the session fixture in a test package, import it in its ``conftest.py``::

    from tests.pg_server import pg_server  # noqa: F401
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

SETUP_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH: "
    "run scripts/setup.sh (as root it installs Debian's postgresql package)"
)


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; the newest Debian version first."""

    def version(path: str) -> tuple[int, ...]:
        v = Path(path).parents[1].name
        return tuple(int(p) for p in v.split(".") if p.isdigit())

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists():
            return bindir
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise RuntimeError(SETUP_HINT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; see the module docstring."""

    def __init__(self, *, user: str = "storywatch") -> None:
        self.bindir = find_bindir()
        self.user = user
        self.password = secrets.token_urlsafe(12)
        self.host = "127.0.0.1"
        self.port = 0
        self._dir: Path | None = None
        self._names = itertools.count(1)
        self._as_root = os.geteuid() == 0
        self._running = False
        self._opts = ""

    # -- process -----------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if proc.returncode != 0:
            log = self._log_tail()
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
        return proc

    def _log_tail(self) -> str:
        log = self.dir / "server.log" if self._dir else None
        if log is None or not log.exists():
            return ""
        return "server log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])

    @property
    def dir(self) -> Path:
        assert self._dir is not None, "server not started"
        return self._dir

    def start(self) -> PostgresServer:
        self._dir = Path(tempfile.mkdtemp(prefix="storywatch-pg-"))
        if self._as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(f"no 'postgres' OS user to run the server as; {SETUP_HINT}") from None
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.dir / "data"),
            "-U", self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        for attempt in range(3):
            self.port = _free_port()
            self._opts = opts = " ".join(
                [
                    f"-p {self.port}",
                    f"-c listen_addresses={self.host}",
                    f"-c unix_socket_directories={self.dir}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            try:
                self._run(
                    str(self.bindir / "pg_ctl"), "start", "-D", str(self.dir / "data"),
                    "-l", str(self.dir / "server.log"), "-o", opts, "-w", "-t", "60",
                )  # fmt: skip
                self._running = True
                return self
            except RuntimeError:
                if attempt == 2:
                    self.stop()
                    raise
        raise AssertionError("unreachable")

    def restart(self) -> None:
        """Stop (dropping every connection) and start again on the same port."""
        self._run(
            str(self.bindir / "pg_ctl"), "restart", "-D", str(self.dir / "data"), "-m", "fast",
            "-l", str(self.dir / "server.log"), "-o", self._opts, "-w", "-t", "60",
        )  # fmt: skip

    def stop(self) -> None:
        if self._dir is None:
            return
        if self._running:
            try:
                self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.dir / "data"), "-m", "fast", "-w")
            finally:
                self._running = False
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        """A URL for ``dbname`` with the server's password (or ``password``, to test a wrong one)."""
        pw = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.user}:{pw}@{self.host}:{self.port}/{dbname}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its DSN."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session; each test makes its own database.

    Fails (never skips) when the server cannot start, so a missing PostgreSQL cannot
    pass CI unnoticed.
    """
    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"the PostgreSQL test server could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
