"""The whole assistant end to end, over Rasa's REST channel: `rasa run` with the trained model,
the action server (`rasa run actions` with the engine on the demo knowledge) and a real vLLM
server. Nothing is mocked."""

from __future__ import annotations

import re

import httpx
import pytest

from bot.config import load_settings
from assistant_project import copy_assistant_project, free_port, running_assistant, use_llm_server



@pytest.fixture(scope="module")
def assistant(llm_server, rasa_model, tmp_path_factory):
    """The REST webhook URL of a running assistant on a copy of this project."""
    action_port, rasa_port = free_port(), free_port()
    root = copy_assistant_project(tmp_path_factory.mktemp("assistant"), action_port)
    use_llm_server(root, llm_server)
    settings = load_settings(root)
    assert settings.llm.url == llm_server.url
    with running_assistant(settings, rasa_model, action_port=action_port, rasa_port=rasa_port):
        yield f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook"


def say(url: str, sender: str, text: str) -> tuple[str, dict | None]:
    """Send one message; the bot's texts joined, and its structured knowledge answer if any."""
    response = httpx.post(url, json={"sender": sender, "message": text}, timeout=300)
    response.raise_for_status()
    messages = response.json()
    texts = "\n".join(m["text"] for m in messages if m.get("text"))
    custom = [m["custom"] for m in messages if isinstance(m.get("custom"), dict)]
    return texts, (custom[0] if custom else None)


def assert_grounded(text: str, answer: dict | None, expected_item: str) -> None:
    assert answer is not None and answer["type"] == "knowledge_answer", text
    assert answer["level"] in ("answer", "cautious"), answer
    assert answer["citations"], answer
    assert expected_item in {c["item_id"] for c in answer["sources"]}, answer["sources"]
    assert re.search(r"\[\d\]", text) and any(c["link"] in text for c in answer["citations"]), text


def test_a_knowledge_question_in_chinese_gets_a_grounded_answer(assistant):
    text, answer = say(assistant, "zh-1", "云序智能笔充一次电能用多久？")
    assert_grounded(text, answer, "faq-zh-040")
    assert "来源：" in text and answer["language"] == "zh"


def test_a_knowledge_question_in_english_gets_a_grounded_answer(assistant):
    text, answer = say(assistant, "en-1", "How do I pair the Nimbus Pen with my phone?")
    assert_grounded(text, answer, "faq-en-036")
    assert "Sources:" in text and answer["language"] == "en"


def test_a_question_outside_the_knowledge_is_refused(assistant):
    text, answer = say(assistant, "out-1", "Does the Team plan support SCIM user provisioning?")
    assert answer is not None and answer["level"] == "refuse", text
    assert answer["citations"] == []


def test_a_sensitive_question_gets_the_canned_answer_though_the_knowledge_covers_it(assistant):
    text, answer = say(assistant, "sensitive-1", "How do I reset my password?")
    assert answer is None
    assert text.startswith("To keep your account safe I can't handle account, password")
    text, answer = say(assistant, "sensitive-2", "退款一般多久能到账？")
    assert answer is None and "退款由账务专员逐单审核处理" in text and "订单号" in text


def test_a_follow_up_with_a_pronoun_is_answered_about_the_right_thing(assistant):
    say(assistant, "follow-1", "How do I pair the Nimbus Pen with my phone?")
    text, answer = say(assistant, "follow-1", "How long does its battery last?")
    assert answer is not None and answer["level"] != "refuse", text
    assert "pen" in answer["query"].lower(), answer["query"]
    assert any("batter" in s["title"].lower() for s in answer["sources"][:3]), answer["sources"]
