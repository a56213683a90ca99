"""The custom actions as rasa-sdk runs them (Tracker, CollectingDispatcher), on a real engine:
embedded Qdrant, SQLite, the real encoders. No LLM here (generation.use_llm: false): the LLM
path is covered end to end in tests/llm/test_assistant_e2e.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import runtime
from actions.conversation import ActionClearHistory, ActionDetectLanguage, ActionRecordFeedback
from actions.forms import ValidateRefundForm, find_order_number
from actions.knowledge import SENSITIVE_RESPONSES, ActionAnswerFromKnowledge, product_filters
from actions.tracing import ActionTraceCanned
from bot.config import load_settings
from bot.engine import Engine
from bot.feedback import feedback_for
from bot.store.base import OrMissing
from bot.traces import TurnFilter, get_turn, list_turns
from kb_project import copy_project, ingested_template

ACTION_SETTINGS = """
generation:
  use_llm: false
  max_question_chars: 300
  history_turns: 2
decision:
  thresholds:
    dense: {answer: 0.99, caution: 0.98, sources: 0.0}   # never refuse: these tests look at sources
"""


def make_project(template: Path, root: Path) -> Path:
    copy_project(template, root)
    (root / "bot.yml").write_text((root / "bot.yml").read_text("utf-8") + ACTION_SETTINGS, "utf-8")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    template, _ = ingested_template(tmp_path_factory)
    return make_project(template, tmp_path_factory.mktemp("actions") / "project")


@pytest.fixture
def engine_root(project, monkeypatch):
    """The actions' process-wide engine, on ``project``; closed after the test."""
    monkeypatch.setenv("BOT_ROOT", str(project))
    yield project
    if runtime._engine is not None:
        runtime._engine.close()
    runtime._engine, runtime._error = None, None


def tracker(text: str, *, intent: str = "ask_knowledge", slots: dict | None = None, channel: str = "rest") -> Tracker:
    message = {"text": text, "intent": {"name": intent, "confidence": 0.99}, "entities": []}
    events = [{"event": "user", "text": text, "parse_data": message, "input_channel": channel}]
    return Tracker("user-1", slots or {}, message, events, False, None, {}, "action_listen")


def run(action, track: Tracker) -> tuple[list[dict], list[dict]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, track, {}))
    return dispatcher.messages, events


def slots(events: list[dict]) -> dict:
    return {event["name"]: event["value"] for event in events if event["event"] == "slot"}


def test_answer_has_text_sources_and_structured_citations(engine_root):
    messages, events = run(ActionAnswerFromKnowledge(), tracker("智能笔充一次电能用多久？"))
    [message] = messages
    assert "12 小时" in message["text"]  # the FAQ answer's excerpt, cited in the text
    answer = message["custom"]
    assert answer["type"] == "knowledge_answer" and answer["level"] == "sources_only"
    assert answer["sources"][0]["item_id"] == "faq-zh-pen-battery"
    assert answer["language"] == "zh"
    set_slots = slots(events)
    assert set_slots["kb_turn_id"] == answer["turn_id"]
    assert set_slots["kb_history"][0] == {"role": "user", "content": "智能笔充一次电能用多久？"}
    assert set_slots["kb_history"][1]["role"] == "assistant"


def test_rasa_shell_gets_the_text_without_json(engine_root):
    [message], _ = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?", channel="cmdline"))
    assert "Bluetooth" in message["text"]
    assert not message.get("custom")


def test_product_slot_scopes_retrieval(engine_root):
    def sources(product):
        [message], _ = run(ActionAnswerFromKnowledge(), tracker("battery", slots={"product": product}))
        return [source["item_id"] for source in message["custom"]["sources"]]

    engine = asyncio.run(runtime.get_engine())
    scoped = sources("nimbus-note")
    assert scoped and "faq-zh-pen-battery" not in scoped and "faq-en-pen-pair" not in scoped
    for item_id in scoped:
        hits = engine.retrieve("battery", filters={"item_id": item_id}, top_k=1).hits
        assert hits[0].payload.get("metadata", {}).get("product") in (None, "nimbus-note")
    pen_scoped = sources("nimbus-pen")
    assert "faq-zh-pen-battery" in pen_scoped and "faq-en-password" not in pen_scoped
    # "all" searches everything: what an empty slot gets, and more than the pen scope lets through
    everything = sources("all")
    assert everything == sources(None) and everything != pen_scoped


