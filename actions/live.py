"""The web widget's side of the action server: the live answer stream (server-sent events),
feedback on a turn, and the widget's static files.

- ``GET /knowledge/stream/<conversation id>``: ``text/event-stream`` of the conversation's
  turn events (``actions/streams.py``), one ``data: {json}`` line each, a comment every 15 s.
- ``POST /knowledge/feedback`` ``{"conversation_id", "turn_id", "rating": 1 | -1, "comment"?}``.
- ``POST /knowledge/prepare`` ``{"text"}``: the widget sends each message here as it sends it to
  Rasa, so the question is embedded while Rasa classifies it; when Rasa then calls the knowledge
  action, retrieval skips the encoder (about 20 ms sooner to the first token). A message Rasa
  routes elsewhere only costs an embedding. Sent as ``text/plain`` (no CORS preflight).
- ``GET /widget/<file>``: ``widget/`` at the project root (``widget.js`` embeds the chat).

Browsers on other sites may call these (the widget is embedded anywhere): they answer with
``Access-Control-Allow-Origin: *``; none of them reveals anything without the conversation id,
which is the widget's random session id. The widget POSTs its JSON as ``text/plain``, a simple
request that needs no CORS preflight (rasa-sdk's CORS layer answers ``OPTIONS`` itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from sanic import Sanic
from sanic.response import empty, json as json_response

from actions import runtime
from actions.streams import hub
from bot.config import find_project_root

__all__ = ["attach"]

logger = logging.getLogger(__name__)

_HEARTBEAT_SECONDS = 15.0
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST",
}


def attach(app: Sanic) -> None:
    """Register the stream, feedback and widget routes on ``app``."""
    app.add_route(_stream, "/knowledge/stream/<conversation_id>", methods=["GET"], unquote=True)
    app.add_route(_feedback, "/knowledge/feedback", methods=["POST"])
    app.add_route(_prepare, "/knowledge/prepare", methods=["POST"])
    widget = widget_dir()
    if widget.is_dir():
        app.static("/widget", str(widget), name="knowledge_widget")


async def _stream(request, conversation_id: str):
    events = hub.listen(conversation_id).__aiter__()
    # Listening before the browser hears "open"; the pending read is never cancelled by a
    # heartbeat (asyncio.wait_for would cancel it, which ends the generator and the stream).
    pending = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0)
    try:
        response = await request.respond(
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_CORS},
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


async def _feedback(request):
    try:
        body = json.loads(request.body or b"{}")
        rating = int(body["rating"])
        conversation_id, turn_id = str(body["conversation_id"]), str(body["turn_id"])
        comment = body.get("comment")
        if rating not in (1, -1) or not conversation_id or not turn_id:
            raise ValueError("rating must be 1 or -1, with a conversation_id and a turn_id")
    except (ValueError, KeyError, TypeError) as exc:
        return json_response({"error": f"bad feedback: {exc}"}, status=400, headers=_CORS)
    try:
        engine = await runtime.get_engine()
        feedback_id = await asyncio.to_thread(engine.record_feedback, conversation_id, turn_id, rating, comment)
    except Exception as exc:  # the page hears it plainly; the cause goes to the log
        logger.error("feedback not stored: %s", exc)
        return json_response({"error": "feedback could not be stored"}, status=503, headers=_CORS)
    return json_response({"stored": feedback_id}, headers=_CORS)


async def _prepare(request):
    try:
        text = json.loads(request.body or b"{}")["text"].strip()
        if not text:
            raise ValueError("empty text")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return json_response({"error": f"bad request: {exc}"}, status=400, headers=_CORS)
    try:
        engine = await runtime.get_engine()
    except Exception:
        return json_response({"error": "the knowledge engine is not available"}, status=503, headers=_CORS)
    limit = engine.settings.generation.max_question_chars
    if len(text) > limit:
        return json_response({"error": f"longer than {limit} characters"}, status=413, headers=_CORS)
    await asyncio.to_thread(engine.prepare, text)
    return empty(headers=_CORS)


def widget_dir() -> Path:
    """Where the widget's static files are (``widget/`` at the project root)."""
    return find_project_root() / "widget"
