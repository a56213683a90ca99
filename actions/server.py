"""What the knowledge engine adds to the action server's sanic app: its doors (address, token,
limits, refusals: ``actions/doors.py``), the engine built when the server starts (not on the
first question), ``GET /knowledge/ready`` (200 when ready, else 503 and why), the review page
and the widget's routes."""

from __future__ import annotations

import logging

from sanic import Sanic
from sanic.response import json

from actions import doors, live, review, runtime
from bot.config import load_settings

__all__ = ["attach"]

logger = logging.getLogger(__name__)


def attach(app: Sanic) -> None:
    """Guard ``app``'s doors, register the start-up listener and the routes. Settings that
    cannot be read stop the server here: it never runs unguarded."""
    doors.attach(app, load_settings())
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
