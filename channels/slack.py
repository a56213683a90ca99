"""Slack for the knowledge bot: Rasa's Slack channel, hardened against Slack's retries.

In ``credentials.yml`` (README: "Slack"), tokens from the environment:

    channels.slack.KnowledgeSlackInput:
      slack_token: ${SLACK_BOT_TOKEN}
      slack_signing_secret: ${SLACK_SIGNING_SECRET}

What it changes in Rasa's :class:`~rasa.core.channels.slack.SlackInput`:

- **No duplicate answers.** Slack re-sends an event it thinks was not received (header
  ``X-Slack-Retry-Num``). Every request is answered at once and the message is processed in the
  background, so a retry means a delivery that was slow or failed on the way back, not one that
  went unseen: every retry is acknowledged (``X-Slack-No-Retry: 1``) and dropped (Rasa drops
  only ``http_timeout`` retries). An event whose ``event_id``, or whose message (channel and
  ``ts``: the ``app_mention`` and ``message`` events of one message), was already received is
  dropped too; the last ``remembered_events`` (10,000) are remembered, in memory.
  ``process_unseen_retries: true`` processes a retry of an event this process has not seen
  (e.g. it was down when Slack first sent it) instead of dropping it.
- **The Web API's address** is ``slack_api_url`` (default Slack's ``https://slack.com/api/``),
  for Rasa's own replies (canned answers); the action server's answer sink reads ``SLACK_API_URL``.
- **Metadata for the actions**: besides Rasa's ``out_channel``, ``thread_id`` and ``users``,
  ``message_ts`` (the user's message), ``reply_thread_ts`` (the thread to answer in: the user's
  thread, or the message itself with ``use_threads: true``; empty for the channel itself) and
  ``event_id``. The knowledge action posts its placeholder there (``actions/slack_sink.py``);
  Rasa's own replies go to the same place.
- Signed badly or not at all: 401. Slack's URL check (``url_verification``) gets its challenge
  back as ``{"challenge": ...}``. Message subtypes that are not something a user wrote (joins,
  edits, deletions) are ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.slack import SlackBot, SlackInput
from rasa.shared.exceptions import InvalidConfigException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["DEFAULT_API_URL", "KnowledgeSlackBot", "KnowledgeSlackInput", "RecentIds", "base_url"]

logger = logging.getLogger(__name__)

#: Slack's Web API.
DEFAULT_API_URL = "https://slack.com/api/"
#: The ``json_message`` of a knowledge answer (actions/knowledge.py): for web channels only.
KNOWLEDGE_ANSWER = "knowledge_answer"
#: Message subtypes a person wrote; others (channel_join, message_changed, ...) are not questions.
USER_SUBTYPES = (None, "thread_broadcast", "file_share")
_NO_RETRY = {"X-Slack-No-Retry": "1"}

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


def base_url(url: Optional[Text]) -> Text:
    """The Web API base URL as slack_sdk wants it (ending in ``/``)."""
    return (url or DEFAULT_API_URL).rstrip("/") + "/"


class RecentIds:
    """The last ``size`` ids seen, the oldest forgotten first."""

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._ids: OrderedDict[Text, None] = OrderedDict()

    def add(self, key: Text) -> bool:
        """Remember ``key``; whether it is new."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class KnowledgeSlackBot(SlackBot):
    """Rasa's Slack output with a configurable Web API URL; it does not post a knowledge
    answer's structured ``json_message`` (its text is posted already)."""

    def __init__(
        self,
        token: Text,
        slack_channel: Optional[Text] = None,
        thread_id: Optional[Text] = None,
        proxy: Optional[Text] = None,
        *,
        api_url: Text = DEFAULT_API_URL,
    ) -> None:
        super().__init__(token, slack_channel, thread_id, proxy)
        self.client = AsyncWebClient(token, base_url=base_url(api_url), proxy=proxy)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        if json_message.get("type") == KNOWLEDGE_ANSWER:
            return
        await super().send_custom_json(recipient_id, json_message, **kwargs)


