"""The action server's doors: who may call it, how large and how often, and how it refuses.

- It listens on ``serving.action_host`` (default 127.0.0.1): rasa-sdk 3.6's ``run`` reads the
  host from ``SANIC_HOST`` after the plugins are attached, so we set it there unless it is set.
- ``POST /webhook`` (Rasa's calls) needs ``?token=<serving.action_token, else BOT_ACTION_TOKEN>``
  (endpoints.yml ``action_endpoint.token``), checked before the body is read; then the call's shape is
  checked (``actions.action_call``) before rasa-sdk runs it. It may carry up to
  ``serving.max_tracker_mb`` (sanic's ``REQUEST_MAX_SIZE``): a long conversation's tracker.
- Every other route takes bodies up to ``serving.max_body_kb``, refused by their declared
  length before they are read (413); the widget's routes are rate-limited per client address
  (``serving.client_per_minute``) and per conversation (``serving.conversation_per_minute``).
- Every refusal is :func:`bot.doors.refusal_body` in the sender's language (429 with
  ``Retry-After``); sanic's own errors (404, 405, ...) get the same body, and an unexpected
  exception a 500 that says nothing of the request (rasa-sdk's handler echoed its body).

Routes raise :class:`Refused`; ``app.ctx.doors`` (:class:`Doors`) holds the keys and limiters.
"""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sanic import Sanic
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse, json as json_response

from actions.action_call import TooLarge, parse_action_call
from actions.keys import ConversationKeys
from bot.config import ServingSettings, Settings
from bot.doors import refusal_body, sender_language
from bot.ratelimit import RateLimiter

__all__ = ["REASONS", "Doors", "Refused", "attach", "doors_of"]

logger = logging.getLogger(__name__)

WEBHOOK = "/webhook"
#: The widget's routes: rate-limited per client address.
RATED_PREFIXES = ("/knowledge/session", "/knowledge/prepare", "/knowledge/feedback", "/knowledge/stream/")
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST"}

#: Why a request is malformed, for ``bad_request``'s ``{reason}``, by language.
REASONS = {
    "malformed": {"en": "the request is malformed", "zh": "请求格式不正确"},
    "not_json": {"en": "the body is not valid JSON", "zh": "请求内容不是有效的 JSON"},
    "not_object": {"en": "the body must be a JSON object", "zh": "请求内容必须是 JSON 对象"},
    "compressed": {"en": "the body is not valid deflate data", "zh": "请求内容不是有效的 deflate 压缩数据"},
    "next_action": {"en": '"next_action" must be an action name', "zh": "“next_action”必须是动作名称"},
    "version": {"en": '"version" must be a string', "zh": "“version”必须是字符串"},
    "tracker": {"en": '"tracker" must be a JSON object', "zh": "“tracker”必须是 JSON 对象"},
    "sender_id": {"en": '"sender_id" must be a non-empty string', "zh": "“sender_id”必须是非空字符串"},
    "latest_message": {"en": '"latest_message" must be a JSON object', "zh": "“latest_message”必须是 JSON 对象"},
    "text": {"en": "the text must be a string of valid Unicode", "zh": "文本必须是有效的 Unicode 字符串"},
    "empty_text": {"en": "the text is empty", "zh": "文本是空的"},
    "intent": {"en": '"intent" must be a JSON object', "zh": "“intent”必须是 JSON 对象"},
    "intent_ranking": {"en": '"intent_ranking" must be a list of objects', "zh": "“intent_ranking”必须是对象列表"},
    "slots": {"en": '"slots" must be a JSON object', "zh": "“slots”必须是 JSON 对象"},
    "events": {"en": '"events" must be a list of objects', "zh": "“events”必须是对象列表"},
    "domain": {"en": '"domain" must be a JSON object', "zh": "“domain”必须是 JSON 对象"},
    "conversation_id": {"en": '"conversation_id" must be a conversation id', "zh": "“conversation_id”必须是对话 ID"},
    "turn_id": {"en": '"turn_id" must be a turn id', "zh": "“turn_id”必须是回答的 ID"},
    "rating": {"en": '"rating" must be 1 or -1', "zh": "“rating”必须是 1 或 -1"},
    "comment": {"en": '"comment" must be a string of valid Unicode', "zh": "“comment”必须是有效的 Unicode 字符串"},
}

#: The messages.yml key of a sanic error's status (others: bad_request, or server_error for 5xx).
_STATUS_ERRORS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


class Refused(SanicException):
    """A request refused at a door: its status, the messages.yml key, the sentence's values
    (``reason``: a key of :data:`REASONS`) and extra headers."""

    def __init__(self, status: int, error: str, *, headers: dict[str, str] | None = None, **values: Any):
        super().__init__(error, status_code=status, quiet=True)
        self.error, self.values, self.headers = error, values, dict(headers or {})


