"""Reading traces back: list and filter turns, one turn in full, labels, and the export of
labelled questions in the evaluation format (``{"query", "expected"}``) for ``bot calibrate``.

    rows = list_turns(sql, TurnFilter(level="refuse", feedback="negative"))
    turn = get_turn(sql, rows[0]["turn_id"])
    label_turn(sql, turn["turn_id"], "answer", expected=["faq-en-refund"])
    export_labelled(sql)      # [{"query": "...", "expected": ["faq-en-refund"], "turn_id": "..."}]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import and_, func, select, true
from sqlalchemy.engine import Engine as SqlEngine

from bot.db.schema import feedback, turn_labels, turns

__all__ = ["TurnFilter", "VERDICTS", "list_turns", "get_turn", "label_turn", "export_labelled"]

#: A reviewer's verdicts: the bot should have answered (with the expected items), or refused.
VERDICTS = ("answer", "refuse")

#: Columns of the turn list (the full trace is in :func:`get_turn`).
_SUMMARY = (
    turns.c.turn_id,
    turns.c.created_at,
    turns.c.conversation_id,
    turns.c.kind,
    turns.c.channel,
    turns.c.language,
    turns.c.intent,
    turns.c.intent_confidence,
    turns.c.response,
    turns.c.question,
    turns.c.level,
    turns.c.guard,
    turns.c.score,
    turns.c.total_ms,
)


@dataclass(frozen=True, kw_only=True)
class TurnFilter:
    """Which turns to list; every field left None lets all through."""

    level: str | None = None  # answer | cautious | sources_only | refuse
    kind: str | None = None  # knowledge | canned
    intent: str | None = None
    feedback: str | None = None  # negative | positive | any
    labelled: bool | None = None
    max_score: float | None = None  # the decision's score at most this
    since: datetime | None = None
    until: datetime | None = None
    conversation_id: str | None = None
    text: str | None = None  # a substring of the question
    guard: str | None = None  # attack | sensitive | downgraded (bot/guard), any (one of them) or none


def list_turns(sql: SqlEngine, where: TurnFilter = TurnFilter(), *, limit: int = 50, offset: int = 0) -> list[dict]:
    """Turns matching ``where``, newest first, each with its net feedback and latest verdict."""
    rating = (
        select(feedback.c.turn_id, func.sum(feedback.c.rating).label("rating"), func.count().label("ratings"))
        .group_by(feedback.c.turn_id)
        .subquery()
    )
    latest_label = select(func.max(turn_labels.c.id)).group_by(turn_labels.c.turn_id).scalar_subquery()
    label = select(turn_labels.c.turn_id, turn_labels.c.verdict).where(turn_labels.c.id.in_(latest_label)).subquery()
    query = (
        select(*_SUMMARY, rating.c.rating, rating.c.ratings, label.c.verdict)
        .select_from(
            turns.outerjoin(rating, rating.c.turn_id == turns.c.turn_id).outerjoin(
                label, label.c.turn_id == turns.c.turn_id
            )
        )
        .where(and_(true(), *_conditions(where, rating, label)))
        .order_by(turns.c.created_at.desc(), turns.c.turn_id)
        .limit(limit)
        .offset(offset)
    )
    with sql.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _conditions(where: TurnFilter, rating, label) -> list:
    conditions = []
    for name in ("level", "kind", "intent", "conversation_id"):
        if getattr(where, name) is not None:
            conditions.append(turns.c[name] == getattr(where, name))
    if where.guard == "any":
        conditions.append(turns.c.guard.isnot(None))
    elif where.guard == "none":
        conditions.append(turns.c.guard.is_(None))
    elif where.guard is not None:
        conditions.append(turns.c.guard == where.guard)
    if where.max_score is not None:
        conditions.append(turns.c.score <= where.max_score)
    if where.since is not None:
        conditions.append(turns.c.created_at >= _naive_utc(where.since))
    if where.until is not None:
        conditions.append(turns.c.created_at < _naive_utc(where.until))
    if where.text:
        conditions.append(turns.c.question.contains(where.text, autoescape=True))
    if where.feedback == "negative":
        conditions.append(rating.c.rating < 0)
    elif where.feedback == "positive":
        conditions.append(rating.c.rating > 0)
    elif where.feedback == "any":
        conditions.append(rating.c.ratings > 0)
    elif where.feedback is not None:
        raise ValueError(f"feedback filter is negative, positive or any, not {where.feedback!r}")
    if where.labelled is not None:
        conditions.append(label.c.verdict.isnot(None) if where.labelled else label.c.verdict.is_(None))
    return conditions


def get_turn(sql: SqlEngine, turn_id: str) -> dict[str, Any] | None:
    """One turn's whole trace, with its feedback and labels (oldest first); None if unknown."""
    with sql.connect() as conn:
        row = conn.execute(select(turns).where(turns.c.turn_id == turn_id)).mappings().first()
        if row is None:
            return None
        ratings = conn.execute(
            select(feedback.c.rating, feedback.c.comment, feedback.c.created_at)
            .where(feedback.c.turn_id == turn_id)
            .order_by(feedback.c.id)
        ).mappings()
        labels = conn.execute(
            select(turn_labels.c.verdict, turn_labels.c.expected, turn_labels.c.note, turn_labels.c.created_at)
            .where(turn_labels.c.turn_id == turn_id)
            .order_by(turn_labels.c.id)
        ).mappings()
        return {**dict(row), "feedback": [dict(r) for r in ratings], "labels": [dict(r) for r in labels]}


def label_turn(
    sql: SqlEngine, turn_id: str, verdict: str, *, expected: Sequence[str] = (), note: str | None = None
) -> int:
    """Record a reviewer's verdict on a turn: ``answer`` with the ``expected`` item ids, or ``refuse``."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict is one of {VERDICTS}, not {verdict!r}")
    expected = [item.strip() for item in expected if item and item.strip()]
    if verdict == "answer" and not expected:
        raise ValueError("an 'answer' verdict needs the id of at least one item that answers the question")
    if verdict == "refuse" and expected:
        raise ValueError("a 'refuse' verdict takes no expected items")
    with sql.begin() as conn:
        if conn.execute(select(turns.c.turn_id).where(turns.c.turn_id == turn_id)).first() is None:
            raise KeyError(f"no turn {turn_id!r} in the traces")
        result = conn.execute(
            turn_labels.insert().values(
                turn_id=turn_id,
                verdict=verdict,
                expected=expected,
                note=note,
                created_at=datetime.now(timezone.utc).replace(tzinfo=None),
            )
        )
        return int(result.inserted_primary_key[0])


def export_labelled(sql: SqlEngine) -> list[dict[str, Any]]:
    """Every labelled knowledge turn's question with its latest verdict, in the evaluation
    queries format: ``expected`` lists the answering items, or is empty for must-refuse."""
    latest = select(func.max(turn_labels.c.id)).group_by(turn_labels.c.turn_id).scalar_subquery()
    query = (
        select(turns.c.turn_id, turns.c.question, turn_labels.c.expected, turn_labels.c.created_at)
        .select_from(turn_labels.join(turns, turns.c.turn_id == turn_labels.c.turn_id))
        .where(turn_labels.c.id.in_(latest), turns.c.kind == "knowledge", turns.c.question.isnot(None))
        .order_by(turn_labels.c.created_at, turn_labels.c.id)
    )
    with sql.connect() as conn:
        return [
            {"query": row.question, "expected": list(row.expected or []), "turn_id": row.turn_id}
            for row in conn.execute(query)
        ]


def _naive_utc(moment: datetime) -> datetime:
    """Stored times are naive UTC."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment
