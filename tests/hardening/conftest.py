"""One running assistant for the hardening tests (``rasa run`` and the action server, without
an LLM: knowledge answers list their sources), shared by every test of this folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant_project import copy_assistant_project, free_port, running_assistant

#: The strict stack's limits, low enough for a test to exhaust them in a burst.
STRICT_SERVING = {"conversation_per_minute": 10, "client_per_minute": 40}
#: The shared stack lets one client (the tests, all from 127.0.0.1) send a fuzzer's volume;
#: the per-conversation limit stays bot.yml's.
SHARED_SERVING = {"client_per_minute": 100_000}
#: The review page's token on both stacks (the page is closed without one).
REVIEW_TOKEN = "hardening-review-token"


@dataclass
class Stack:
    """The running assistant: its project copy, settings, processes and base URLs."""

    root: Path
    settings: object
    actions: object  # ManagedProcess
    rasa: object  # ManagedProcess
    actions_url: str
    rasa_url: str
    review_token: str = REVIEW_TOKEN


@pytest.fixture(scope="session")
def stack(rasa_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The assistant with bot.yml's limits, except a client budget large enough for a fuzzer."""
    yield from _run_stack(rasa_model, tmp_path_factory.mktemp("hardened-assistant"), serving=SHARED_SERVING)


@pytest.fixture(scope="session")
def strict_stack(rasa_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The assistant with low rate limits (``STRICT_SERVING``): for tests that exhaust a
    client's or a conversation's budget without starving the tests on ``stack``."""
    yield from _run_stack(rasa_model, tmp_path_factory.mktemp("strict-assistant"), serving=STRICT_SERVING)


def _run_stack(rasa_model: Path, folder: Path, serving: dict | None = None):
    import yaml

    from bot.config import load_settings

    action_port, rasa_port = free_port(), free_port()
    root = copy_assistant_project(folder, action_port)
    if serving:
        bot_yml = root / "bot.yml"
        config = yaml.safe_load(bot_yml.read_text("utf-8"))
        config["serving"] = {**(config.get("serving") or {}), **serving}
        bot_yml.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
    settings = load_settings(root)
    with running_assistant(
        settings,
        rasa_model,
        action_port=action_port,
        rasa_port=rasa_port,
        use_llm=False,
        env={"BOT_REVIEW_TOKEN": REVIEW_TOKEN},
    ) as (actions, rasa):
        yield Stack(
            root=root,
            settings=settings,
            actions=actions,
            rasa=rasa,
            actions_url=f"http://127.0.0.1:{action_port}",
            rasa_url=f"http://127.0.0.1:{rasa_port}",
        )