@dataclass
class Doors:
    """The action server's settings and state at its doors."""

    serving: ServingSettings
    token: str | None  # serving.action_token (None: /webhook is open)
    prompts_dir: Path | None
    keys: ConversationKeys
    clients: RateLimiter
    conversations: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> "Doors":
        serving = settings.serving
        return cls(
            serving=serving,
            token=serving.action_token,
            prompts_dir=settings.generation.prompts_dir,
            keys=ConversationKeys.from_token(serving.action_token),
            clients=RateLimiter(serving.client_per_minute),
            conversations=RateLimiter(serving.conversation_per_minute),
        )

    def body_limit(self, path: str) -> tuple[int, str]:
        """The largest body ``path`` takes, in bytes and as the refusal says it."""
        if path == WEBHOOK:
            return int(self.serving.max_tracker_mb * 1024 * 1024), f"{self.serving.max_tracker_mb:g} MB"
        return int(self.serving.max_body_kb * 1024), f"{self.serving.max_body_kb:g} KB"

    def check_rate(self, limiter: RateLimiter, key: str) -> None:
        """Raise 429 when ``key`` has no request left in ``limiter``'s minute."""
        if not limiter.allow(key):
            seconds = max(1, limiter.retry_after(key))
            raise Refused(429, "too_many_requests", headers={"Retry-After": str(seconds)}, seconds=seconds)

    def check_conversation(self, conversation_id: object, key: object) -> str:
        """The conversation id, once ``key`` proves it (else 403) and its rate allows (else 429)."""
        if not self.keys.verify(conversation_id, key):
            raise Refused(403, "forbidden")
        self.check_rate(self.conversations, conversation_id)
        return conversation_id

    def response(self, request: Request, refused: Refused) -> HTTPResponse:
        """The refusal's JSON body in the sender's language, with its headers."""
        language = sender_language(None, request.headers)
        values = dict(refused.values)
        if "reason" in values:
            values["reason"] = REASONS[values["reason"]][language]
        headers = {**(CORS if request.path.startswith("/knowledge/") else {}), **refused.headers}
        body = refusal_body(refused.error, language, prompts_dir=self.prompts_dir, **values)
        return json_response(body, status=refused.status_code, headers=headers)


def doors_of(request: Request) -> Doors:
    """The doors of the app serving ``request``."""
    return request.app.ctx.doors


def attach(app: Sanic, settings: Settings) -> None:
    """Bind to ``serving.action_host`` and guard every route of ``app`` (see the module's doc)."""
    doors = app.ctx.doors = Doors.from_settings(settings)
    host = os.environ.setdefault("SANIC_HOST", settings.serving.action_host)
    app.config.REQUEST_MAX_SIZE = doors.body_limit(WEBHOOK)[0]
    if doors.token:
        logger.info("action server on %s; /webhook needs the action token", host)
    else:
        logger.warning(
            "action server on %s WITHOUT a token: anyone who reaches it can run actions and forge turns. "
            "Set BOT_ACTION_TOKEN for Rasa and the action server (endpoints.yml action_endpoint.token, "
            "bot.yml serving.action_token); bot serve and bot chat make one for you",
            host,
        )
    # Once the route is known, before sanic reads the body (request middleware would run too
    # late, and again, with no body, on the way to an error handler).
    app.add_signal(_at_the_door, "http.routing.after")
    app.exception(Refused)(_refused)
    app.exception(SanicException)(_sanic_error)
    app.exception(Exception)(_server_error)


async def _at_the_door(request: Request, **_: Any) -> None:
    """The token (``/webhook``), the client's rate (the widget's routes) and the declared body
    size, before the body is read; then the shape of Rasa's call, before rasa-sdk runs it."""
    doors, path = doors_of(request), request.path
    if path == WEBHOOK:
        _check_token(doors.token, request)
    if path.startswith(RATED_PREFIXES):
        doors.check_rate(doors.clients, request.ip or "unknown")
    limit, said = doors.body_limit(path)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "request_too_large", limit=said)
    if request.stream is not None:
        request.stream.request_max_size = limit  # a chunked body is cut off at the limit (413)
    if path == WEBHOOK and request.method == "POST":
        await request.receive_body()  # sanic's own read, which it then skips
        _check_action_call(request, limit, said)


def _check_token(token: str | None, request: Request) -> None:
    if not token:
        return
    given = request.args.get("token") or ""
    if not hmac.compare_digest(token.encode("utf-8"), given.encode("utf-8", "surrogatepass")):
        raise Refused(401, "unauthorized", headers={"WWW-Authenticate": 'Token realm="action server"'})


def _check_action_call(request: Request, max_bytes: int, said: str) -> None:
    """Rasa's call to ``/webhook`` is well-formed (else 400), also once inflated (else 413)."""
    encoding = request.headers.get("content-encoding")
    try:
        call, problem = parse_action_call(request.body or b"", encoding=encoding, max_bytes=max_bytes)
    except TooLarge:
        raise Refused(413, "request_too_large", limit=said) from None
    if problem:
        raise Refused(400, "bad_request", reason=problem)
    if encoding != "deflate":
        request.parsed_json = call  # rasa-sdk reads request.json: parsed once


def _refused(request: Request, exception: Refused) -> HTTPResponse:
    return doors_of(request).response(request, exception)


def _sanic_error(request: Request, exception: SanicException) -> HTTPResponse:
    """Sanic's own errors (no route, wrong method, body too large, bad head) as refusals."""
    status = getattr(exception, "status_code", 500) or 500
    doors = doors_of(request)
    error = _STATUS_ERRORS.get(status) or ("server_error" if status >= 500 else "bad_request")
    values: dict[str, Any] = {}
    if error == "bad_request":
        values["reason"] = "malformed"
    elif error == "request_too_large":
        values["limit"] = doors.body_limit(request.path)[1]
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.path, exception)
    headers = dict(getattr(exception, "headers", None) or {})
    return doors.response(request, Refused(status, error, headers=headers, **values))


def _server_error(request: Request, exception: Exception) -> HTTPResponse:
    """Any other exception: logged with its traceback; the answer says nothing of the request."""
    logger.error("%s %s failed", request.method, request.path, exc_info=exception)
    return doors_of(request).response(request, Refused(500, "server_error"))
