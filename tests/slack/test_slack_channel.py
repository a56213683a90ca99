"""Slack end to end: correctly signed Events API requests to a real ``rasa run`` serving this
project's Slack channel (channels/slack.py), with the real action server and knowledge engine
(no LLM: ``BOT_USE_LLM=false``, answers list their sources). What the bot posts is checked on a
local STAND-IN for Slack's Web API (slack_standin.py; Slack itself cannot be reached from here),
where both Rasa (``slack_api_url``) and the action server (``SLACK_API_URL``) send their calls.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from assistant_project import copy_assistant_project, free_port, running_assistant
from bot.config import load_settings
from slack_standin import BOT_USER, TEST_TOKEN, SlackApiStandIn, message_event, post_signed

REPO = Path(__file__).resolve().parents[2]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the test app's signing secret
CHANNEL = "C0KNOWLEDGE"  # slack_channel: the one channel where every message is answered
HELP_URL = "https://nimbus.example/help/slack"
#: A knowledge item with a URL, added to the demo knowledge, so the answer cites a link.
SLACK_FAQ = {
    "id": "faq-en-slack",
    "question": "How do I connect Nimbus Note to Slack?",
    "answer": "In Nimbus Note open Settings > Integrations > Slack, click Connect and approve the "
    "workspace; notes you share then post a preview to the Slack channel you choose.",
    "url": HELP_URL,
    "product": "nimbus-note",
}
CREDENTIALS = """\
rest:
channels.slack.KnowledgeSlackInput:
  slack_token: ${SLACK_BOT_TOKEN}
  slack_signing_secret: ${SLACK_SIGNING_SECRET}
  slack_channel: ${SLACK_CHANNEL}
  slack_api_url: ${SLACK_API_URL}
"""
ANSWER_TIMEOUT = 180  # seconds for one answer on a busy 2-core machine

_ts = itertools.count(100)


def new_ts() -> str:
    """A fresh Slack message timestamp."""
    return f"{int(time.time())}.{next(_ts):06d}"


class SlackBot:
    """The running assistant as Slack sees it: its events URL, and the Web API stand-in."""

    def __init__(self, url: str, api: SlackApiStandIn):
        self.url, self.api = url, api
        self._sync = itertools.count(1)

    def send(self, payload: dict, **options):
        return post_signed(self.url, payload, SECRET, **options)

    def final_update(self, channel: str, placeholder_ts: str):
        """The update that holds the whole answer (partial ones end with " …")."""
        return self.api.wait_for(
            lambda: next(
                (c for c in reversed(self.api.calls_to(channel, "chat.update"))
                 if c.params.get("ts") == placeholder_ts and not c.text.endswith(" …")),
                None,
            ),
            ANSWER_TIMEOUT,
            f"the answer in {channel}",
        )  # fmt: skip

    def ask(self, payload: dict):
        """Send a user's message and wait until it is answered: (placeholder, final update)."""
        channel = payload["event"]["channel"]
        response = self.send(payload)
        assert response.status_code == 200, response.text
        placeholder = self.api.wait_for(
            lambda: next(iter(self.api.calls_to(channel, "chat.postMessage")), None), ANSWER_TIMEOUT, f"a post in {channel}"
        )
        return placeholder, self.final_update(channel, placeholder.response["ts"])

    def settle(self) -> None:
        """Wait until everything sent before has been handled: a new conversation's question is
        answered (messages are handled in the order they arrive), then a moment more."""
        n = next(self._sync)
        channel = f"D0SYNC{n}"
        self.ask(message_event(f"EvSync{n}", channel=channel, user=f"U0SYNC{n}", text=SLACK_FAQ["question"], ts=new_ts()))
        time.sleep(2)


@pytest.fixture(scope="module")
def slack(rasa_model, tmp_path_factory):
    """The assistant behind a Slack app: ``rasa run`` with the Slack channel pointed at the
    Web API stand-in, and the action server with the same token and API URL."""
    api = SlackApiStandIn(token=TEST_TOKEN).start()
    action_port, rasa_port = free_port(), free_port()
    root = copy_assistant_project(tmp_path_factory.mktemp("slack-assistant"), action_port)
    (root / "credentials.yml").write_text(CREDENTIALS, "utf-8")
    (root / "knowledge" / "faq" / "slack_help.jsonl").write_text(json.dumps(SLACK_FAQ) + "\n", "utf-8")
    settings = load_settings(root)
    env = {
        "SLACK_BOT_TOKEN": TEST_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_CHANNEL": CHANNEL,
        "SLACK_API_URL": api.url,
    }
    try:
        with running_assistant(
            settings, rasa_model, action_port=action_port, rasa_port=rasa_port, use_llm=False, env=env
        ):
            yield SlackBot(f"http://127.0.0.1:{rasa_port}/webhooks/slack/webhook", api)
    finally:
        api.stop()


