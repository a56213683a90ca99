"""What a turn's trace needs from Rasa, and ``action_trace_canned``: the light trace of a turn
that a sensitive intent's rule answered with a canned response (the LLM never sees those)."""

from __future__ import annotations

import logging

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import get_engine
from bot.errors import BotError
from bot.traces import TurnContext, canned_row

__all__ = ["turn_context", "trace_canned", "last_response", "ActionTraceCanned"]

logger = logging.getLogger(__name__)


def turn_context(tracker: Tracker) -> TurnContext:
    """Who asked, on which channel, and what NLU made of the latest message."""
    intent = tracker.latest_message.get("intent") or {}
    return TurnContext(
        conversation_id=tracker.sender_id,
        message_id=tracker.latest_message.get("message_id"),
        channel=tracker.get_latest_input_channel(),
        intent=intent.get("name"),
        intent_confidence=intent.get("confidence"),
    )


async def trace_canned(tracker: Tracker, response: str) -> None:
    """Trace a turn answered by the canned ``response``; a failure is logged, never raised."""
    try:
        engine = await get_engine()
        context = turn_context(tracker)
        language = tracker.get_slot("language")
        question = tracker.latest_message.get("text")
        engine.trace(lambda: canned_row(context, response=response, language=language, question=question))
    except Exception as exc:
        logger.error("canned turn not traced: %s", exc, exc_info=not isinstance(exc, BotError))


def last_response(tracker: Tracker) -> str | None:
    """The name of the response the bot uttered last in this turn (``utter_*``), if any."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return None
        if event.get("event") == "bot":
            return (event.get("metadata") or {}).get("utter_action")
    return None


class ActionTraceCanned(Action):
    """Runs after a sensitive intent's canned response (data/rules.yml) and traces that turn."""

    def name(self) -> str:
        return "action_trace_canned"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        await trace_canned(tracker, last_response(tracker) or "unknown")
        return []
