"""Users' feedback (thumbs up or down) on answered turns, kept in SQL, and which conversation
a turn belongs to (feedback is accepted only from it).

    record_feedback(sql, "user-1", turn_id, +1)
    feedback_for(sql, turn_id)      # [{"rating": 1, ...}]
    turn_in_conversation(sql, turn_id, "user-1")    # True once the turn's trace is written
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.engine import Engine as SqlEngine

from bot.db.schema import feedback, turns

__all__ = ["RecentTurns", "record_feedback", "feedback_for", "turn_in_conversation"]


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


def turn_in_conversation(sql: SqlEngine, turn_id: str, conversation_id: str) -> bool:
    """Whether the traces hold ``turn_id`` as a turn of ``conversation_id``."""
    with sql.connect() as conn:
        found = conn.execute(
            select(turns.c.turn_id).where(turns.c.turn_id == turn_id, turns.c.conversation_id == conversation_id)
        ).first()
    return found is not None


class RecentTurns:
    """The conversation of each of the last ``size`` turns this process answered: traces are
    written by a background queue, so a rating given right after an answer finds it here."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._turns: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, turn_id: str, conversation_id: str) -> None:
        """Note that ``turn_id`` was a turn of ``conversation_id``."""
        with self._lock:
            self._turns[turn_id] = conversation_id
            self._turns.move_to_end(turn_id)
            while len(self._turns) > self.size:
                self._turns.popitem(last=False)

    def conversation_of(self, turn_id: str) -> str | None:
        """The conversation of ``turn_id`` (None: not one of the recent turns)."""
        with self._lock:
            return self._turns.get(turn_id)
