"""One running assistant for the hardening tests (``rasa run`` and the action server, without
an LLM: knowledge answers list their sources), shared by every test of this folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant_project import copy_assistant_project, free_port, running_assistant


@dataclass
class Stack:
    """The running assistant: its project copy, settings, processes and base URLs."""

    root: Path
    settings: object
    actions: object  # ManagedProcess
    rasa: object  # ManagedProcess
    actions_url: str
    rasa_url: str


@pytest.fixture(scope="session")
def stack(rasa_model: Path, tmp_path_factory: pytest.TempPathFactory):
    from bot.config import load_settings

    action_port, rasa_port = free_port(), free_port()
    root = copy_assistant_project(tmp_path_factory.mktemp("hardened-assistant"), action_port)
    settings = load_settings(root)
    with running_assistant(settings, rasa_model, action_port=action_port, rasa_port=rasa_port, use_llm=False) as (
        actions,
        rasa,
    ):
        yield Stack(
            root=root,
            settings=settings,
            actions=actions,
            rasa=rasa,
            actions_url=f"http://127.0.0.1:{action_port}",
            rasa_url=f"http://127.0.0.1:{rasa_port}",
        )
