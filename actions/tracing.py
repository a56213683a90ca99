"""What a turn's trace needs from Rasa, and ``action_trace_canned``: the light trace of a turn
that a sensitive intent's rule answered with a canned response (the LLM never sees those)."""

from __future__ import annotations

import logging

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import get_engine
from bot.errors import BotError
from bot.guard import GuardVerdict
from bot.traces import TurnContext, canned_row

__all__ = ["turn_context", "trace_canned", "last_response", "nlu_guard", "ActionTraceCanned"]

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


async def trace_canned(tracker: Tracker, response: str, guard: GuardVerdict | None = None) -> None:
    """Trace a turn answered by the canned ``response`` (``guard``: the verdict that chose it);
    a failure is logged, never raised."""
    try:
        engine = await get_engine()
        context = turn_context(tracker)
        language = tracker.get_slot("language")
        question = tracker.latest_message.get("text")
        engine.trace(lambda: canned_row(context, response=response, language=language, question=question, guard=guard))
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


#: Intents whose rules answer with a canned response, as guard decisions (the NLU layer).
NLU_GUARDS = {
    "prompt_attack": "attack",
    "refund_request": "sensitive",
    "account_security": "sensitive",
    "billing_dispute": "sensitive",
    "legal_compliance": "sensitive",
}


def nlu_guard(tracker: Tracker, response: str) -> GuardVerdict | None:
    """The NLU layer's verdict on the latest message, when its intent is an attack or sensitive."""
    intent = tracker.latest_message.get("intent") or {}
    decision = NLU_GUARDS.get(intent.get("name"))
    if decision is None:
        return None
    reason = f"intent {intent.get('name')} ({float(intent.get('confidence') or 0):.2f})"
    return GuardVerdict(decision, "nlu", intent["name"], reason, response)


class ActionTraceCanned(Action):
    """Runs after a sensitive intent's or an attack's canned response (data/rules.yml) and traces that turn."""

    def name(self) -> str:
        return "action_trace_canned"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        response = last_response(tracker) or "unknown"
        await trace_canned(tracker, response, guard=nlu_guard(tracker, response))
        return []
