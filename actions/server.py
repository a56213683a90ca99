"""What the knowledge engine adds to the action server's sanic app: it builds the engine
when the server starts (not on the first question), and ``GET /knowledge/ready`` says whether
it is ready (200) or why not (503)."""

from __future__ import annotations

import logging

from sanic import Sanic
from sanic.response import json

from actions import live, review, runtime

__all__ = ["attach"]

logger = logging.getLogger(__name__)


def attach(app: Sanic) -> None:
    """Register the start-up listener and the routes on ``app``."""
    app.register_listener(_start_warm_up, "after_server_start")
    app.add_route(_ready, "/knowledge/ready", methods=["GET"])
    review.attach(app)  # the bad-case review page (/review)
    live.attach(app)  # the web widget: live answer stream, feedback, static files (/widget)


async def _start_warm_up(app: Sanic, _loop) -> None:
    app.add_task(_warm_up())


async def _warm_up() -> None:
    try:
        await runtime.get_engine()
    except Exception as exc:  # the server keeps running; /knowledge/ready reports the cause
        logger.error("the knowledge engine could not be built: %s", exc)


async def _ready(_request):
    if runtime.ready():
        return json({"ready": True})
    return json({"ready": False, "error": runtime.last_error()}, status=503)
