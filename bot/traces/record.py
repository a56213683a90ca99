"""A turn's trace as one row of the ``turns`` table, built from what the engine and Rasa know.

    context = TurnContext(conversation_id="user-1", channel="rest", intent="ask_knowledge")
    row = knowledge_row(context, answer, retrieval, filters)
    row = canned_row(context, response="utter_refund_request", language="en")
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from bot.store.base import OrMissing

if TYPE_CHECKING:
    from bot.generate import Answer
    from bot.guard import GuardVerdict
    from bot.retrieve import Retrieval

__all__ = ["TurnContext", "knowledge_row", "canned_row"]

#: Each route's own best hits kept in a trace (a route prefetches ``retrieval.candidates``).
ROUTE_HITS_KEPT = 20


@dataclass(frozen=True, kw_only=True)
class TurnContext:
    """Who asked, where, and what NLU made of it; ``turn_id`` names the trace (a fresh uuid by default)."""

    conversation_id: str = "cli"
    message_id: str | None = None
    channel: str | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def knowledge_row(
    context: TurnContext, answer: "Answer", retrieval: "Retrieval", filters: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every stage of a knowledge turn, as plain data for the ``turns`` table."""
    decision = answer.decision.as_dict()
    if retrieval.rerank_skipped:  # the decision fell back to the dense signal: say why
        decision["rerank_skipped"] = retrieval.rerank_skipped
    return {
        **_common(context, kind="knowledge", language=answer.language),
        "filters": {name: _plain(value) for name, value in (filters or {}).items()},
        "question": answer.question,
        "query": answer.query,
        "routes": {
            route: [
                {"id": scored.id, "score": scored.score, **(scored.payload or {})}
                for scored in ranked[:ROUTE_HITS_KEPT]
            ]
            for route, ranked in retrieval.routes.items()
        },
        "hits": [_hit(hit) for hit in retrieval.hits],
        "level": answer.level.value,
        "decision": decision,
        "score": decision.get("score"),
        "prompt": {"template": answer.prompt.template, "messages": answer.prompt.messages} if answer.prompt else None,
        "answer": answer.text,
        "citations": [citation.as_dict() for citation in answer.citations],
        "model": answer.model or None,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "timings": dict(answer.timings),
        "total_ms": round(answer.timings["total"] * 1000, 2) if "total" in answer.timings else None,
        "widened": answer.widened,
        "declined": answer.declined,
        "notice": answer.notice or None,
        "error": answer.error or None,
        **_guard(answer.guard),
    }


def canned_row(
    context: TurnContext,
    *,
    response: str,
    language: str | None,
    question: str | None = None,
    guard: "GuardVerdict | None" = None,
) -> dict:
    """The light record of a turn answered by a canned response (a sensitive intent, a guard)."""
    return {
        **_common(context, kind="canned", language=language),
        "response": response,
        "question": question,
        **_guard(guard),
    }


def _guard(verdict: "GuardVerdict | None") -> dict[str, Any]:
    """The guard's columns: its decision, and the whole verdict as the reason."""
    return {"guard": verdict.decision, "guard_reason": verdict.as_dict()} if verdict else {}


def _common(context: TurnContext, *, kind: str, language: str | None) -> dict[str, Any]:
    return {
        "turn_id": context.turn_id,
        "conversation_id": context.conversation_id,
        "message_id": context.message_id,
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "kind": kind,
        "channel": context.channel,
        "language": language,
        "intent": context.intent,
        "intent_confidence": context.intent_confidence,
    }


def _hit(hit) -> dict[str, Any]:
    """A fused hit as a trace keeps it: ids, scores, where it comes from (its text is in the store)."""
    kept = {key: value for key, value in hit.as_dict().items() if key not in ("text", "metadata")}
    return {**kept, "title": hit.heading}


def _plain(value: Any) -> Any:
    """A filter value as JSON data (``OrMissing(x)`` becomes ``{"or_missing": x}``)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, set)):
        return [_plain(item) for item in value]
    if isinstance(value, OrMissing):
        return {"or_missing": _plain(value.value)}
    return str(value)
