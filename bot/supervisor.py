"""Keeping the bot's servers up: a child that dies is restarted with backoff while the others
keep serving, and the terminal hears about it with the end of its log.

    supervisor = Supervisor(announce=print)
    supervisor.watch(rasa, rasa_ready(5005))      # started and ready
    supervisor.run()                               # until Ctrl-C (or SIGTERM)

    with supervisor.in_background():               # while something else holds the foreground
        subprocess.run(["rasa", "shell"])

The delay before a restart starts at ``first_delay`` and doubles up to ``max_delay`` each time
the server dies again before it has stayed up ``stable_after`` seconds. The log of the run
that died is kept beside the new one (``rasa.log.1``).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import httpx

from bot.errors import BotError

__all__ = ["Supervisor", "Service"]

Ready = Callable[[httpx.Client], bool]


class Service(Protocol):
    """What the supervisor needs of a server: :class:`bot.process.ManagedProcess`, ``LLMServer``."""

    name: str
    log_path: Path

    @property
    def exit_code(self) -> int | None: ...

    def running(self) -> bool: ...

    def start(self) -> object: ...

    def stop(self, grace: float = 30.0) -> None: ...

    def log_tail(self, lines: int = 20) -> str: ...


@dataclass
class _Watched:
    service: Service
    ready: Ready
    state: str  # "up" | "waiting" (to be restarted at restart_at) | "starting" (since started_at)
    up_since: float
    started_at: float = 0.0
    restart_at: float = 0.0
    delay: float = 0.0  # the last delay before a restart; 0 when none yet
    restarts: int = 0


class Supervisor:
    """Restarts the services it watches when they die; see the module's docstring."""

    def __init__(
        self,
        announce: Callable[[str], None],
        *,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        stable_after: float = 60.0,
        startup_timeout: float = 300.0,
    ) -> None:
        self.announce = announce
        self.first_delay, self.max_delay = first_delay, max_delay
        self.stable_after, self.startup_timeout = stable_after, startup_timeout
        self._watched: list[_Watched] = []

    def watch(self, service: Service, ready: Ready) -> None:
        """Keep ``service`` (started and ready) running; ``ready`` tells when a restart is ready."""
        self._watched.append(_Watched(service, ready, "up", up_since=time.monotonic()))

    def check(self) -> None:
        """One round: notice the services that died, restart those whose delay is over, and
        see whether the restarted ones are ready."""
        for watched in self._watched:
            now = time.monotonic()
            if watched.state == "waiting":
                if now >= watched.restart_at:
                    self._restart(watched)
            elif not watched.service.running():
                self._died(watched, now)
            elif watched.state == "starting":
                self._check_ready(watched, now)

    def run(self, interval: float = 1.0) -> None:
        """Check every ``interval`` seconds, until interrupted."""
        while True:
            self._guarded_check()
            time.sleep(interval)

    @contextmanager
    def in_background(self, interval: float = 1.0) -> Iterator[None]:
        """Check every ``interval`` seconds from a thread for the length of the block."""
        stopped = threading.Event()

        def loop() -> None:
            while not stopped.wait(interval):
                self._guarded_check()

        thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopped.set()
            thread.join()

    def _guarded_check(self) -> None:
        try:
            self.check()
        except Exception as exc:  # e.g. a log that cannot be moved: the servers still need watching
            self.announce(f"supervision failed a round: {exc!r}")

    def _died(self, watched: _Watched, now: float) -> None:
        code = watched.service.exit_code
        if watched.state == "up" and now - watched.up_since >= self.stable_after:
            watched.delay = self.first_delay
        else:
            watched.delay = min(2 * watched.delay, self.max_delay) if watched.delay else self.first_delay
        self._wait(watched, f"the {watched.service.name} {_ending(code)}; the others keep serving")

    def _restart(self, watched: _Watched) -> None:
        service = watched.service
        watched.restarts += 1
        self.announce(f"restarting the {service.name} (restart {watched.restarts})")
        watched.started_at = time.monotonic()
        try:
            service.start()
        except BotError as exc:
            self._retry_later(watched, f"cannot restart the {service.name}: {exc}")
            return
        watched.state = "starting"

    def _check_ready(self, watched: _Watched, now: float) -> None:
        service = watched.service
        try:
            with httpx.Client(timeout=5.0) as client:
                if watched.ready(client):
                    watched.state, watched.up_since = "up", now
                    self.announce(f"the {service.name} is back, ready in {now - watched.started_at:.0f} s")
                    return
        except BotError as exc:
            self._retry_later(watched, f"the {service.name} started but cannot serve: {exc}")
            return
        except (httpx.HTTPError, ValueError):
            pass
        if now - watched.started_at > self.startup_timeout:
            timeout = f"{self.startup_timeout:.0f} s"
            self._retry_later(watched, f"the {service.name} was not ready {timeout} after its restart")

    def _retry_later(self, watched: _Watched, reason: str) -> None:
        """A restart that did not come up: stopped, and tried again after twice the delay."""
        watched.delay = min(2 * watched.delay, self.max_delay)
        self._wait(watched, reason)

    def _wait(self, watched: _Watched, reason: str) -> None:
        """Stop what is left of the service (the processes a dead one left behind, its log
        file), keep its log and say why it will be restarted after ``watched.delay``."""
        service = watched.service
        service.stop(grace=10.0)
        tail, kept = service.log_tail(), _keep_log(service.log_path)
        self.announce(f"{reason}; restarting it in {watched.delay:g} s. The end of its log ({kept}):\n{_indent(tail)}")
        watched.state, watched.restart_at = "waiting", time.monotonic() + watched.delay


def _ending(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            return f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed (signal {-code})"
    return f"exited with code {code}"


def _keep_log(path: Path) -> Path:
    """Moves the log of a run that ended aside (``name.log.1``), so the restart's starts afresh."""
    kept = path.with_name(path.name + ".1")
    try:
        path.replace(kept)
    except OSError:
        return path
    return kept


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
