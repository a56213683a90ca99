"""A throwaway PostgreSQL server for tests: a fresh cluster in a temporary folder, on a free
port of 127.0.0.1, stopped and removed at the end (a module name of its own: tests import
helpers, never a ``conftest``).

    with PostgresServer(settings={"timezone": "Asia/Shanghai"}) as server:
        url = server.create_database("traces")    # postgresql://postgres@127.0.0.1:PORT/traces
        server.stop(); server.start()             # an outage, and the recovery

``settings`` are server settings (``-c name=value``); durability is off (``fsync``), for speed.
The binaries come from the ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``): when it
is missing and the tests run as root, it is installed with apt-get (CI does the same); otherwise
the tests fail and say how to install it. As root, the cluster runs as the system user
``postgres`` (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "postgres_bin", "wait_for"]

SERVER_USER = "postgres"  # the system user running the cluster when the tests run as root
SUPERUSER = "postgres"  # the database superuser initdb creates (trust authentication, local only)


def postgres_bin() -> Path:
    """The folder holding initdb, pg_ctl and postgres (newest version), installed if need be."""
    found = _find_bin()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = subprocess.run(
            "apt-get update -q && apt-get install -y -q postgresql",
            shell=True,
            capture_output=True,
            text=True,
            env=env,
        )
        found = _find_bin()
        if found is None:
            raise RuntimeError(
                "PostgreSQL is not installed and `apt-get install -y postgresql` failed:\n"
                + (install.stdout + install.stderr)[-3000:]
            )
    if found is None:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and the tests cannot "
            "install it (not root, or no apt-get): install it with `sudo apt-get install -y postgresql`"
        )
    return found


def _find_bin() -> Path | None:
    candidates = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if not candidates:
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None
    return max(candidates, key=lambda folder: int("".join(filter(str.isdigit, folder.parent.name)) or 0))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster of its own: created, started and reachable when constructed."""

    def __init__(
        self, *, port: int | None = None, settings: dict[str, str] | None = None, start_timeout: float = 60.0
    ):
        self.bin = postgres_bin()
        self.port = port or _free_port()
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", **(settings or {})}
        self.start_timeout = start_timeout
        # Not under pytest's tmp_path: its parents are private to root, the server user must reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.log = self.folder / "server.log"
        self.sockets.mkdir()
        self._as_user = os.geteuid() == 0
        if self._as_user:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)
                account = pwd.getpwnam(SERVER_USER)
            for path in (self.folder, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.running = False
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            )
            self.start()
        except BaseException:
            self.close()
            raise

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg2 driver)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {name}={value}" for name, value in self.settings.items()
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(int(self.start_timeout)), "-o", options,
        )
        self.running = True

    def stop(self) -> None:
        """Stop the server now (clients are disconnected), keeping its data for :meth:`start`."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
            self.running = False

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        self._run("psql", "-h", str(self.sockets), "-p", str(self.port), "-U", SUPERUSER,
                  "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self._as_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}\nserver log:\n{log}"
            )

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, running={self.running})"


def wait_for(condition, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition()`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
