"""``action_answer_from_knowledge``: rewrite -> retrieve -> decide -> generate, then reply."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import get_engine
from actions.slack_sink import slack_sinks
from actions.streams import AnswerSink, HubSink
from actions.tracing import trace_canned, turn_context
from bot.errors import BotError
from bot.generate import Answer, TextDelta
from bot.guard import GuardVerdict
from bot.lang import detect_language
from bot.llm.prompts import Prompts
from bot.store.base import OrMissing

__all__ = [
    "ActionAnswerFromKnowledge", "product_filters", "sensitive_guess", "nlu_verdict", "response_text", "SENSITIVE_RESPONSES",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: The ``product`` slot value that means "every product" (no filter).
ALL_PRODUCTS = "all"

#: Sensitive intents (data/rules.yml) and their canned responses. A message NLU was unsure
#: about (nlu_fallback) whose best guess is one of these gets the canned response, not the LLM;
#: so does a guessed ``prompt_attack`` (the guard's response).
SENSITIVE_RESPONSES = {
    "refund_request": "utter_refund_request",
    "account_security": "utter_account_security",
    "billing_dispute": "utter_billing_dispute",
    "legal_compliance": "utter_legal_compliance",
    "prompt_attack": "utter_prompt_attack",
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
        # The guards before retrieval and any LLM call: an attack, then a sensitive topic by its
        # words, then NLU's own unsure guess of a sensitive intent, then the moderation model.
        verdict = engine.guard.screen_text(question) or nlu_verdict(tracker.latest_message)
        if verdict is None:
            verdict = await engine.guard.screen(question)
        if verdict is not None:  # history and slots stay as they are; no form opens
            dispatcher.utter_message(response=verdict.response)
            await trace_canned(tracker, verdict.response, guard=verdict)
            return []
        history = tracker.get_slot("kb_history") or []
        context = turn_context(tracker)
        sinks = answer_sinks(tracker)
        delivered = any(sink.delivers_final for sink in sinks)  # e.g. Slack updates its placeholder
        try:
            answer = await _stream_answer(
                engine,
                sinks,
                question,
                history=history,
                scope=product_filters(tracker.get_slot("product")),
                context=context,
                screen_topics=True,
            )
        except Exception as exc:
            logger.error("knowledge turn failed: %s", exc, exc_info=not isinstance(exc, BotError))
            text = messages.message("engine_unavailable", language)
            await _each(sinks, "failed", text)
            if not delivered:
                dispatcher.utter_message(text=text)
            return []
        if answer.guard is not None and answer.guard.response:  # the retrieved items' topic is sensitive
            text = response_text(domain, answer.guard.response, language)
            await _each(sinks, "done", {**_structured(answer), "text": text})
            if not delivered:
                dispatcher.utter_message(response=answer.guard.response)
            return [SlotSet("kb_turn_id", answer.turn_id)]
        text = "\n\n".join(part for part in (answer.text, engine.generator.sources_block(answer)) if part)
        structured = _structured(answer)
        await _each(sinks, "done", {**structured, "text": text})
        if not delivered:
            shell = tracker.get_latest_input_channel() == "cmdline"  # rasa shell would print the JSON
            dispatcher.utter_message(text=text, json_message=None if shell else structured)
        turns = engine.settings.generation.history_turns
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
        return [SlotSet("kb_history", history[-2 * turns :]), SlotSet("kb_turn_id", answer.turn_id)]


def nlu_verdict(latest_message: dict) -> GuardVerdict | None:
    """NLU's best real intent when it is a sensitive one (the turn fell back as unsure), as a verdict."""
    intent = sensitive_guess(latest_message)
    if intent is None:
        return None
    decision = "attack" if intent == "prompt_attack" else "sensitive"
    return GuardVerdict(decision, "nlu", intent, "NLU's best guess below the fallback threshold", SENSITIVE_RESPONSES[intent])


def response_text(domain: dict, name: str, language: str) -> str:
    """The text of the domain response ``name`` for ``language`` (its variant conditioned on the
    ``language`` slot, else the unconditioned one), for sinks that show the final text themselves."""
    variants = (domain.get("responses") or {}).get(name) or []
    fallback = ""
    for variant in variants:
        conditions = variant.get("condition") or []
        if not conditions:
            fallback = fallback or variant.get("text", "")
        elif all(c.get("name") == "language" and c.get("value") == language for c in conditions):
            return variant.get("text", "")
    return fallback


def answer_sinks(tracker: Tracker) -> list[AnswerSink]:
    """Where the turn's text goes while it is written: the stream hub (web widget), plus the
    channel's own sink, if it has one."""
    return [HubSink(tracker.sender_id), *slack_sinks(tracker)]


async def _stream_answer(engine, sinks: list[AnswerSink], question: str, *, context, **options) -> Answer:
    """The whole answer, each piece of text handed to ``sinks`` as the LLM writes it."""
    await _each(sinks, "start", context.turn_id)
    answer = None
    async for event in engine.answer_stream(question, context=context, **options):
        if isinstance(event, TextDelta):
            await _each(sinks, "delta", event.text)
        else:
            answer = event.answer
    return answer


async def _each(sinks: list[AnswerSink], method: str, *args) -> None:
    """Call ``method`` on every sink; a failing sink is logged and never fails the turn."""
    for sink in sinks:
        try:
            await getattr(sink, method)(*args)
        except Exception:
            logger.exception("answer sink %s.%s failed", type(sink).__name__, method)


#: The parts of an answer a channel needs to render it (the rest, such as the prompt, stays in traces).
CHANNEL_FIELDS = (
    "turn_id", "text", "level", "language", "citations", "sources", "declined", "notice", "query", "widened",
)  # fmt: skip


def _structured(answer: Answer) -> dict[str, Any]:
    """What a channel needs to render the answer: text, level, citations, sources, its turn id."""
    full = answer.as_dict()
    return {"type": "knowledge_answer", **{name: full[name] for name in CHANNEL_FIELDS}}
