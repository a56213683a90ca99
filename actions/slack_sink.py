"""Slack: a knowledge answer appears at once as a short placeholder, then is updated in place.

:func:`slack_sinks` gives a knowledge turn its :class:`SlackSink` when the message came from
Slack (the metadata ``channels/slack.py`` attaches names the channel and the thread):

- ``start`` posts a placeholder ("正在查找答案…" / "Looking that up…") where the user wrote;
- ``delta`` updates it with the text so far, at most once every ``interval`` seconds (1.5 s:
  Slack allows chat.update about 50 times a minute per workspace), in the background, so the
  answer is never held up by Slack;
- ``done`` updates it with the final answer in Slack's mrkdwn: citation markers and sources as
  links ``<url|title>`` (a source without a URL, such as a file path, as code), Markdown links as
  Slack links, ``**bold**`` as ``*bold*``;
- ``failed`` updates it with the error text.

A partial update still on its way always lands before the final one. When the placeholder could
not be posted or updated, the final text is posted as a new message.

The sink shows the final answer itself (``delivers_final``), so the action does not utter it
and Rasa does not post it a second time. It needs the bot token in the action server's
environment: ``SLACK_BOT_TOKEN`` (and ``SLACK_API_URL`` for a Web API other than
``https://slack.com/api/``). Without the token the action utters the answer as on any channel
and Rasa posts it when the turn ends, without a placeholder.

    sink = SlackSink(AsyncWebClient(token), "C123", thread_ts=None, language="en")
    await sink.start(turn_id)          # "Looking that up…"
    await sink.delta("Charge the pen ")
    await sink.done({"text": "Charge the pen for 2 hours [1].", "citations": [...]})
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any, Callable, Iterable, Mapping

from rasa_sdk import Tracker
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from actions.streams import AnswerSink
from bot.lang import detect_language

__all__ = ["PLACEHOLDERS", "SlackSink", "slack_sinks", "to_mrkdwn", "escape"]

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
#: What the user sees while the answer is looked up, by language.
PLACEHOLDERS = {"zh": "正在查找答案…", "en": "Looking that up…"}
#: Appended to a partial answer while it is being written.
WRITING_MARK = " …"
#: Seconds between two updates of a message being written.
UPDATE_INTERVAL = 1.5
#: The longest wait for Slack's rate limit before the final update is tried again (seconds).
MAX_RATE_LIMIT_WAIT = 30.0

_warned_no_token = False


def slack_sinks(tracker: Tracker) -> list[AnswerSink]:
    """The turn's Slack sink, if the message came from Slack and the bot token is set."""
    global _warned_no_token
    if tracker.get_latest_input_channel() != "slack":
        return []
    latest = tracker.latest_message or {}
    metadata = latest.get("metadata") or {}
    channel = metadata.get("out_channel")
    token = os.environ.get("SLACK_BOT_TOKEN", "").strip()
    if not channel:
        logger.warning("a Slack message without out_channel in its metadata: Rasa posts the answer when it is complete")
        return []
    if not token:
        if not _warned_no_token:
            logger.warning(
                "SLACK_BOT_TOKEN is not set in the action server's environment: Slack answers are "
                "posted by Rasa when they are complete, without a placeholder. Set it (the bot "
                "token in credentials.yml) and restart the action server."
            )
            _warned_no_token = True
        return []
    language = tracker.get_slot("language") or detect_language(latest.get("text") or "")
    client = AsyncWebClient(token=token, base_url=_base_url(os.environ.get("SLACK_API_URL")), timeout=10)
    return [SlackSink(client, channel, thread_ts=metadata.get("reply_thread_ts"), language=language)]


class SlackSink:
    """One knowledge turn in one Slack channel or thread: a placeholder updated in place."""

    delivers_final = True

    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        *,
        thread_ts: str | None = None,
        language: str = "en",
        interval: float = UPDATE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._channel, self._thread_ts = client, channel, thread_ts or None
        self._language = "zh" if str(language).startswith("zh") else "en"
        self._interval, self._clock = interval, clock
        self._ts: str | None = None  # the placeholder's
        self._text = ""
        self._last_update = 0.0
        self._update: asyncio.Task | None = None

    @property
    def ts(self) -> str | None:
        """The ``ts`` of the message the sink posted (None until it is posted)."""
        return self._ts

    async def start(self, turn_id: str) -> None:
        self._text = ""
        self._last_update = self._clock()
        response = await self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=PLACEHOLDERS[self._language]
        )
        self._ts = response["ts"]
        self._channel = response.get("channel") or self._channel  # an id, if a name was given

    async def delta(self, text: str) -> None:
        self._text += text
        if self._ts is None or (self._update is not None and not self._update.done()):
            return
        if self._clock() - self._last_update < self._interval:
            return
        self._last_update = self._clock()
        self._update = asyncio.create_task(self._edit(to_mrkdwn(self._text) + WRITING_MARK, final=False))

    async def done(self, message: dict[str, Any]) -> None:
        await self._finish(to_mrkdwn(message.get("text") or "", message.get("citations") or ()))

    async def failed(self, text: str) -> None:
        await self._finish(escape(text))

    async def _finish(self, text: str) -> None:
        if self._update is not None:
            await self._update  # a partial update on its way lands first, never after this one
        if self._ts is not None and await self._edit(text, final=True):
            return
        await self._client.chat_postMessage(channel=self._channel, thread_ts=self._thread_ts, text=text)

    async def _edit(self, text: str, *, final: bool) -> bool:
        """Replace the placeholder's text; whether it worked. The final text waits out one rate limit."""
        for attempt in (1, 2):
            try:
                await self._client.chat_update(channel=self._channel, ts=self._ts, text=text)
                return True
            except SlackApiError as exc:
                wait = _rate_limit_wait(exc)
                if final and attempt == 1 and wait is not None:
                    logger.info("Slack rate-limited chat.update; the final answer is sent again in %.0f s", wait)
                    await asyncio.sleep(wait)
                    continue
                logger.warning("Slack chat.update failed: %s", exc.response.get("error") or exc)
                return False
            except Exception as exc:  # the network: connection errors, timeouts
                logger.warning("Slack chat.update failed: %s", exc)
                return False
        return False