def test_product_filters():
    assert product_filters(None) == {} and product_filters("all") == {}
    assert product_filters("nimbus-pen") == {"product": OrMissing("nimbus-pen")}


def test_history_is_kept_to_the_configured_turns(engine_root):
    history = [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
    ]  # fmt: skip
    _, events = run(ActionAnswerFromKnowledge(), tracker("Can I export all my notes?", slots={"kb_history": history}))
    kept = slots(events)["kb_history"]
    assert len(kept) == 4  # history_turns: 2
    assert kept[:2] == history[2:] and kept[2]["content"] == "Can I export all my notes?"


def test_a_huge_message_gets_a_plain_reply_and_no_answer(engine_root):
    [message], events = run(ActionAnswerFromKnowledge(), tracker("退款" * 400))
    assert "800" in message["text"] and "300" in message["text"] and "太长" in message["text"]
    assert events == []


def test_an_unavailable_engine_is_said_plainly_and_recovers(tmp_path, tmp_path_factory, monkeypatch):
    template, _ = ingested_template(tmp_path_factory)
    root = make_project(template, tmp_path / "locked")
    monkeypatch.setenv("BOT_ROOT", str(root))
    holder = Engine(load_settings(root))
    holder.store  # noqa: B018 - another owner holds the embedded store
    try:
        [message], events = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?"))
        assert "unavailable" in message["text"] and events == []
        assert "in use" in runtime.last_error() and not runtime.ready()
    finally:
        holder.close()
    try:
        [message], _ = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?"))
        assert "Bluetooth" in message["text"] and runtime.ready()
    finally:
        runtime._engine.close()
        runtime._engine, runtime._error = None, None


def test_clear_history_forgets_the_turns_and_the_scope(engine_root):
    messages, events = run(ActionClearHistory(), tracker("清空对话历史", intent="clear_history"))
    assert messages[0]["response"] == "utter_history_cleared"
    assert slots(events) == {"kb_history": None, "kb_turn_id": None, "product": None}


def test_feedback_is_recorded_on_the_answered_turn(engine_root):
    [answer], events = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?"))
    turn_id = slots(events)["kb_turn_id"]
    messages, _ = run(
        ActionRecordFeedback(), tracker("that's wrong", intent="feedback_negative", slots={"kb_turn_id": turn_id})
    )
    assert messages[0]["response"] == "utter_feedback_negative"
    messages, _ = run(ActionRecordFeedback(), tracker("有帮助", intent="feedback_positive", slots={"kb_turn_id": turn_id}))
    assert messages[0]["response"] == "utter_feedback_positive"
    engine = asyncio.run(runtime.get_engine())
    rows = feedback_for(engine.sql, turn_id)
    assert [(row["rating"], row["comment"], row["conversation_id"]) for row in rows] == [
        (-1, "that's wrong", "user-1"),
        (1, "有帮助", "user-1"),
    ]


def test_a_feedback_comment_is_stored_with_personal_data_masked_and_cut(engine_root):
    _, events = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?"))
    turn_id = slots(events)["kb_turn_id"]
    personal = "wrong, call me on 13812345678 or write to ann@example.com "
    run(ActionRecordFeedback(), tracker(personal + "x" * 5000, intent="feedback_negative", slots={"kb_turn_id": turn_id}))
    engine = asyncio.run(runtime.get_engine())
    [row] = feedback_for(engine.sql, turn_id)
    kept = engine.settings.serving.max_comment_chars - len(personal)  # cut first, then masked
    assert row["comment"] == "wrong, call me on [phone] or write to [email] " + "x" * kept


