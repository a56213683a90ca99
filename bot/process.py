"""A service in a child process of its own: started with its output in a log file, awaited
until it answers, stopped with everything it spawned.

    service = ManagedProcess("action server", ["rasa", "run", "actions"], log_path=Path(".bot/actions.log"))
    service.start()
    service.wait_ready(lambda client: client.get("http://localhost:5055/health").status_code == 200, 60)
    ...
    service.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

import httpx

from bot.errors import ServiceError

__all__ = ["ManagedProcess", "log_tail", "port_in_use"]


class ManagedProcess:
    """One child process in its own process group, its stdout and stderr in ``log_path``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        error: type[ServiceError] = ServiceError,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name, self.command, self.log_path = name, list(command), Path(log_path)
        self.env, self.cwd, self.error = dict(env) if env is not None else None, cwd, error
        self.pass_fds = tuple(pass_fds)  # file descriptors the child inherits (a listening socket)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def exit_code(self) -> int | None:
        """The exit code of a process that ended (negative: the signal that killed it), else None."""
        return self._process.poll() if self._process else None

    def running(self) -> bool:
        """Whether the process is alive (not whether it is ready)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        if self.running():
            raise self.error(f"the {self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self._started_at = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=self.pass_fds,
                start_new_session=True,  # its own group: stop() also ends the processes it spawned
            )
        except OSError as exc:
            self._close_log()
            raise self.error(f"cannot start the {self.name} ({self.command[0]}): {exc}") from exc

    def wait_ready(self, ready: Callable[[httpx.Client], bool], timeout: float) -> float:
        """Poll ``ready`` until it is true; return the seconds since :meth:`start`.

        Raises the service's error, with the end of the log, when the process exits or time runs out.
        """
        if self._process is None or self._started_at is None:
            raise self.error(f"the {self.name} was not started")
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise self.error(
                        f"the {self.name} exited with code {code} before it was ready. "
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    if ready(client):
                        return time.monotonic() - self._started_at
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() >= deadline:
                    raise self.error(
                        f"the {self.name} was not ready after {timeout:.0f}s. "
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.5)

    def stop(self, grace: float = 30.0) -> None:
        """Ask the process to end (SIGTERM), kill its group after ``grace`` seconds; safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _kill_group(process.pid)
                    process.wait(timeout=10)
            # Children end with their parent; kill any left behind.
            if not _wait_group_gone(process.pid, timeout=10.0):
                _kill_group(process.pid)
                _wait_group_gone(process.pid, timeout=5.0)
        self._close_log()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        return log_tail(self.log_path, lines)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("(no log)" when it cannot be read)."""
    try:
        with open(path, "rb") as log:
            tail = deque(log, maxlen=lines)
    except OSError:
        return "(no log)"
    return b"".join(tail).decode("utf-8", errors="replace").rstrip()


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port``."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        with socket.create_connection((target, port), timeout=1.0):
            return True
    except OSError:
        return False


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process is left in the group; whether it emptied in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
