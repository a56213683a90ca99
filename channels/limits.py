"""What this project's Rasa channels (REST, socket.io) refuse before a message reaches the bot:
bodies over ``serving.max_body_kb``, messages over ``generation.max_question_chars``, malformed
messages, and bursts over ``serving.conversation_per_minute`` (a sender) or
``serving.client_per_minute`` (a client address). Settings come from bot.yml (``BOT_ROOT``);
the rate limiters are this process's, shared by its channels.

    limits = channel_limits()
    refused = limits.client(request.ip) or limits.message(text) or limits.conversation(sender)
    if refused:
        return response.json(refused.body(language), status=refused.status, headers=refused.headers)

A refusal is the doors' one JSON body (:func:`bot.doors.refusal_body`) in the sender's language,
never the request echoed back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from bot.config import load_settings
from bot.doors import refusal, refusal_body, valid_text
from bot.ratelimit import RateLimiter

__all__ = [
    "ChannelLimits",
    "Refusal",
    "channel_limits",
    "close_if_body_unread",
    "limit_request_bodies",
    "valid_conversation_id",
]

logger = logging.getLogger(__name__)

#: The longest conversation id (REST ``sender``, socket.io ``session_id``) a channel accepts.
MAX_SENDER_CHARS = 256

#: Why a message is a bad request, for ``bad_request``'s ``{reason}``, by language.
REASONS = {
    "not_json": {"en": "the request is not valid JSON", "zh": "请求内容不是有效的 JSON"},
    "not_object": {"en": "the request must be a JSON object", "zh": "请求内容必须是 JSON 对象"},
    "sender": {
        "en": f'"sender" must be a non-empty string of at most {MAX_SENDER_CHARS} characters',
        "zh": f"“sender”必须是非空字符串，最多 {MAX_SENDER_CHARS} 个字符",
    },
    "session_id": {
        "en": f'"session_id" must be a non-empty string of at most {MAX_SENDER_CHARS} characters',
        "zh": f"“session_id”必须是非空字符串，最多 {MAX_SENDER_CHARS} 个字符",
    },
    "message": {
        "en": '"message" must be a string of valid Unicode',
        "zh": "“message”必须是有效 Unicode 字符串",
    },
    "metadata": {"en": '"metadata" must be a JSON object', "zh": "“metadata”必须是 JSON 对象"},
}


@dataclass(frozen=True)
class Refusal:
    """A refused request: its HTTP status, the messages.yml key, and the sentence's values."""

    status: int
    error: str
    values: Mapping[str, Any] = field(default_factory=dict)
    prompts_dir: Path | None = None

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After`` on a 429."""
        return {"Retry-After": str(self.values["seconds"])} if "seconds" in self.values else {}

    def body(self, language: str) -> dict[str, str]:
        """``{"error": key, "message": sentence}`` in ``language``."""
        return refusal_body(self.error, language, prompts_dir=self.prompts_dir, **self._values(language))

    def sentence(self, language: str) -> str:
        """The plain sentence alone, in ``language``."""
        return refusal(self.error, language, prompts_dir=self.prompts_dir, **self._values(language))

    def _values(self, language: str) -> dict[str, Any]:
        values = dict(self.values)
        if "reason" in values:
            reasons = REASONS[values["reason"]]
            values["reason"] = reasons.get(language, reasons["en"])
        return values


class ChannelLimits:
    """The limits of one process's channels, with its two rate limiters."""

    def __init__(
        self,
        *,
        max_body_kb: float,
        max_message_chars: int,
        conversation_per_minute: float,
        client_per_minute: float,
        prompts_dir: Path | None = None,
    ) -> None:
        self.max_body_kb, self.max_message_chars, self.prompts_dir = max_body_kb, max_message_chars, prompts_dir
        self.max_body_bytes = int(max_body_kb * 1024)
        self.conversations = RateLimiter(conversation_per_minute)
        self.clients = RateLimiter(client_per_minute)

    def too_large(self) -> Refusal:
        """A body over ``max_body_kb`` (413)."""
        return self._refusal(413, "request_too_large", limit=f"{self.max_body_kb:g} KB")

    def bad_request(self, reason: str) -> Refusal:
        """A malformed message (400); ``reason`` is a key of :data:`REASONS`."""
        return self._refusal(400, "bad_request", reason=reason)

    def client(self, address: str) -> Refusal | None:
        """Takes a token of the client's budget; a 429 when it has none."""
        return self._rate(self.clients, f"client:{address}")

    def conversation(self, sender: str) -> Refusal | None:
        """Takes a token of the conversation's budget; a 429 when it has none."""
        return self._rate(self.conversations, sender)

    def sender(self, sender: object, *, reason: str = "sender") -> Refusal | None:
        """A conversation id that is not a non-empty string of at most :data:`MAX_SENDER_CHARS`."""
        return None if valid_conversation_id(sender) else self.bad_request(reason)

    def message(self, text: object) -> Refusal | None:
        """A message that is not a string (400) or is over ``max_message_chars`` (413)."""
        if not valid_text(text):
            return self.bad_request("message")
        if len(text) > self.max_message_chars:
            return self._refusal(413, "question_too_long", length=len(text), limit=self.max_message_chars)
        return None

    def metadata(self, metadata: object) -> Refusal | None:
        """Metadata that is neither absent nor a JSON object."""
        return None if metadata is None or isinstance(metadata, dict) else self.bad_request("metadata")

    def _rate(self, limiter: RateLimiter, key: str) -> Refusal | None:
        if limiter.allow(key):
            return None
        return self._refusal(429, "too_many_requests", seconds=max(1, limiter.retry_after(key)))

    def _refusal(self, status: int, error: str, **values: Any) -> Refusal:
        return Refusal(status, error, values, self.prompts_dir)


