"""The widget's routes on a real action server (``rasa run actions``, no LLM): its conversation
and key (``POST /knowledge/session``), the live stream and feedback that need the key, embedding
a question ahead of its turn (``POST /knowledge/prepare``), the static files, and the refusals."""

from __future__ import annotations

import json
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
    for name in ("actions", "rasa_sdk_plugins", "widget"):
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
    "body, status, error",
    [
        (b"not json", 400, "bad_request"),
        (b"{}", 400, "bad_request"),
        (b"[]", 400, "bad_request"),
        (b'{"text": "   "}', 400, "bad_request"),
        (b'{"text": 5}', 400, "bad_request"),
        (b'{"text": "\\ud800"}', 400, "bad_request"),  # a lone surrogate: not text
        (b'{"text": "' + b"x" * 101 + b'"}', 413, "question_too_long"),
    ],
)
def test_a_bad_request_is_refused_plainly(actions_url, body, status, error):
    response = httpx.post(f"{actions_url}/knowledge/prepare", content=body)
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["message"]
    assert httpx.get(f"{actions_url}/knowledge/ready").status_code == 200  # still serving


def test_feedback_from_another_site_needs_no_preflight(actions_url):
    response = httpx.post(
        f"{actions_url}/knowledge/feedback",
        content=b'{"conversation_id": "c-1", "key": "k", "turn_id": "t-1", "rating": 2}',
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example.com"},
    )
    assert response.status_code == 400 and '"rating"' in response.json()["message"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_session_is_a_fresh_conversation_and_its_key(actions_url):
    first = httpx.post(f"{actions_url}/knowledge/session").json()
    second = httpx.post(f"{actions_url}/knowledge/session", content=b"").json()
    assert first["conversation_id"] != second["conversation_id"] and first["key"] != second["key"]
    kept = httpx.post(f"{actions_url}/knowledge/session", content=json.dumps(first)).json()
    assert kept == first  # a reload keeps its conversation
    forged = {"conversation_id": first["conversation_id"], "key": second["key"]}
    renewed = httpx.post(f"{actions_url}/knowledge/session", content=json.dumps(forged)).json()
    assert renewed["conversation_id"] not in (first["conversation_id"], second["conversation_id"])


def test_the_stream_and_feedback_need_the_conversation_key(actions_url):
    session = httpx.post(f"{actions_url}/knowledge/session").json()
    stream = f"{actions_url}/knowledge/stream/{session['conversation_id']}"
    for params in ({}, {"key": "0" * 64}, {"key": httpx.post(f"{actions_url}/knowledge/session").json()["key"]}):
        refused = httpx.get(stream, params=params)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    with httpx.stream("GET", stream, params={"key": session["key"]}, timeout=10) as opened:
        assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/event-stream")
        assert next(opened.iter_text()).startswith(": listening")

    feedback = {"turn_id": "0" * 32, "rating": 1, **session}
    wrong_key = httpx.post(f"{actions_url}/knowledge/feedback", content=json.dumps({**feedback, "key": "x"}))
    assert wrong_key.status_code == 403
    unknown_turn = httpx.post(f"{actions_url}/knowledge/feedback", content=json.dumps(feedback))
    assert unknown_turn.status_code == 404 and unknown_turn.json()["error"] == "unknown_turn"


def test_the_widget_files_and_nothing_else(actions_url):
    script = httpx.get(f"{actions_url}/widget/widget.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{actions_url}/widget/vendor/purify.min.js").status_code == 200
    for name in ("missing.js", "..%2f..%2fbot.yml", "%2e%2e/%2e%2e/bot.yml", "vendor", "%00", "a" * 3000):
        missing = httpx.get(f"{actions_url}/widget/{name}")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found", name
        assert "/" not in missing.json()["message"]  # no path in the answer
    posted = httpx.post(f"{actions_url}/widget/widget.js", content=b"x")
    assert posted.status_code == 405 and posted.json()["error"] == "method_not_allowed"
