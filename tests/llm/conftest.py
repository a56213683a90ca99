"""A real vLLM server for the generation tests, started once per test session.

The server is the one the bot runs on CPU-only machines: vLLM's CPU build from ``.venv-llm``
serving the demo model from ``models/`` (both made by ``make install``). Nothing is mocked;
the one stand-in is :class:`FlakyProxy`, a named fault injector in front of the real server.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.llm.server import LLMServer
from kb_project import copy_project, engine_for, ingested_template

SERVED_NAME = "test-qwen"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(log_path: Path) -> LLMServer:
    """A real vLLM server on a free port, ready (raises with its log if it cannot start)."""
    server = LLMServer(
        model_dir=REPO / "models" / "qwen2.5-coder-0.5b-instruct",
        python=REPO / ".venv-llm" / "bin" / "python",
        served_name=SERVED_NAME,
        port=free_port(),
        max_model_len=4096,
        log_path=log_path,
        startup_timeout=900,
    )
    server.start()
    server.wait_ready()
    return server


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_server(tmp_path_factory.mktemp("llm") / "vllm.log")
    yield server
    server.stop()


def llm_project(root: Path, url: str, bot_yml_extra: str = "") -> Path:
    """Point a test project's endpoints.yml at ``url`` (and append settings to bot.yml)."""
    endpoints = root / "endpoints.yml"
    endpoints.write_text(
        endpoints.read_text("utf-8") + f"llm:\n  url: {url}\n  model: {SERVED_NAME}\n  read_timeout: 120\n",
        "utf-8",
    )
    if bot_yml_extra:
        (root / "bot.yml").write_text((root / "bot.yml").read_text("utf-8") + bot_yml_extra, "utf-8")
    return root


@pytest.fixture
def project_for(tmp_path, tmp_path_factory):
    """Make an ingested test project wired to an LLM URL: ``project_for(url, bot_yml_extra="")``."""
    template, _ = ingested_template(tmp_path_factory)
    counter = iter(range(1000))

    def make(url: str, bot_yml_extra: str = "") -> Path:
        return llm_project(copy_project(template, tmp_path / f"project-{next(counter)}"), url, bot_yml_extra)

    return make


@pytest.fixture
def engine_on(project_for):
    """An engine on a fresh ingested project that talks to ``url``: ``engine_on(url, bot_yml_extra="")``."""
    engines = []

    def make(url: str, bot_yml_extra: str = ""):
        engine = engine_for(project_for(url, bot_yml_extra))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