def _rate_limit_wait(exc: SlackApiError) -> float | None:
    """Seconds Slack asks to wait (None: not a rate limit)."""
    response = exc.response
    if getattr(response, "status_code", None) != 429 and response.get("error") != "ratelimited":
        return None
    try:
        wait = float((getattr(response, "headers", None) or {}).get("Retry-After", 1))
    except (TypeError, ValueError):
        wait = 1.0
    return min(max(wait, 0.0), MAX_RATE_LIMIT_WAIT)


def _base_url(url: str | None) -> str:
    return (url or DEFAULT_API_URL).rstrip("/") + "/"


# --- Slack mrkdwn -----------------------------------------------------------------------

_MD_LINK = re.compile(r"!?\[([^\[\]\n]+)\]\(([^()\s]+)\)")
_MARKER = re.compile(r"\[(\d{1,3})\](?!\()")
_BOLD = re.compile(r"\*\*(?=\S)([^*\n]+?)(?<=\S)\*\*")
_URL = re.compile(r"^(?:https?://|mailto:)\S+$", re.IGNORECASE)
_KEPT = re.compile("\x00(\\d+)\x00")
# A short line ending in a colon right before the first source line ("Sources:", "来源：").
_SOURCES_HEADING = re.compile("(?m)^([^\n\x00*]{1,40}[:：])[ \t]*\n(?=\x00)")


def escape(text: str) -> str:
    """Text as Slack shows it literally (``&``, ``<`` and ``>`` are control characters in mrkdwn)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(text: str, citations: Iterable[Mapping[str, Any]] = ()) -> str:
    """An answer (text, ``[n]`` markers, sources block) as Slack mrkdwn.

    ``citations`` are the answer's (``number``, ``title``, ``link``): a marker ``[n]`` whose
    link is a URL becomes ``<url|[n]>``, and its line ``[n] title — link`` in the sources block
    ``[n] <url|title>``; a link that is not a URL (a file path) stays text, as code.
    """
    kept: list[str] = []

    def keep(piece: str) -> str:
        kept.append(piece)
        return f"\x00{len(kept) - 1}\x00"

    links: dict[int, str] = {}
    for citation in citations:
        number, title, link = int(citation["number"]), str(citation.get("title") or ""), str(citation.get("link") or "")
        links[number] = link
        line = f"[{number}] {title} — {link}"
        if line in text:
            shown = f"<{_url(link)}|{escape(title)}>" if _URL.match(link) else f"{escape(title)} — {_code(link)}"
            text = text.replace(line, keep(f"[{number}] {shown}"))

    text = _MD_LINK.sub(lambda m: keep(_link(m.group(2), m.group(1))), text)

    def marker(match: re.Match[str]) -> str:
        link = links.get(int(match.group(1)), "")
        return keep(f"<{_url(link)}|{match.group(0)}>") if _URL.match(link) else match.group(0)

    text = _MARKER.sub(marker, text)
    text = _BOLD.sub(r"*\1*", escape(text))
    text = _SOURCES_HEADING.sub(lambda m: f"*{m.group(1).strip()}*\n", text, count=1)
    return _KEPT.sub(lambda m: kept[int(m.group(1))], text)


def _link(target: str, label: str) -> str:
    if _URL.match(target):
        return f"<{_url(target)}|{escape(label)}>"
    return f"{escape(label)} ({_code(target)})"


def _url(url: str) -> str:
    """A URL inside ``<...|...>``: entities escaped, and ``|`` (it would end the URL) encoded."""
    return escape(url).replace("|", "%7C")


def _code(text: str) -> str:
    return "`" + escape(text.replace("`", "'")) + "`"
