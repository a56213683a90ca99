"""`bot chat` as a user runs it: in a terminal (a pseudo-terminal here), on a copy of this
project, without an LLM. It must start everything, answer in rasa shell, and stop what it
started when the user leaves."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant_project import REPO, copy_assistant_project, free_port
from bot.assistant import action_port, assistant_services, training_fingerprint
from bot.config import load_settings
from bot.errors import ServiceError
from bot.process import port_in_use



class Terminal:
    """A command on a pseudo-terminal: type lines, wait for text."""

    def __init__(self, command: list[str], cwd: Path):
        self.master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "200", "LINES": "50"}
        self.process = subprocess.Popen(command, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.output = ""

    def expect(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self._plain()):
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.process.poll() is None, f"no {pattern!r} in:\n{self._plain()[-3000:]}"
            ready, _, _ = select.select([self.master], [], [], min(remaining, 1.0))
            if ready:
                try:
                    self.output += os.read(self.master, 65536).decode("utf-8", errors="replace")
                except OSError:
                    pass
        return self._plain()

    def drain(self) -> str:
        """Everything printed, after the command ended."""
        while select.select([self.master], [], [], 0.5)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk.decode("utf-8", errors="replace")
        return self._plain()

    def type(self, line: str) -> None:
        os.write(self.master, line.encode("utf-8") + b"\r")

    def _plain(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.output)


def test_bot_chat_answers_in_rasa_shell_and_stops_what_it_started(rasa_model, tmp_path):
    action_port, shell_port = free_port(), free_port()
    root = copy_assistant_project(tmp_path / "project", action_port)
    (root / "models").mkdir()
    shutil.copy(rasa_model, root / "models" / rasa_model.name)  # trained from the same files: no retraining
    stamp = REPO / ".bot" / "rasa-model.sha256"
    (root / ".bot").mkdir()
    shutil.copy(stamp, root / ".bot" / stamp.name)

    bot = str(Path(sys.executable).parent / "bot")
    terminal = Terminal([bot, "--root", str(root), "chat", "--no-llm", "--port", str(shell_port)], cwd=root)
    try:
        screen = terminal.expect(r"Your input ->", timeout=600)
        assert "training the Rasa model" not in screen
        assert re.search(r"documents: 7 added", screen) and "action server ready" in screen
        terminal.type("你好")
        terminal.expect(r"云序科技的知识助手", timeout=120)
        terminal.type("How long does the Nimbus Pen battery last?")
        screen = terminal.expect(r"knowledge/faq/faq_en\.xlsx", timeout=120)
        assert port_in_use("127.0.0.1", action_port)
        terminal.type("/stop")
        assert terminal.process.wait(timeout=120) == 0, terminal.drain()[-2000:]
    finally:
        if terminal.process.poll() is None:
            os.killpg(terminal.process.pid, 9)
    assert terminal.drain().rstrip().endswith("[bot] stopped")
    assert not port_in_use("127.0.0.1", action_port)


def test_the_training_fingerprint_follows_config_domain_and_data(tmp_path):
    for name in ("config.yml", "domain.yml"):
        (tmp_path / name).write_text(f"# {name}\n", "utf-8")
    (tmp_path / "data" / "nlu").mkdir(parents=True)
    (tmp_path / "data" / "nlu" / "a.yml").write_text("nlu: []\n", "utf-8")
    first = training_fingerprint(tmp_path)
    assert training_fingerprint(tmp_path) == first
    (tmp_path / "knowledge.md").write_text("not a training input", "utf-8")
    assert training_fingerprint(tmp_path) == first
    (tmp_path / "data" / "nlu" / "a.yml").write_text("nlu: [] \n", "utf-8")
    changed = training_fingerprint(tmp_path)
    assert changed != first
    (tmp_path / "data" / "nlu" / "a.yml").rename(tmp_path / "data" / "nlu" / "b.yml")
    assert training_fingerprint(tmp_path) not in (first, changed)


def test_the_action_port_comes_from_endpoints_and_a_busy_one_is_named(tmp_path):
    port = free_port()
    (tmp_path / "endpoints.yml").write_text(f"action_endpoint:\n  url: http://localhost:{port}/webhook\n", "utf-8")
    settings = load_settings(tmp_path)
    assert action_port(settings) == port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(ServiceError, match=f"port {port}"):
            with assistant_services(settings, use_llm=False):
                pass
    (tmp_path / "endpoints.yml").write_text("action_endpoint:\n  url: http://localhost/webhook\n", "utf-8")
    assert action_port(load_settings(tmp_path)) == 5055
