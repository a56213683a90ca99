"""The Slack answer sink (actions/slack_sink.py) against a local stand-in for Slack's Web API
(slack_standin.py: Slack itself cannot be reached from here), its mrkdwn, and which turns get one."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk import Tracker
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from actions.slack_sink import PLACEHOLDERS, WRITING_MARK, SlackSink, slack_sinks, to_mrkdwn
from slack_standin import TEST_TOKEN

URL = "https://nimbus.example/help/pen-pairing"
CITATIONS = [
    {"number": 1, "title": "Pairing the pen", "source": "faq.jsonl", "link": URL, "item_id": "a", "doc": ""},
    {"number": 2, "title": "Battery <life>", "source": "knowledge/docs/getting_started.md",
     "link": "knowledge/docs/getting_started.md", "item_id": "b", "doc": ""},
]  # fmt: skip
ANSWER = (
    "Hold the **power** button for 3 s [1]; a charge lasts 10 h [2] & more.\n\n"
    f"Sources:\n[1] Pairing the pen — {URL}\n[2] Battery <life> — knowledge/docs/getting_started.md"
)


def sink_for(api, channel="C1", **options) -> SlackSink:
    return SlackSink(AsyncWebClient(TEST_TOKEN, base_url=api.url), channel, **options)


# --- mrkdwn ---------------------------------------------------------------------------------


def test_citations_and_sources_become_slack_links_and_file_paths_stay_text():
    text = to_mrkdwn(ANSWER, CITATIONS)
    assert text == (
        f"Hold the *power* button for 3 s <{URL}|[1]>; a charge lasts 10 h [2] &amp; more.\n\n"
        f"*Sources:*\n[1] <{URL}|Pairing the pen>\n[2] Battery &lt;life&gt; — `knowledge/docs/getting_started.md`"
    )


def test_markdown_links_of_a_sources_only_answer_become_slack_links():
    text = "以下资料可能有帮助：\n[1] [蓝牙配对](https://nimbus.example/a?x=1&y=2)：长按 3 秒\n[2] [充电](knowledge/faq/faq_zh.csv)：约 2 小时\n"
    assert to_mrkdwn(text) == (
        "以下资料可能有帮助：\n[1] <https://nimbus.example/a?x=1&amp;y=2|蓝牙配对>：长按 3 秒\n"
        "[2] 充电 (`knowledge/faq/faq_zh.csv`)：约 2 小时\n"
    )


def test_slack_control_characters_are_escaped():
    assert to_mrkdwn("a <@U123> & <!channel> b") == "a &lt;@U123&gt; &amp; &lt;!channel&gt; b"


# --- the sink ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_placeholder_is_posted_then_updated_at_most_once_per_interval_then_finally(slack_api):
    sink = sink_for(slack_api, thread_ts="1700000000.000100", language="en", interval=0.3)
    await sink.start("turn-1")
    for word in ("Hold ", "the ", "power ", "button ", "for ", "3 s ", "[1]", "; ", "a charge ", "lasts ", "10 h.") * 2:
        await sink.delta(word)
        await asyncio.sleep(0.05)
    await sink.done({"text": ANSWER, "citations": CITATIONS})

    posted = slack_api.calls_to("C1", "chat.postMessage")
    updates = slack_api.calls_to("C1", "chat.update")
    assert [c.text for c in posted] == [PLACEHOLDERS["en"]]
    assert posted[0].params["thread_ts"] == "1700000000.000100"
    assert {c.params["ts"] for c in updates} == {sink.ts}
    partial, final = updates[:-1], updates[-1]
    assert 1 <= len(partial) <= 5, [c.text for c in partial]  # ~1.1 s of deltas, one update per 0.3 s
    assert all(c.text.endswith(WRITING_MARK) and c.text.startswith("Hold the power") for c in partial)
    gaps = [b.at - a.at for a, b in zip(partial, partial[1:])]
    assert all(gap >= 0.25 for gap in gaps), gaps
    assert final.text == to_mrkdwn(ANSWER, CITATIONS) and f"<{URL}|Pairing the pen>" in final.text
    assert slack_api.message("C1", sink.ts)["text"] == final.text


@pytest.mark.asyncio
async def test_a_chinese_question_gets_a_chinese_placeholder_and_a_failure_replaces_it(slack_api):
    sink = sink_for(slack_api, channel="D9", language="zh")
    await sink.start("turn-2")
    await sink.failed("知识库暂时不可用 <稍后再试>")
    assert [c.text for c in slack_api.calls_to("D9", "chat.postMessage")] == ["正在查找答案…"]
    assert slack_api.message("D9", sink.ts)["text"] == "知识库暂时不可用 &lt;稍后再试&gt;"


@pytest.mark.asyncio
async def test_the_final_update_waits_out_a_rate_limit(slack_api):
    sink = sink_for(slack_api)
    await sink.start("turn-3")
    slack_api.fail_next("chat.update", "ratelimited", status=429, retry_after=1)
    await sink.done({"text": ANSWER, "citations": CITATIONS})
    attempts = [c for c in slack_api.calls if c.method == "chat.update"]
    assert [c.ok for c in attempts] == [False, True]
    assert attempts[1].at - attempts[0].at >= 0.9
    assert slack_api.message("C1", sink.ts)["text"] == to_mrkdwn(ANSWER, CITATIONS)


@pytest.mark.asyncio
async def test_when_the_placeholder_cannot_be_updated_the_answer_is_posted_as_a_new_message(slack_api):
    sink = sink_for(slack_api)
    await sink.start("turn-4")
    slack_api.fail_next("chat.update", "cant_update_message")
    await sink.done({"text": ANSWER, "citations": CITATIONS})
    assert [c.text for c in slack_api.calls_to("C1", "chat.postMessage")] == [PLACEHOLDERS["en"], to_mrkdwn(ANSWER, CITATIONS)]


@pytest.mark.asyncio
async def test_when_the_placeholder_cannot_be_posted_the_answer_still_is(slack_api):
    sink = sink_for(slack_api)
    slack_api.fail_next("chat.postMessage", "internal_error", status=500)
    with pytest.raises(SlackApiError):
        await sink.start("turn-5")  # the action logs it (actions/knowledge.py: _each) and goes on
    await sink.delta("Hold the power button")
    await sink.done({"text": ANSWER, "citations": CITATIONS})
    assert [c.text for c in slack_api.calls_to("C1")] == [to_mrkdwn(ANSWER, CITATIONS)]


# --- which turns get a Slack sink -----------------------------------------------------------


def tracker(channel: str | None, metadata: dict | None = None, language: str | None = "en") -> Tracker:
    latest = {"text": "How do I pair the pen?", "intent": {"name": "ask_knowledge"}, "metadata": metadata or {}}
    events = [{"event": "user", "text": latest["text"], "input_channel": channel, "metadata": metadata or {}}]
    return Tracker("U1", {"language": language}, latest, events, False, None, {}, "action_listen")


def test_a_slack_message_gets_a_sink_in_its_channel_and_thread(monkeypatch, slack_api):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    metadata = {"out_channel": "C7", "reply_thread_ts": "1700000000.000200", "message_ts": "1700000000.000300"}
    [sink] = slack_sinks(tracker("slack", metadata, language="zh"))
    assert sink.delivers_final
    asyncio.run(sink.start("turn-6"))
    [call] = slack_api.calls_to("C7")
    assert call.params["thread_ts"] == "1700000000.000200" and call.text == "正在查找答案…"


def test_other_channels_and_a_missing_token_get_no_slack_sink(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TEST_TOKEN)
    assert slack_sinks(tracker("rest")) == []
    assert slack_sinks(tracker("slack", {})) == []  # no out_channel: Rasa posts the answer
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    assert slack_sinks(tracker("slack", {"out_channel": "C7"})) == []  # Rasa posts it, without a placeholder
