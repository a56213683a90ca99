"""Copies of this Rasa project for tests that run the assistant, and the running assistant
itself (a module name of its own: every folder of tests/ has a ``conftest``, so tests must not
import helpers from one)."""

from __future__ import annotations

import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
#: What the assistant needs to run: the Rasa project, the actions and the knowledge.
PROJECT_FILES = (
    "config.yml", "domain.yml", "credentials.yml", "bot.yml", "endpoints.yml",
    "data", "actions", "rasa_sdk_plugins", "knowledge", "channels",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_assistant_project(root: Path, action_port: int) -> Path:
    """This project's Rasa files, actions and knowledge in ``root``, with endpoints.yml's
    action_endpoint on ``action_port``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    endpoints = root / "endpoints.yml"
    text = endpoints.read_text("utf-8")
    assert "http://localhost:5055/webhook" in text
    endpoints.write_text(text.replace("http://localhost:5055/webhook", f"http://localhost:{action_port}/webhook"), "utf-8")
    return root


def use_llm_server(root: Path, llm) -> None:
    """Point endpoints.yml of the copy at ``root`` to the test session's vLLM (``llm``) and its
    served model name."""
    from vllm_server import SERVED_NAME

    endpoints = root / "endpoints.yml"
    text = re.sub(r"(?m)^  url:\s*$", f"  url: {llm.url}", endpoints.read_text("utf-8"))
    endpoints.write_text(text.replace("model: qwen2.5-coder-0.5b", f"model: {SERVED_NAME}"), "utf-8")


@contextmanager
def running_assistant(
    settings, rasa_model: Path, *, action_port: int, rasa_port: int, use_llm: bool = True, env: dict | None = None
) -> Iterator[tuple]:
    """The project of ``settings`` ingested, its action server and ``rasa run`` started and
    ready; yields the two processes (action server, Rasa) and stops them on the way out."""
    from bot.assistant import action_server, engine_ready, ingest_if_changed, rasa_ready, rasa_server

    ingest_if_changed(settings, print)
    actions = action_server(settings, port=action_port, use_llm=use_llm)
    rasa = rasa_server(settings, port=rasa_port, model=rasa_model)
    for process in (actions, rasa):
        process.env.update(env or {})
    try:
        actions.start()
        actions.wait_ready(engine_ready(action_port), 600)
        rasa.start()
        rasa.wait_ready(rasa_ready(rasa_port), 600)
        yield actions, rasa
    finally:
        rasa.stop()
        actions.stop()
