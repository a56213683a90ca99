"""Reviewed traces as evaluation queries: the JSONL that ``bot calibrate`` and ``bot eval`` read.

Each line is ``{"query", "expected", "turn_id", "source"}``: ``expected`` lists the items that
answer the question, or is empty for a question the bot must refuse (the ``../shared/eval``
format; the evaluation ignores the extra keys).

- Reviewers' labels (``bot traces label``): the latest verdict of each turn.
- One line per question: when the same question (whitespace aside) was labelled on several
  turns, the most recent label wins, so a question asked a hundred times does not weigh a
  hundred times in calibration.
- ``from_feedback``: also thumbs-up turns nobody labelled that the LLM answered with
  citations, as answerable with the cited items. Opt-in, because such turns were all
  answered, i.e. scored above the caution threshold in force when they were asked: they
  cannot reveal answerable questions the bot wrongly refused, and many of them pull a
  calibrated threshold up. Good for ``bot eval`` on real questions; for ``bot calibrate``
  reviewed labels are the honest data. Sources-only turns are left out (the trace does not
  say which of the listed sources helped).

    export = export_queries(sql, from_feedback=True)
    path.write_text(export.jsonl(), "utf-8")
    export.answerable, export.refuse, export.merged
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.engine import Engine as SqlEngine

from bot.db.schema import feedback, turn_labels, turns
from bot.traces.queries import export_labelled

__all__ = ["Export", "export_queries"]

#: Levels at which the LLM wrote the answer (and cited what it used).
ANSWERED_LEVELS = ("answer", "cautious")


@dataclass
class Export:
    """The exported queries and how they were gathered."""

    records: list[dict[str, Any]] = field(default_factory=list)
    labelled: int = 0  # labelled turns with a question
    merged: int = 0  # labelled turns whose question another, more recent label already gives
    from_feedback: int = 0  # lines taken from thumbs-up turns

    @property
    def answerable(self) -> int:
        return sum(1 for record in self.records if record["expected"])

    @property
    def refuse(self) -> int:
        return sum(1 for record in self.records if not record["expected"])

    def jsonl(self) -> str:
        """One JSON object per line (UTF-8 text, not escaped), ending with a newline if not empty."""
        return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in self.records)

    def summary(self) -> str:
        parts = [f"{len(self.records)} questions: {self.answerable} answerable, {self.refuse} must-refuse"]
        if self.merged:
            parts.append(f"{self.merged} repeated questions merged (latest label kept)")
        if self.from_feedback:
            parts.append(f"{self.from_feedback} answerable from thumbs-up feedback")
        return "; ".join(parts)


def export_queries(sql: SqlEngine, *, from_feedback: bool = False) -> Export:
    """Labelled turns (and, with ``from_feedback``, thumbs-up answered ones) as evaluation queries."""
    export = Export()
    by_question: dict[str, dict[str, Any]] = {}
    for record in export_labelled(sql):  # oldest label first
        if not (record["query"] or "").strip():
            continue  # a canned turn recorded without its text
        export.labelled += 1
        key = _key(record["query"])
        if by_question.pop(key, None) is not None:
            export.merged += 1
        by_question[key] = {**record, "source": "label"}
    if from_feedback:
        for record in _thumbs_up(sql):
            key = _key(record["query"])
            if key not in by_question:
                by_question[key] = record
                export.from_feedback += 1
    export.records = list(by_question.values())
    return export


def _thumbs_up(sql: SqlEngine) -> Iterable[dict[str, Any]]:
    """Unlabelled turns with net positive feedback that the LLM answered with citations."""
    rating = (
        select(feedback.c.turn_id, func.sum(feedback.c.rating).label("rating"))
        .where(feedback.c.turn_id.isnot(None))
        .group_by(feedback.c.turn_id)
        .subquery()
    )
    labelled = select(turn_labels.c.turn_id)
    query = (
        select(turns.c.turn_id, turns.c.question, turns.c.citations, turns.c.hits)
        .join(rating, rating.c.turn_id == turns.c.turn_id)
        .where(rating.c.rating > 0)
        .where(turns.c.kind == "knowledge")
        .where(turns.c.level.in_(ANSWERED_LEVELS))
        .where(turns.c.turn_id.notin_(labelled))
        .order_by(turns.c.created_at, turns.c.turn_id)
    )
    with sql.connect() as conn:
        rows = conn.execute(query).all()
    for row in rows:
        expected = _cited_ids(row.citations or [], row.hits or [])
        if expected and (row.question or "").strip():
            yield {"query": row.question, "expected": expected, "turn_id": row.turn_id, "source": "feedback"}


def _cited_ids(citations: list[dict], hits: list[dict]) -> list[str]:
    """The cited items' ids; a passage without an id of its own (its item id is the chunk's
    point id, which changes when the document is edited) is named by its document instead."""
    point_ids = {hit.get("id") for hit in hits}
    ids = []
    for citation in citations:
        item = citation.get("item_id") or ""
        if item in point_ids and citation.get("doc"):
            item = citation["doc"]
        if item and item not in ids:
            ids.append(item)
    return ids


def _key(question: str) -> str:
    return " ".join(question.split())
