"""The Slack input channel's settings and its memory of received events (channels/slack.py)."""

from __future__ import annotations

import asyncio

import pytest
from rasa.shared.exceptions import InvalidConfigException

from channels.slack import DEFAULT_API_URL, KnowledgeSlackBot, KnowledgeSlackInput, RecentIds


def test_recent_ids_remember_a_bounded_number_of_ids():
    seen = RecentIds(size=3)
    assert [seen.add(key) for key in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert len(seen) == 3 and "b" not in seen and "a" in seen  # "b" was the least recently seen


def test_the_channel_reads_its_settings_from_credentials():
    channel = KnowledgeSlackInput.from_credentials(
        {
            "slack_token": "xoxb-1",
            "slack_signing_secret": "s3cret",
            "slack_channel": "",  # ${SLACK_CHANNEL} set to nothing: no channel of its own
            "slack_api_url": "http://127.0.0.1:9999/api",
            "use_threads": "true",  # from ${VAR}: text
            "remembered_events": "100",
        }
    )
    assert channel.slack_channel is None and channel.use_threads is True
    assert channel.api_url == "http://127.0.0.1:9999/api/" and channel.process_unseen_retries is False
    output = channel.get_output_channel("C1", "1700000000.000100")
    assert isinstance(output, KnowledgeSlackBot) and output.thread_id == "1700000000.000100"
    assert output.client.base_url == "http://127.0.0.1:9999/api/"
    default = KnowledgeSlackInput.from_credentials({"slack_token": "xoxb-1", "slack_signing_secret": "s"})
    assert default.get_output_channel("C1").client.base_url == DEFAULT_API_URL


@pytest.mark.parametrize("missing", ["slack_token", "slack_signing_secret"])
def test_a_channel_without_its_token_or_signing_secret_does_not_start(missing):
    credentials = {"slack_token": "xoxb-1", "slack_signing_secret": "s3cret", missing: ""}
    with pytest.raises(InvalidConfigException, match=missing):
        KnowledgeSlackInput.from_credentials(credentials)


def test_the_shipped_credentials_block_works_once_uncommented(monkeypatch, tmp_path):
    """credentials.yml ships the Slack block commented out; uncommented, with the variables set,
    Rasa reads it and builds this channel."""
    from pathlib import Path

    from rasa.core.run import create_http_input_channels
    from rasa.shared.utils.io import read_yaml_file

    shipped = (Path(__file__).resolve().parents[2] / "credentials.yml").read_text("utf-8")
    lines = shipped.splitlines()
    start = lines.index("# channels.slack.KnowledgeSlackInput:")
    block = [line[2:] for line in lines[start:] if line.startswith("# ")]
    credentials = tmp_path / "credentials.yml"
    credentials.write_text("\n".join(lines[:start] + block) + "\n", "utf-8")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    monkeypatch.setenv("SLACK_CHANNEL", "C0123456789")
    assert "channels.slack.KnowledgeSlackInput" in read_yaml_file(credentials)
    [slack] = [c for c in create_http_input_channels(None, str(credentials)) if c.name() == "slack"]
    assert isinstance(slack, KnowledgeSlackInput)
    assert (slack.slack_token, slack.slack_signing_secret, slack.slack_channel) == ("xoxb-1", "s3cret", "C0123456789")
    assert slack.api_url == DEFAULT_API_URL


class _Request:
    """What the channel reads from a sanic request: headers and the JSON body."""

    def __init__(self, body: dict, **headers: str):
        self.json, self.headers = body, {"content-type": "application/json", **headers}


def _event(event_id: str, ts: str, **event) -> dict:
    return {
        "type": "event_callback",
        "event_id": event_id,
        "authorizations": [{"user_id": "UBOT"}],
        "event": {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "hi", "ts": ts, **event},
    }


@pytest.mark.asyncio
async def test_with_process_unseen_retries_a_retry_of_an_unseen_event_is_answered_once():
    channel = KnowledgeSlackInput.from_credentials(
        {"slack_token": "xoxb-1", "slack_signing_secret": "s", "process_unseen_retries": True}
    )
    received = []

    async def on_new_message(message):
        received.append(message)

    retry = {"x-slack-retry-num": "1", "x-slack-retry-reason": "http_error"}
    for body, headers in [
        (_event("Ev1", "1.000001"), retry),  # the first delivery was lost: answered
        (_event("Ev1", "1.000001"), {"x-slack-retry-num": "2", "x-slack-retry-reason": "http_error"}),  # seen: dropped
        (_event("Ev2", "1.000002", thread_ts="1.000000"), {}),  # in a thread: answered in it
    ]:
        answer = await channel._handle_event(_Request(body, **headers), body, on_new_message)
        assert answer.status == 200
    await asyncio.sleep(0)
    assert [m.metadata["event_id"] for m in received] == ["Ev1", "Ev2"]
    assert received[0].metadata["reply_thread_ts"] is None and received[1].metadata["reply_thread_ts"] == "1.000000"
    assert received[1].output_channel.thread_id == "1.000000" and received[0].metadata["message_ts"] == "1.000001"