def test_feedback_on_a_turn_of_another_conversation_is_not_stored(engine_root):
    _, events = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?"))
    turn_id = slots(events)["kb_turn_id"]
    message = {"text": "that's wrong", "intent": {"name": "feedback_negative", "confidence": 0.99}, "entities": []}
    other = Tracker("user-2", {"kb_turn_id": turn_id}, message, [], False, None, {}, "action_listen")
    for track in (other, tracker("that's wrong", intent="feedback_negative", slots={"kb_turn_id": "no-such-turn"})):
        messages, _ = run(ActionRecordFeedback(), track)
        assert messages[0]["response"] == "utter_feedback_negative"  # thanked all the same
    engine = asyncio.run(runtime.get_engine())
    assert feedback_for(engine.sql, turn_id) == [] and feedback_for(engine.sql, "no-such-turn") == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("NN-20260315", "NN-20260315"),
        ("my order number is nn-20251102, thanks", "NN-20251102"),
        ("订单号NN20260101", "NN-20260101"),
        ("NN－20260101", "NN-20260101"),
        ("12345", None),
        ("NN-123", None),
        ("NN-202603151", None),  # nine digits
        ("XNN-20260315", None),
        ("", None),
    ],
)
def test_order_numbers(text, expected):
    assert find_order_number(text) == expected


def test_refund_form_rejects_an_invalid_order_number_and_keeps_a_valid_one():
    form = ValidateRefundForm()
    dispatcher = CollectingDispatcher()
    assert form.validate_order_number("订单号是 12345", dispatcher, tracker("订单号是 12345", intent="inform"), {}) == {
        "order_number": None
    }
    assert dispatcher.messages[0]["response"] == "utter_invalid_order_number"
    dispatcher = CollectingDispatcher()
    assert form.validate_order_number("it's nn-20251102", dispatcher, tracker("x", intent="inform"), {}) == {
        "order_number": "NN-20251102"
    }
    assert dispatcher.messages == []


@pytest.mark.parametrize(
    "text, before, after",
    [
        ("你好，我想问一下", None, "zh"),
        ("How much is Plus?", "zh", "en"),
        ("Plus 多少钱", "zh", None),
        ("👍", "zh", None),
        ("NN-20260315", "zh", None),  # an order number says nothing about the language
        ("ok", "zh", None),
        ("ok", None, "en"),  # nothing known yet: the best guess
        ("/greet", None, None),  # an intent payload
    ],
)
def test_language_slot_follows_each_message(text, before, after):
    _, events = run(ActionDetectLanguage(), tracker(text, slots={"language": before}))
    assert events == ([] if after is None else [{"event": "slot", "timestamp": None, "name": "language", "value": after}])


def test_an_unsure_sensitive_guess_gets_the_canned_answer_not_the_llm(engine_root):
    message = tracker("我想把钱要回来，怎么弄", intent="nlu_fallback")
    message.latest_message["intent_ranking"] = [
        {"name": "nlu_fallback", "confidence": 0.6},
        {"name": "refund_request", "confidence": 0.48},
        {"name": "ask_knowledge", "confidence": 0.41},
    ]
    messages, events = run(ActionAnswerFromKnowledge(), message)
    assert messages == [{**messages[0], "response": "utter_refund_request"}] and events == []
    message.latest_message["intent_ranking"][1:] = [
        {"name": "ask_knowledge", "confidence": 0.48},
        {"name": "refund_request", "confidence": 0.41},
    ]
    [answer], _ = run(ActionAnswerFromKnowledge(), message)
    assert answer["response"] is None and answer["custom"]["type"] == "knowledge_answer"


def test_domain_has_a_canned_response_for_each_sensitive_intent():
    import yaml

    domain = yaml.safe_load((Path(__file__).resolve().parents[2] / "domain.yml").read_text("utf-8"))
    intents = {i if isinstance(i, str) else next(iter(i)) for i in domain["intents"]}
    for intent, response in SENSITIVE_RESPONSES.items():
        assert intent in intents and response in domain["responses"]
        languages = {c[0]["value"] for c in (v.get("condition") for v in domain["responses"][response]) if c}
        assert languages == {"zh"} and any("condition" not in v for v in domain["responses"][response])


