"""Rasa's REST channel with doors: ``POST /webhooks/rest/webhook`` as before
(``{"sender": "u1", "message": "..."}``, ``?stream=true``), refusing what Rasa 3.6 let through.

In ``credentials.yml``:

    channels.rest.KnowledgeRestInput:

The channel keeps its name ``rest`` and its URLs. What it changes in Rasa's
:class:`~rasa.core.channels.rest.RestInput` (limits: :mod:`channels.limits`):

- **Sizes.** A body over ``serving.max_body_kb`` is refused with 413 before it is read (its
  Content-Length, then the bytes as they arrive); a message over
  ``generation.max_question_chars`` with 413 too. One 10 MB message had grown ``rasa run`` to
  23.8 GB.
- **Rates.** 429 with ``Retry-After`` beyond ``serving.client_per_minute`` requests from one
  address, or ``serving.conversation_per_minute`` messages from one sender.
- **Malformed requests** (not JSON, not an object, a missing or non-string ``sender`` or
  ``message``, ``metadata`` that is not an object) get 400 instead of a 500 or a silent empty
  reply.
- **The input channel is always ``rest``**: Rasa took it from the body, so a REST client could
  pass its message off as another channel's (for instance Slack's, whose answers the action
  server posts to the Slack channel named in the metadata).

Every refusal is ``{"error": key, "message": plain sentence}`` in the sender's language (the
message's, else Accept-Language), never the request echoed back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Dict, Optional, Text

import rasa.utils.endpoints
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.doors import sender_language
from channels.limits import ChannelLimits, Refusal, channel_limits, limit_request_bodies

__all__ = ["KnowledgeRestInput"]

logger = logging.getLogger(__name__)

#: A body that did not parse as JSON.
_NOT_JSON = object()


class KnowledgeRestInput(RestInput):
    """Rasa's REST channel (still ``rest``) with size, rate and shape checks."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"custom_webhook_{type(self).__name__}", __name__)
        webhook.listener("before_server_start")(limit_request_bodies)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"], stream=True)  # the body is read here, up to the limit
        async def receive(request: Request) -> HTTPResponse:
            limits = channel_limits()
            admitted = await _admit(request, limits)
            if isinstance(admitted, HTTPResponse):
                return admitted
            sender, text, metadata = admitted
            if rasa.utils.endpoints.bool_arg(request, "stream", default=False):
                return response.stream(
                    self.stream_response(on_new_message, text, sender, self.name(), metadata),
                    content_type="text/event-stream",
                )
            collector = CollectingOutputChannel()
            try:
                await on_new_message(UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata))
            except asyncio.CancelledError:
                logger.error("REST message of %s timed out", sender)
            except Exception:  # as Rasa's channel: the replies so far, the cause in the log
                logger.exception("REST message of %s failed", sender)
            return response.json(collector.messages)

        return webhook


async def _admit(request: Request, limits: ChannelLimits) -> HTTPResponse | tuple[str, str, Optional[Dict[Text, Any]]]:
    """The request's sender, message and metadata, or the response that refuses it."""
    over_rate = limits.client(request.ip)  # every request counts; answered in the message's language
    body = await _read_body(request, limits.max_body_bytes)
    if body is None:
        request.stream.request_max_size = limits.max_body_bytes  # Sanic reads no more of it ...
        request.stream.keep_alive = False  # ... and closes the connection, as the response says
        return _refuse(request, limits.too_large())
    payload = _parse(body)
    text = payload.get("message") if isinstance(payload, dict) else None
    refused = over_rate or _malformed(payload, limits) or limits.conversation(payload["sender"])
    if refused:
        return _refuse(request, refused, text)
    return payload["sender"], text, payload.get("metadata")


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # broken JSON, bytes that are not UTF-8, nesting too deep
        return _NOT_JSON


def _malformed(payload: Any, limits: ChannelLimits) -> Refusal | None:
    """Why ``payload`` is not a REST message (400, or 413 for a message too long), if it is not."""
    if payload is _NOT_JSON:
        return limits.bad_request("not_json")
    if not isinstance(payload, dict):
        return limits.bad_request("not_object")
    return (
        limits.message(payload.get("message"))
        or limits.sender(payload.get("sender"))
        or limits.metadata(payload.get("metadata"))
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (declared or as read)."""
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    while True:
        chunk = await request.stream.read()
        if chunk is None:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            return None


def _refuse(request: Request, refused: Refusal, text: object = None) -> HTTPResponse:
    language = sender_language(text, request.headers)
    return response.json(refused.body(language), status=refused.status, headers=refused.headers)
