"""The supervisor restarts real child processes that die: after a delay that doubles while
they keep dying and starts over once they stayed up, with the end of their log announced.
(`bot serve` itself under a killed child: tests/assistant/test_serve_restart.py.)"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import pytest

from bot.errors import ServiceError
from bot.process import ManagedProcess
from bot.supervisor import Supervisor


def toy_server(tmp_path, code: str) -> ManagedProcess:
    """A child process running ``code`` (Python), its output in ``toy.log``."""
    return ManagedProcess("toy server", [sys.executable, "-u", "-c", code], log_path=tmp_path / "toy.log")


def always_ready(client) -> bool:
    return True


def check_until(supervisor: Supervisor, heard: list[str], pattern: str, timeout: float = 20.0) -> str:
    """Run rounds of ``supervisor`` until an announcement matches ``pattern``; that announcement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        for message in heard:
            if re.search(pattern, message):
                return message
        time.sleep(0.02)
    raise AssertionError(f"no {pattern!r} in {heard}")


def delays(heard: list[str]) -> list[float]:
    return [float(d) for d in re.findall(r"restarting it in ([\d.]+) s", "\n".join(heard))]


@pytest.fixture
def heard() -> list[str]:
    return []


def test_a_killed_server_is_restarted_with_the_end_of_its_log_announced(tmp_path, heard):
    server = toy_server(tmp_path, "import os, time; print('serving as', os.getpid()); time.sleep(120)")
    server.start()
    supervisor = Supervisor(heard.append, first_delay=0.1)
    supervisor.watch(server, always_ready)
    try:
        time.sleep(0.5)  # its first line is in the log
        first = server.pid
        os.kill(first, signal.SIGKILL)
        died = check_until(supervisor, heard, r"killed")
        assert died.startswith("the toy server was killed (SIGKILL); the others keep serving; restarting it in 0.1 s")
        assert f"serving as {first}" in died and "toy.log.1" in died
        assert f"serving as {first}" in (tmp_path / "toy.log.1").read_text()
        check_until(supervisor, heard, r"^restarting the toy server \(restart 1\)$")
        check_until(supervisor, heard, r"^the toy server is back, ready in \d+ s$")
        assert server.running() and server.pid != first
    finally:
        server.stop()


def test_the_delay_doubles_while_it_keeps_dying_up_to_the_most(tmp_path, heard):
    server = toy_server(tmp_path, "raise SystemExit(3)")
    server.start()
    supervisor = Supervisor(heard.append, first_delay=0.05, max_delay=0.2)
    supervisor.watch(server, always_ready)
    try:
        check_until(supervisor, heard, r"restart 5\)")
    finally:
        server.stop()
    assert delays(heard)[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]


@pytest.mark.parametrize("stable_after, expected", [(0.2, [0.05, 0.05, 0.05]), (30.0, [0.05, 0.1, 0.2])])
def test_the_delay_starts_over_once_the_server_stayed_up(tmp_path, heard, stable_after, expected):
    server = toy_server(tmp_path, "import time; time.sleep(0.5)")  # up and ready, then gone
    server.start()
    supervisor = Supervisor(heard.append, first_delay=0.05, max_delay=1.0, stable_after=stable_after)
    supervisor.watch(server, always_ready)
    try:
        check_until(supervisor, heard, r"restart 3\)")
    finally:
        server.stop()
    assert delays(heard)[:3] == expected


def test_a_restart_that_cannot_serve_is_stopped_and_tried_again_later(tmp_path, heard):
    server = toy_server(tmp_path, "import time; time.sleep(120)")
    server.start()
    calls = []

    def ready_then_broken(client) -> bool:
        calls.append(1)
        raise ServiceError("the knowledge store is locked")

    supervisor = Supervisor(heard.append, first_delay=0.05)
    supervisor.watch(server, ready_then_broken)
    try:
        os.kill(server.pid, signal.SIGKILL)
        failed = check_until(supervisor, heard, r"cannot serve")
        assert failed.startswith(
            "the toy server started but cannot serve: the knowledge store is locked; restarting it in 0.1 s"
        )
        assert not server.running()
        check_until(supervisor, heard, r"restart 2\)")
    finally:
        server.stop()


def test_in_the_background_it_restarts_while_the_foreground_runs_and_stops_with_the_block(tmp_path, heard):
    server = toy_server(tmp_path, "import time; time.sleep(120)")
    server.start()
    supervisor = Supervisor(heard.append, first_delay=0.1)
    supervisor.watch(server, always_ready)
    try:
        with supervisor.in_background(interval=0.05):
            first = server.pid
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while not any("is back" in message for message in heard) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert server.running() and server.pid != first
        count = len(heard)
        os.kill(server.pid, signal.SIGKILL)
        time.sleep(0.5)
        assert len(heard) == count and not server.running()  # the block is over: nobody restarts it
    finally:
        server.stop()
