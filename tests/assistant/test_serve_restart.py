"""`bot serve` survives a crash of one of its children: `rasa run`, then the action server, is
killed (SIGKILL) under a real `bot serve --no-llm` on a copy of this project; the terminal says
so with the end of its log, the other keeps serving, and a question asked over REST 30 s later
is answered (asked once: the port stays open while Rasa restarts, so the message waits
for it). Ctrl-C (SIGTERM here) then stops every child, the restarted ones included."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

from assistant_project import REPO, copy_assistant_project, free_port
from bot.process import port_in_use

GREETING, GREETED = "你好", "云序科技的知识助手"
QUESTION, SOURCE = "How long does the Nimbus Pen battery last?", "knowledge/faq/faq_en.xlsx"
#: What tells each child apart among `bot serve`'s children (their command lines).
CHILDREN = {"Rasa server": ["run", "--model"], "action server": ["run", "actions"]}


class Terminal:
    """What `bot serve` prints, read from the file its output goes to."""

    def __init__(self, path: Path, process: subprocess.Popen):
        self.path, self.process = path, process

    def text(self) -> str:
        return self.path.read_text("utf-8", errors="replace")

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.text())):
            alive = time.monotonic() < deadline and self.process.poll() is None
            assert alive, f"no {pattern!r} in:\n{self.text()[-4000:]}"
            time.sleep(0.5)
        return match


def project_with_model(tmp_path: Path, rasa_model: Path, action_port: int) -> Path:
    """A copy of this project with the session's trained model and its stamp: no retraining."""
    root = copy_assistant_project(tmp_path / "project", action_port)
    (root / "models").mkdir()
    shutil.copy(rasa_model, root / "models" / rasa_model.name)
    (root / ".bot").mkdir()
    shutil.copy(REPO / ".bot" / "rasa-model.sha256", root / ".bot" / "rasa-model.sha256")
    return root


def child(parent: int, name: str) -> psutil.Process:
    """The child of ``parent`` that runs the server called ``name``."""
    words = CHILDREN[name]
    found = [p for p in psutil.Process(parent).children() if all(word in p.cmdline() for word in words)]
    assert len(found) == 1, f"{name}: {[p.cmdline() for p in psutil.Process(parent).children()]}"
    return found[0]


def ask(rasa_url: str, message: str) -> str:
    """The text of Rasa's replies to ``message`` from a new conversation ("" when none)."""
    reply = httpx.post(rasa_url, json={"sender": f"restart-{uuid.uuid4().hex[:8]}", "message": message}, timeout=120)
    reply.raise_for_status()
    return "\n".join(item.get("text") or "" for item in reply.json())


def test_bot_serve_restarts_a_killed_child_while_the_other_serves(rasa_model, tmp_path):
    action_port, rasa_port = free_port(), free_port()
    rasa_url = f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook"
    root = project_with_model(tmp_path, rasa_model, action_port)
    bot = str(Path(sys.executable).parent / "bot")
    output = tmp_path / "serve.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [bot, "--root", str(root), "serve", "--no-llm", "--port", str(rasa_port)],
            cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    terminal = Terminal(output, process)
    waits = {}
    try:
        terminal.expect(rf"serving at http://localhost:{rasa_port}", timeout=600)
        assert "training the Rasa model" not in terminal.text()
        assert SOURCE in ask(rasa_url, QUESTION)

        # rasa run dies: the action server keeps serving; Rasa is back and answers.
        killed = child(process.pid, "Rasa server")
        killed.kill()
        killed_at = time.monotonic()
        said = terminal.expect(
            r"the Rasa server was killed \(SIGKILL\); the others keep serving; "
            r"restarting it in 1 s\. The end of its log \(.*rasa\.log\.1\):\n((?:    .*\n)+)",
            timeout=30,
        )
        assert "Rasa server is up and running" in said.group(1)  # the end of the killed run's log
        assert httpx.get(f"http://127.0.0.1:{action_port}/health").status_code == 200
        time.sleep(max(0.0, killed_at + 30 - time.monotonic()))
        asked = time.monotonic()  # asked once: the port stays open, the message waits for the new Rasa
        assert GREETED in ask(rasa_url, GREETING)
        waits["Rasa server"] = 30 + time.monotonic() - asked
        assert SOURCE in ask(rasa_url, QUESTION)
        terminal.expect(r"restarting the Rasa server \(restart 1\)", timeout=5)
        terminal.expect(r"the Rasa server is back, ready in \d+ s", timeout=60)
        assert child(process.pid, "Rasa server").pid != killed.pid
        assert "Rasa server is up and running" in (root / ".bot" / "rasa.log.1").read_text()

        # The action server dies: Rasa keeps greeting; knowledge answers come back.
        killed = child(process.pid, "action server")
        killed.kill()
        killed_at = time.monotonic()
        terminal.expect(r"the action server was killed \(SIGKILL\); the others keep serving; restarting it in 1 s", 30)
        # (in English: the language is told by a custom action, which cannot run meanwhile)
        assert "knowledge assistant" in ask(rasa_url, GREETING)
        time.sleep(max(0.0, killed_at + 30 - time.monotonic()))
        asked = time.monotonic()
        assert SOURCE in ask(rasa_url, QUESTION)
        waits["action server"] = 30 + time.monotonic() - asked
        terminal.expect(r"restarting the action server \(restart 1\)", timeout=5)
        terminal.expect(r"the action server is back, ready in \d+ s", timeout=60)
        assert child(process.pid, "action server").pid != killed.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        print(terminal.text()[-6000:], f"\nanswered this long after each kill: {waits}")
    for port in (rasa_port, action_port):  # every child stopped, the restarted ones too
        assert not port_in_use("127.0.0.1", port), terminal.text()[-3000:]