def test_feedback_when_the_database_fails_still_thanks_the_user(engine_root):
    from bot.db.schema import feedback

    _, answered = run(ActionAnswerFromKnowledge(), tracker("How do I pair the smart pen?"))
    engine = asyncio.run(runtime.get_engine())
    feedback.drop(engine.sql)  # a real fault: the table is gone
    try:
        turn_id = slots(answered)["kb_turn_id"]
        messages, events = run(ActionRecordFeedback(), tracker("👍", intent="feedback_positive", slots={"kb_turn_id": turn_id}))
        assert messages[0]["response"] == "utter_feedback_positive" and events == []
    finally:
        feedback.create(engine.sql)


def test_a_scope_that_cannot_answer_is_widened(tmp_path, tmp_path_factory):
    """The pen is in scope and the user asks about exporting notes: the scoped search finds
    too little, the unscoped one answers, so the answer comes from the unscoped one."""
    template, _ = ingested_template(tmp_path_factory)
    root = make_project(template, tmp_path / "widen")
    with Engine(load_settings(root)) as engine:
        question = "Can I export all my notes?"
        scoped = engine.retrieve(question, filters={"product": OrMissing("nimbus-pen")}).best_dense
        wide = engine.retrieve(question).best_dense
        assert wide > scoped
        cut = (scoped + wide) / 2  # answer above the cut, refuse below it
        thresholds = {"answer": cut, "caution": cut, "sources": cut}
        (root / "bot.yml").write_text(
            (root / "bot.yml").read_text("utf-8").replace(
                "dense: {answer: 0.99, caution: 0.98, sources: 0.0}", f"dense: {thresholds}".replace("'", "")
            ),
            "utf-8",
        )
    with Engine(load_settings(root)) as engine:
        answer = engine.answer(question, scope={"product": OrMissing("nimbus-pen")})
        assert answer.widened and answer.decision.level.answers
        assert answer.sources[0].item_id == "faq-en-export"
        kept = engine.answer("battery", scope={"product": OrMissing("nimbus-pen")})
        assert not kept.widened  # the scope answers (or the wider search does no better)


def test_a_knowledge_turn_is_traced_with_what_rasa_knew(engine_root):
    track = tracker("How do I pair the smart pen?", slots={"product": "nimbus-pen"})
    track.latest_message["message_id"] = "msg-42"
    [message], _ = run(ActionAnswerFromKnowledge(), track)
    engine = asyncio.run(runtime.get_engine())
    assert engine.traces.flush(10)
    trace = get_turn(engine.sql, message["custom"]["turn_id"])
    assert trace["kind"] == "knowledge" and trace["conversation_id"] == "user-1"
    assert (trace["message_id"], trace["channel"], trace["intent"]) == ("msg-42", "rest", "ask_knowledge")
    assert trace["intent_confidence"] == pytest.approx(0.99)
    assert trace["filters"] == {"product": {"or_missing": "nimbus-pen"}}
    assert trace["question"] == "How do I pair the smart pen?"
    assert trace["hits"][0]["item_id"] == message["custom"]["sources"][0]["item_id"]


def test_a_canned_turn_gets_a_light_trace(engine_root):
    track = tracker("someone logged into my account", intent="account_security", slots={"language": "en"})
    track.events.append({"event": "bot", "text": "...", "metadata": {"utter_action": "utter_account_security"}})
    assert run(ActionTraceCanned(), track) == ([], [])  # it says nothing: the rule already answered
    engine = asyncio.run(runtime.get_engine())
    assert engine.traces.flush(10)
    [row] = list_turns(engine.sql, TurnFilter(kind="canned", intent="account_security"))
    trace = get_turn(engine.sql, row["turn_id"])
    assert trace["response"] == "utter_account_security" and trace["language"] == "en"
    assert trace["level"] is None and trace["hits"] is None  # no retrieval for a canned answer


def test_rules_trace_every_canned_answer():
    import yaml

    rules = yaml.safe_load(Path(__file__).parents[2].joinpath("data/rules.yml").read_text("utf-8"))["rules"]
    for intent, response in SENSITIVE_RESPONSES.items():
        [rule] = [r for r in rules if r["steps"][0] == {"intent": intent}]
        actions = [step.get("action") for step in rule["steps"]]
        assert actions[actions.index(response) + 1] == "action_trace_canned", rule
