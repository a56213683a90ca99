"""Projects and engines wired to the session's real vLLM server (``llm_server``, tests/conftest.py).

The server is the one the bot runs on CPU-only machines: vLLM's CPU build from ``.venv-llm``
serving the demo model from ``models/`` (both made by ``make install``). Nothing is mocked;
the one stand-in is ``FlakyProxy`` (test_client.py), a named fault injector in front of the
real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kb_project import copy_project, engine_for, ingested_template
from vllm_server import llm_project


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
