"""``action_answer_from_knowledge``: rewrite -> retrieve -> decide -> generate, then reply."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import get_engine
from actions.tracing import trace_canned, turn_context
from bot.errors import BotError
from bot.generate import Answer
from bot.lang import detect_language
from bot.llm.prompts import Prompts
from bot.store.base import OrMissing

__all__ = ["ActionAnswerFromKnowledge", "product_filters", "sensitive_guess", "SENSITIVE_RESPONSES"]

logger = logging.getLogger(__name__)

#: The ``product`` slot value that means "every product" (no filter).
ALL_PRODUCTS = "all"

#: Sensitive intents (data/rules.yml) and their canned responses. A message NLU was unsure
#: about (nlu_fallback) whose best guess is one of these gets the canned response, not the LLM.
SENSITIVE_RESPONSES = {
    "refund_request": "utter_refund_request",
    "account_security": "utter_account_security",
    "billing_dispute": "utter_billing_dispute",
    "legal_compliance": "utter_legal_compliance",
}


def sensitive_guess(latest_message: dict) -> str | None:
    """The sensitive intent NLU ranked first among the real intents (ignoring nlu_fallback), if any."""
    ranking = [i for i in latest_message.get("intent_ranking") or [] if i.get("name") != "nlu_fallback"]
    best = ranking[0]["name"] if ranking else None
    return best if best in SENSITIVE_RESPONSES else None


def product_filters(product: str | None) -> dict[str, OrMissing]:
    """The retrieval scope for the ``product`` slot: items of that product and items that name
    no product (general documents); none for no product or ``all``. The engine widens a scope
    that cannot answer the question (e.g. a plan price asked while the pen is in scope)."""
    if not product or product == ALL_PRODUCTS:
        return {}
    return {"product": OrMissing(product)}


class ActionAnswerFromKnowledge(Action):
    """Answers the latest user message from the knowledge, with citations, or refuses."""

    def name(self) -> str:
        return "action_answer_from_knowledge"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        question = (tracker.latest_message.get("text") or "").strip()
        language = tracker.get_slot("language") or detect_language(question)
        sensitive = sensitive_guess(tracker.latest_message)
        if sensitive:
            dispatcher.utter_message(response=SENSITIVE_RESPONSES[sensitive])
            await trace_canned(tracker, SENSITIVE_RESPONSES[sensitive])
            return []
        try:
            engine = await get_engine()
        except Exception as exc:  # the user hears it plainly; the cause goes to the log
            logger.error("knowledge engine unavailable: %s", exc, exc_info=not isinstance(exc, BotError))
            dispatcher.utter_message(text=Prompts().message("engine_unavailable", language))
            return []
        messages = engine.prompts
        limit = engine.settings.generation.max_question_chars
        if len(question) > limit:
            text = messages.message("question_too_long", language).format(length=len(question), limit=limit)
            dispatcher.utter_message(text=text)
            return []
        history = tracker.get_slot("kb_history") or []
        try:
            answer = await engine.answer_async(
                question,
                history=history,
                scope=product_filters(tracker.get_slot("product")),
                context=turn_context(tracker),
            )
        except Exception as exc:
            logger.error("knowledge turn failed: %s", exc, exc_info=not isinstance(exc, BotError))
            dispatcher.utter_message(text=messages.message("engine_unavailable", language))
            return []
        turn_id = answer.turn_id
        text = "\n\n".join(part for part in (answer.text, engine.generator.sources_block(answer)) if part)
        if tracker.get_latest_input_channel() == "cmdline":  # rasa shell would print the JSON
            dispatcher.utter_message(text=text)
        else:
            dispatcher.utter_message(text=text, json_message=_structured(answer, turn_id))
        turns = engine.settings.generation.history_turns
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
        return [SlotSet("kb_history", history[-2 * turns :]), SlotSet("kb_turn_id", turn_id)]


#: The parts of an answer a channel needs to render it (the rest, such as the prompt, stays in traces).
CHANNEL_FIELDS = ("text", "level", "language", "citations", "sources", "declined", "notice", "query", "widened")


def _structured(answer: Answer, turn_id: str) -> dict[str, Any]:
    """What a channel needs to render the answer: text, level, citations, sources."""
    full = answer.as_dict()
    return {"type": "knowledge_answer", "turn_id": turn_id, **{name: full[name] for name in CHANNEL_FIELDS}}
