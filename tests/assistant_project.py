"""Copies of this Rasa project for tests that run the assistant (a module name of its own: every
folder of tests/ has a ``conftest``, so tests must not import helpers from one)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

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
