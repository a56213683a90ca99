"""Per-message language detection, clearing the history, and feedback on answers."""

from __future__ import annotations

import asyncio
import logging
import re

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import get_engine
from bot.errors import BotError
from bot.lang import detect_language, is_cjk

__all__ = ["ActionDetectLanguage", "ActionClearHistory", "ActionRecordFeedback"]

logger = logging.getLogger(__name__)

_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


class ActionDetectLanguage(Action):
    """Fills the ``language`` slot from each user message (its custom slot mapping), so canned
    responses come in the user's language."""

    def name(self) -> str:
        return "action_detect_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        text = tracker.latest_message.get("text") or ""
        current = tracker.get_slot("language")
        if text.startswith("/") or (current and not _tells_language(text)):
            return []
        language = detect_language(text)
        return [] if language == current else [SlotSet("language", language)]


def _tells_language(text: str) -> bool:
    """Whether a message says which language the user writes: Chinese characters, or two English
    words. An order number, "ok" or an emoji keeps the language the conversation has."""
    return any(is_cjk(ch) for ch in text) or len(_LATIN_WORD.findall(text)) >= 2


class ActionClearHistory(Action):
    """Forgets the knowledge turns (the rewriter's history) and the product scope."""

    def name(self) -> str:
        return "action_clear_history"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        dispatcher.utter_message(response="utter_history_cleared")
        return [SlotSet("kb_history", None), SlotSet("kb_turn_id", None), SlotSet("product", None)]


class ActionRecordFeedback(Action):
    """Stores a thumbs up or down on the last answered turn (``kb_turn_id``), then thanks the user."""

    def name(self) -> str:
        return "action_record_feedback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        positive = tracker.latest_message.get("intent", {}).get("name") == "feedback_positive"
        comment = tracker.latest_message.get("text")
        try:
            engine = await get_engine()
            await asyncio.to_thread(
                engine.record_feedback, tracker.sender_id, tracker.get_slot("kb_turn_id"), 1 if positive else -1, comment
            )
        except Exception as exc:  # the thanks still goes out; the rating is logged instead
            logger.error(
                "feedback not stored (%s): %s %s", exc, tracker.sender_id, positive, exc_info=not isinstance(exc, BotError)
            )
        dispatcher.utter_message(response="utter_feedback_positive" if positive else "utter_feedback_negative")
        return []
