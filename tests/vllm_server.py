"""Starting real vLLM servers for the generation tests (a module name of its own: every
folder of tests/ has a ``conftest``, so tests must not import helpers from one)."""

from __future__ import annotations

from pathlib import Path

from assistant_project import free_port
from bot.llm.server import LLMServer

SERVED_NAME = "test-qwen"
REPO = Path(__file__).resolve().parents[1]


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


RERANKER_NAME = "test-reranker"


def build_reranker_model(minilm_dir: Path, folder: Path) -> Path:
    """A cross-encoder TEST model in ``folder``: MiniLM with a seeded random one-logit head, scaled
    so its scores spread over 0..1 (unscaled, every pair scores 0.50 +- 0.01: a comparison of two
    scorers would prove little). Scores carry no meaning."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=1)
    with torch.no_grad():
        model.classifier.weight.mul_(60)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def start_reranker_server(model_dir: Path, log_path: Path) -> LLMServer:
    """A real vLLM server scoring with the cross-encoder in ``model_dir`` (``/rerank``), ready.

    Same launcher as the LLM: vLLM resolves a ``*ForSequenceClassification`` model to its
    pooling runner; float32 like FlagReranker on CPU, so their scores can be compared."""
    server = LLMServer(
        model_dir=model_dir,
        python=REPO / ".venv-llm" / "bin" / "python",
        served_name=RERANKER_NAME,
        port=free_port(),
        max_model_len=512,
        dtype="float32",
        extra_args=["--runner", "pooling"],
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        log_path=log_path,
        startup_timeout=600,
    )
    server.start()
    server.wait_ready()
    return server
