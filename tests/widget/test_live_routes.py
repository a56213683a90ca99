"""The widget's routes on a real action server (``rasa run actions``, no LLM): embedding a
question ahead of its turn (``POST /knowledge/prepare``) and its error answers."""

from __future__ import annotations

import shutil

import httpx
import pytest

from assistant_project import REPO, free_port
from bot.assistant import action_server, engine_ready
from bot.config import load_settings
from kb_project import copy_project, ingested_template


@pytest.fixture(scope="module")
def actions_url(tmp_path_factory):
    template, _ = ingested_template(tmp_path_factory)
    root = copy_project(template, tmp_path_factory.mktemp("live") / "project")
    (root / "bot.yml").write_text((root / "bot.yml").read_text("utf-8") + "generation:\n  max_question_chars: 100\n", "utf-8")
    for name in ("actions", "rasa_sdk_plugins"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    server = action_server(load_settings(root), port=port, use_llm=False)
    try:
        server.start()
        server.wait_ready(engine_ready(port), 120)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_a_question_is_prepared(actions_url):
    # text/plain, as the widget sends it: a simple cross-site request, no preflight
    response = httpx.post(
        f"{actions_url}/knowledge/prepare",
        content='{"text": "智能笔充一次电能用多久？"}'.encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example.com"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "body, status",
    [(b"not json", 400), (b"{}", 400), (b'{"text": "   "}', 400), (b'{"text": 5}', 400), (b'{"text": "' + b"x" * 101 + b'"}', 413)],
)
def test_a_bad_request_is_refused_plainly(actions_url, body, status):
    response = httpx.post(f"{actions_url}/knowledge/prepare", content=body)
    assert response.status_code == status
    assert response.json()["error"]
    assert httpx.get(f"{actions_url}/knowledge/ready").status_code == 200  # still serving


def test_feedback_from_another_site_needs_no_preflight(actions_url):
    response = httpx.post(
        f"{actions_url}/knowledge/feedback",
        content=b'{"conversation_id": "c-1", "turn_id": "t-1", "rating": 2}',
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example.com"},
    )
    assert response.status_code == 400 and "rating" in response.json()["error"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"
