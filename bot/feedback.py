"""Users' feedback (thumbs up or down) on answered turns, kept in SQL.

    record_feedback(sql, "user-1", turn_id, +1)
    feedback_for(sql, turn_id)      # [{"rating": 1, ...}]
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.engine import Engine as SqlEngine

from bot.db.schema import feedback

__all__ = ["record_feedback", "feedback_for"]


def record_feedback(
    sql: SqlEngine, conversation_id: str, turn_id: str | None, rating: int, comment: str | None = None
) -> int:
    """Store one rating (+1 or -1) for ``turn_id`` (None: nothing answered yet); returns its row id."""
    if rating not in (1, -1):
        raise ValueError(f"rating must be +1 or -1, not {rating!r}")
    with sql.begin() as conn:
        result = conn.execute(
            feedback.insert().values(
                conversation_id=conversation_id,
                turn_id=turn_id,
                rating=rating,
                comment=comment,
                created_at=datetime.now(timezone.utc).replace(tzinfo=None),  # naive UTC, like every stored time
            )
        )
        return int(result.inserted_primary_key[0])


def feedback_for(sql: SqlEngine, turn_id: str) -> list[dict]:
    """The ratings given to one turn, oldest first."""
    with sql.connect() as conn:
        rows = conn.execute(
            select(feedback).where(feedback.c.turn_id == turn_id).order_by(feedback.c.id)
        ).mappings()
        return [dict(row) for row in rows]