class KnowledgeSlackInput(SlackInput):
    """Rasa's Slack input channel that answers each message once (see the module's docstring)."""

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        if not credentials:
            cls.raise_missing_credentials_exception()
        return cls(
            credentials.get("slack_token"),
            credentials.get("slack_channel") or None,
            credentials.get("proxy"),
            credentials.get("slack_retry_reason_header", "x-slack-retry-reason"),
            credentials.get("slack_retry_number_header", "x-slack-retry-num"),
            None,  # errors_ignore_retry: every retry is dropped here
            _flag(credentials.get("use_threads", False)),
            credentials.get("slack_signing_secret", ""),
            credentials.get("conversation_granularity", "sender"),
            api_url=credentials.get("slack_api_url"),
            remembered_events=int(credentials.get("remembered_events", 10_000)),
            process_unseen_retries=_flag(credentials.get("process_unseen_retries", False)),
        )

    def __init__(
        self,
        *args: Any,
        api_url: Optional[Text] = None,
        remembered_events: int = 10_000,
        process_unseen_retries: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.api_url = base_url(api_url)
        self.process_unseen_retries = process_unseen_retries
        self._seen = RecentIds(remembered_events)

    def _validate_credentials(self) -> None:
        super()._validate_credentials()
        if not self.slack_token:
            raise InvalidConfigException(
                "The Slack channel has no bot token: set slack_token in credentials.yml "
                "(slack_token: ${SLACK_BOT_TOKEN}, the app's Bot User OAuth Token, xoxb-...)."
            )

    def get_output_channel(self, channel: Optional[Text] = None, thread_id: Optional[Text] = None) -> OutputChannel:
        return KnowledgeSlackBot(
            self.slack_token, channel or self.slack_channel, thread_id, self.proxy, api_url=self.api_url
        )

    def get_metadata(self, request: Request) -> Dict[Text, Any]:
        """Rasa's metadata plus ``message_ts``, ``reply_thread_ts`` and ``event_id``."""
        metadata = super().get_metadata(request)
        if not metadata:
            return metadata
        if _content_type(request) == "application/json":
            body = request.json or {}
            message, event_id = body.get("event") or {}, body.get("event_id")
        else:
            payload = json.loads(request.form["payload"][0])
            message, event_id = payload.get("message") or {}, None
        ts = message.get("ts")
        metadata.update(
            message_ts=ts,
            reply_thread_ts=message.get("thread_ts") or (ts if self.use_threads else None),
            event_id=event_id,
        )
        return metadata

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        slack_webhook = Blueprint("slack_webhook", __name__)

        @slack_webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @slack_webhook.route("/webhook", methods=["GET", "POST"])
        async def webhook(request: Request) -> HTTPResponse:
            if not self.is_request_from_slack_authentic(request):
                logger.warning("rejected a request to the Slack webhook: its signature is missing, wrong or stale")
                return response.text(
                    "Not signed with a valid X-Slack-Signature for this app's signing secret.",
                    status=HTTPStatus.UNAUTHORIZED,
                )
            content_type = _content_type(request)
            if content_type == "application/json":
                body = request.json or {}
                if body.get("type") == "url_verification":
                    return response.json({"challenge": body.get("challenge")})
                return await self._handle_event(request, body, on_new_message)
            if content_type == "application/x-www-form-urlencoded":
                return await self._handle_interaction(request, on_new_message)
            return response.text("Bot message delivered.")

        return slack_webhook

    async def process_message(
        self,
        request: Request,
        on_new_message: OnNewMessage,
        text: Text,
        sender_id: Optional[Text],
        metadata: Optional[Dict],
    ) -> Any:
        """Hand the message to Rasa in the background and answer Slack at once (retries are
        dropped before this, see :meth:`_handle_event`)."""
        metadata = metadata or {}
        output = self.get_output_channel(metadata.get("out_channel"), metadata.get("reply_thread_ts"))
        message = UserMessage(text, output, sender_id, input_channel=self.name(), metadata=metadata)
        task = asyncio.create_task(on_new_message(message))
        self._background_tasks.add(task)
        task.add_done_callback(self._finished)
        return response.text("")

    async def _handle_event(self, request: Request, body: Dict[Text, Any], on_new_message: OnNewMessage) -> HTTPResponse:
        retry = self._retry(request)
        if retry and not self.process_unseen_retries:
            return retry
        event = body.get("event") or {}
        if not self._is_user_message(body) or event.get("subtype") not in USER_SUBTYPES:
            return response.text("Not a user message: skipped.")
        metadata = self.get_metadata(request)
        if not self._is_supported_channel(body, metadata):
            logger.info("Slack message in channel %s skipped: not a DM, a mention or slack_channel", metadata["out_channel"])
            return response.text("channel not supported.")
        if not self._first_delivery(body.get("event_id"), event):
            logger.info("Slack event %s (message %s) was received already: dropped", body.get("event_id"), event.get("ts"))
            return response.text("Received already.", headers=_NO_RETRY)
        conversation = self._get_conversation_id(event.get("user", ""), metadata["out_channel"], metadata["thread_id"])
        text = self._sanitize_user_message(event.get("text", ""), metadata["users"])
        return await self.process_message(request, on_new_message, text, conversation, metadata)

    async def _handle_interaction(self, request: Request, on_new_message: OnNewMessage) -> HTTPResponse:
        """A button or menu in one of the bot's messages (as in Rasa's channel)."""
        retry = self._retry(request)
        if retry:
            return retry
        payload = json.loads(request.form["payload"][0])
        if self._is_interactive_message(payload):
            text = self._get_interactive_response(payload["actions"][0])
            if text is not None:
                metadata = self.get_metadata(request)
                conversation = self._get_conversation_id(
                    payload["user"]["id"], metadata.get("out_channel"), metadata.get("thread_id")
                )
                return await self.process_message(request, on_new_message, text, conversation, metadata)
            if payload["actions"][0]["type"] == "button":
                return response.text("User clicked link button")  # link buttons carry no value
        return response.text("The input message could not be processed.", status=HTTPStatus.INTERNAL_SERVER_ERROR)

    def _retry(self, request: Request) -> Optional[HTTPResponse]:
        """The acknowledgement of a Slack retry (None: not a retry)."""
        number = request.headers.get(self.retry_num_header)
        if not number:
            return None
        reason = request.headers.get(self.retry_reason_header) or "unknown"
        logger.info("Slack retry #%s (%s) acknowledged and dropped: the first delivery is being answered", number, reason)
        return response.text("", status=HTTPStatus.OK, headers=_NO_RETRY)

    def _first_delivery(self, event_id: Optional[Text], event: Dict[Text, Any]) -> bool:
        """Whether neither the event nor its message was received before (and remember both)."""
        keys = [f"event:{event_id}"] if event_id else []
        if event.get("channel") and event.get("ts"):
            keys.append(f"message:{event['channel']}:{event['ts']}")
        fresh = [self._seen.add(key) for key in keys]  # remember every key, even after a known one
        return all(fresh)

    def _finished(self, task: asyncio.Task) -> None:
        self._background_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling a Slack message failed", exc_info=task.exception())


def _content_type(request: Request) -> Text:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


def _flag(value: Any) -> bool:
    """A yes/no setting that may come from ``${VAR}`` as text."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)