def valid_conversation_id(value: object) -> bool:
    """A non-empty string of at most :data:`MAX_SENDER_CHARS` characters."""
    return valid_text(value) and bool(value.strip()) and len(value) <= MAX_SENDER_CHARS


@lru_cache(maxsize=1)
def channel_limits() -> ChannelLimits:
    """This process's channel limits, from bot.yml (read once)."""
    settings = load_settings()
    serving = settings.serving
    return ChannelLimits(
        max_body_kb=serving.max_body_kb,
        max_message_chars=settings.generation.max_question_chars,
        conversation_per_minute=serving.conversation_per_minute,
        client_per_minute=serving.client_per_minute,
        prompts_dir=settings.generation.prompts_dir,
    )


def limit_request_bodies(app: Any, _loop: Any = None) -> None:
    """A ``before_server_start`` listener: lower Sanic's ``REQUEST_MAX_SIZE`` (100 MB) to
    ``serving.max_body_kb``, so that no route of ``rasa run`` reads a larger body at all, and
    close the connection after a response to a body left unread (:func:`close_if_body_unread`).

    Not the size when Rasa's HTTP API is on (``rasa run --enable-api``): its model upload and
    training routes take large bodies. Then only the channels' own checks hold (the REST webhook
    reads at most the limit; engine.io refuses larger socket.io payloads, after Sanic has read
    them)."""
    app.register_middleware(close_if_body_unread, "response")
    limit = channel_limits().max_body_bytes
    if any(route.path == "model/parse" for route in app.router.routes):
        logger.warning(
            "Rasa's HTTP API is enabled: request bodies of up to %d bytes are read (the channels refuse more than %d)",
            app.config.REQUEST_MAX_SIZE,
            limit,
        )
    elif app.config.REQUEST_MAX_SIZE > limit:
        app.config.REQUEST_MAX_SIZE = limit


def close_if_body_unread(request: Any, response: Any) -> None:
    """A response middleware: ``Connection: close`` on a response sent before a body that Sanic
    will not read to its end (over the size limit, or chunked). Sanic closes the connection
    after such a response anyway; said as keep-alive, a client would send its next request on
    it and be reset."""
    stream = request.stream
    if stream is None or not stream.request_body:
        return
    limit = min(stream.request_max_size, stream.protocol.request_max_size)
    if stream.request_body == "chunked" or stream.request_bytes > limit:
        stream.keep_alive = False