def test_slacks_url_check_gets_its_challenge_back(slack):
    response = slack.send({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"})
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_a_knowledge_question_gets_a_placeholder_at_once_then_the_answer_with_slack_links(slack):
    sent = time.monotonic()
    placeholder, final = slack.ask(
        message_event("EvKnow1", channel="D0ASK1", user="U0ASK1", text="How do I connect Nimbus Note to Slack?", ts=new_ts())
    )
    assert placeholder.text == "Looking that up…" and "thread_ts" not in placeholder.params  # a DM: no thread
    assert placeholder.token == TEST_TOKEN
    assert f"<{HELP_URL}|How do I connect Nimbus Note to Slack?>" in final.text, final.text
    assert "[1]" in final.text and "Looking that up" not in final.text
    calls = slack.api.calls_to("D0ASK1")
    assert [c.method for c in calls][0] == "chat.postMessage" and calls[-1] is final
    assert all(c.method == "chat.update" for c in calls[1:])  # one message, updated in place
    assert placeholder.at - sent < final.at - sent
    print(f"\nSlack: placeholder after {placeholder.at - sent:.2f} s, answer after {final.at - sent:.2f} s")


def test_slack_retries_and_repeated_events_are_not_answered_again(slack):
    event = message_event("EvKnow2", channel="D0ASK2", user="U0ASK2", text="How do I connect Nimbus Note to Slack?", ts=new_ts())
    slack.ask(event)
    before = len(slack.api.calls_to("D0ASK2"))
    for number, reason in (("1", "http_timeout"), ("2", "http_error"), ("3", "connection_failed")):
        response = slack.send(event, headers={"X-Slack-Retry-Num": number, "X-Slack-Retry-Reason": reason})
        assert response.status_code == 200 and response.headers.get("X-Slack-No-Retry") == "1"
    response = slack.send(event)  # the same event_id again, without retry headers
    assert response.status_code == 200 and response.headers.get("X-Slack-No-Retry") == "1"
    again = message_event("EvKnow2-other-id", channel="D0ASK2", user="U0ASK2", text=event["event"]["text"], ts=event["event"]["ts"])
    assert slack.send(again).status_code == 200  # another event about the same message
    unseen_retry = message_event("EvKnow3", channel="D0ASK3", user="U0ASK3", text="How do I connect Nimbus Note to Slack?", ts=new_ts())
    assert slack.send(unseen_retry, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}).status_code == 200
    slack.settle()
    assert len(slack.api.calls_to("D0ASK2")) == before
    assert slack.api.calls_to("D0ASK3") == []  # every retry is dropped (process_unseen_retries: false)


def test_a_mention_in_a_thread_is_answered_once_in_that_thread_in_chinese(slack):
    thread, ts = new_ts(), new_ts()
    mention = message_event(
        "EvMention1", kind="app_mention", channel=CHANNEL, user="U0ZH1", text=f"<@{BOT_USER}> 云序智能笔充一次电能用多久？", ts=ts, thread_ts=thread
    )
    # Slack sends the same message again as a `message` event (message.channels): not answered twice.
    twin = message_event("EvMention1-msg", channel=CHANNEL, channel_type="channel", user="U0ZH1", text=mention["event"]["text"], ts=ts, thread_ts=thread)
    placeholder, final = slack.ask(mention)
    assert slack.send(twin).status_code == 200
    assert placeholder.text == "正在查找答案…" and placeholder.params["thread_ts"] == thread
    assert "[1]" in final.text and "正在查找答案" not in final.text, final.text
    slack.settle()
    assert len(slack.api.calls_to(CHANNEL, "chat.postMessage")) == 1


def test_a_sensitive_question_gets_rasas_canned_answer_once(slack):
    event = message_event("EvSensitive1", channel="D0SENS1", user="U0SENS1", text="How do I reset my password?", ts=new_ts())
    assert slack.send(event).status_code == 200
    first = slack.api.wait_for(lambda: slack.api.calls_to("D0SENS1", "chat.postMessage"), ANSWER_TIMEOUT, "the canned answer")
    assert first[0].text.startswith("To keep your account safe I can't handle account, password"), first[0].text
    assert slack.send(event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}).status_code == 200
    slack.settle()
    calls = slack.api.calls_to("D0SENS1")
    assert [c.method for c in calls] == ["chat.postMessage"]  # no placeholder, no update, no second post
    assert "Looking that up" not in calls[0].text


def test_a_request_not_signed_with_the_apps_secret_is_rejected_and_not_answered(slack):
    event = message_event("EvForged1", channel="D0FORGED", user="U0FORGED", text="How do I connect Nimbus Note to Slack?", ts=new_ts())
    assert slack.send(event, signature="v0=" + "0" * 64).status_code == 401
    assert post_signed(slack.url, event, "not-the-apps-secret").status_code == 401
    assert slack.send(event, timestamp=int(time.time()) - 600).status_code == 401  # a replay: stale timestamp
    assert slack.send(event, signature="").status_code == 401
    slack.settle()
    assert slack.api.calls_to("D0FORGED") == []
