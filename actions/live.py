"""The web widget's side of the action server: its conversation, the live answer stream
(server-sent events), feedback on a turn, and the widget's static files.

- ``POST /knowledge/session`` (body empty, or the ``{"conversation_id", "key"}`` the page kept):
  ``{"conversation_id", "key"}``, the same pair when the key is still valid, else a fresh
  random conversation id and its key (``actions/keys.py``). The widget uses that id as its
  Rasa conversation id and keeps both in the tab's sessionStorage.
- ``GET /knowledge/stream/<conversation id>?key=...``: ``text/event-stream`` of the
  conversation's turn events (``actions/streams.py``), one ``data: {json}`` line each, a
  comment every 15 s. Without the conversation's key: 403.
- ``POST /knowledge/feedback`` ``{"conversation_id", "key", "turn_id", "rating": 1 | -1,
  "comment"?}``: stored only when the key proves the conversation (else 403) and the turn is
  one of its turns (else 404); the comment is cut to ``serving.max_comment_chars``.
- ``POST /knowledge/prepare`` ``{"text"}``: the widget sends each message here as it sends it to
  Rasa, so the question is embedded while Rasa classifies it; when Rasa then calls the knowledge
  action, retrieval skips the encoder (about 20 ms sooner to the first token). A message Rasa
  routes elsewhere only costs an embedding. Sent as ``text/plain`` (no CORS preflight).
- ``GET /widget/<file>``: the files under ``widget/`` at the project root (``widget.js`` embeds
  the chat); anything else, a path leading out of it included, is a 404.

Browsers on other sites may call these (the widget is embedded anywhere): they answer with
``Access-Control-Allow-Origin: *``. The widget POSTs its JSON as ``text/plain``, a simple
request that needs no CORS preflight (rasa-sdk's CORS layer answers ``OPTIONS`` itself).
Sizes, rates and refusals are the doors' (``actions/doors.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any

from sanic import Sanic
from sanic.request import Request
from sanic.response import empty, file, json as json_response

from actions import runtime
from actions.doors import CORS, Refused, doors_of
from actions.streams import hub
from bot.config import find_project_root
from bot.doors import valid_text
from bot.errors import UnknownTurnError

__all__ = ["attach", "widget_dir", "widget_file"]

logger = logging.getLogger(__name__)

_HEARTBEAT_SECONDS = 15.0
#: The longest turn id a feedback may name (turn ids are 32 hex digits).
_MAX_TURN_ID = 64


def attach(app: Sanic) -> None:
    """Register the session, stream, feedback, prepare and widget routes on ``app``."""
    app.add_route(_session, "/knowledge/session", methods=["POST"])
    app.add_route(_stream, "/knowledge/stream/<conversation_id>", methods=["GET"], unquote=True)
    app.add_route(_feedback, "/knowledge/feedback", methods=["POST"])
    app.add_route(_prepare, "/knowledge/prepare", methods=["POST"])
    app.add_route(_widget, "/widget/<name:path>", methods=["GET", "HEAD"], unquote=True, name="knowledge_widget")


async def _session(request: Request):
    keys = doors_of(request).keys
    if (request.body or b"").strip():
        kept = _json_object(request)
        if keys.verify(kept.get("conversation_id"), kept.get("key")):
            conversation_id = kept["conversation_id"]
            return json_response({"conversation_id": conversation_id, "key": keys.key(conversation_id)}, headers=CORS)
    conversation_id, key = keys.new()
    return json_response({"conversation_id": conversation_id, "key": key}, headers=CORS)


async def _stream(request: Request, conversation_id: str):
    doors_of(request).check_conversation(conversation_id, request.args.get("key"))
    events = hub.listen(conversation_id).__aiter__()
    # Listening before the browser hears "open"; the pending read is never cancelled by a
    # heartbeat (asyncio.wait_for would cancel it, which ends the generator and the stream).
    pending = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0)
    try:
        response = await request.respond(
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **CORS},
        )
        await response.send(": listening\n\n")
        while True:
            done, _ = await asyncio.wait({pending}, timeout=_HEARTBEAT_SECONDS)
            if not done:
                await response.send(": ping\n\n")
                continue
            event = pending.result()
            pending = asyncio.ensure_future(events.__anext__())
            await response.send(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await pending
        await events.aclose()


async def _feedback(request: Request):
    body = _json_object(request)
    turn_id, rating, comment = body.get("turn_id"), body.get("rating"), body.get("comment")
    if not isinstance(turn_id, str) or not 0 < len(turn_id) <= _MAX_TURN_ID or not turn_id.isprintable():
        raise Refused(400, "bad_request", reason="turn_id")
    if type(rating) is not int or rating not in (1, -1):
        raise Refused(400, "bad_request", reason="rating")
    if comment is not None and not valid_text(comment):
        raise Refused(400, "bad_request", reason="comment")
    conversation_id = doors_of(request).check_conversation(body.get("conversation_id"), body.get("key"))
    engine = await _engine()
    try:
        feedback_id = await asyncio.to_thread(engine.record_feedback, conversation_id, turn_id, rating, comment)
    except UnknownTurnError:
        raise Refused(404, "unknown_turn") from None
    except Exception as exc:  # the page hears it plainly; the cause goes to the log
        logger.error("feedback not stored: %s", exc)
        raise Refused(503, "engine_unavailable") from None
    return json_response({"stored": feedback_id}, headers=CORS)


async def _prepare(request: Request):
    text = _json_object(request).get("text")
    if not valid_text(text):
        raise Refused(400, "bad_request", reason="text")
    text = text.strip()
    if not text:
        raise Refused(400, "bad_request", reason="empty_text")
    engine = await _engine()
    limit = engine.settings.generation.max_question_chars
    if len(text) > limit:
        raise Refused(413, "question_too_long", length=len(text), limit=limit)
    await asyncio.to_thread(engine.prepare, text)
    return empty(headers=CORS)


async def _widget(request: Request, name: str):
    path = widget_file(name)
    if path is None:
        raise Refused(404, "not_found")
    mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return await file(path, mime_type=mime_type, headers={"X-Content-Type-Options": "nosniff"})


def widget_dir() -> Path:
    """Where the widget's static files are (``widget/`` at the project root)."""
    return find_project_root() / "widget"


def widget_file(name: str) -> Path | None:
    """The file ``name`` names under :func:`widget_dir` (None: no such file, or one outside it)."""
    try:
        base = widget_dir().resolve()
        path = (base / name).resolve()
        return path if path.is_relative_to(base) and path.is_file() else None
    except (OSError, ValueError):  # a name too long, a NUL byte
        return None


def _json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (an empty body is ``{}``); else 400."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        raise Refused(400, "bad_request", reason="not_json") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", reason="not_object")
    return body


async def _engine():
    try:
        return await runtime.get_engine()
    except Exception:  # the cause is in the log (runtime) and at /knowledge/ready
        raise Refused(503, "engine_unavailable") from None
