"""The refusal policy: four levels taken on a relevance signal, never on a fused score.

Fused scores are ranks (RRF) or per-query normalizations (DBSF): they say which hit is
better than another, not whether any is relevant. The signal is the reranker's score when
one is configured, else the best dense similarity; with a model fit by ``bot calibrate``, the
probability that the question is answerable, from all the routes' evidence (``bot.fusion``).
Thresholds come from ``bot calibrate`` (the answerable ones are stored with the model).

    decision = decide(retrieval, settings.decision)
    decision.level        # Level.ANSWER
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bot.config import DecisionSettings, Thresholds
from bot.retrieve import Retrieval

__all__ = ["Level", "Decision", "decide", "level_for", "relevance"]


class Level(str, Enum):
    """What the bot does with a question."""

    ANSWER = "answer"  # confident: grounded answer
    CAUTIOUS = "cautious"  # middling: answer, told to decline if the passages do not support it
    SOURCES_ONLY = "sources_only"  # weak: no generation, show the best sources
    REFUSE = "refuse"  # nothing relevant: say so

    @property
    def answers(self) -> bool:
        """True for the levels that generate an answer."""
        return self in (Level.ANSWER, Level.CAUTIOUS)

    @property
    def rank(self) -> int:
        """How much the bot says at this level: refuse 0, sources only 1, cautious 2, answer 3."""
        return (Level.REFUSE, Level.SOURCES_ONLY, Level.CAUTIOUS, Level.ANSWER).index(self)


@dataclass(frozen=True)
class Decision:
    """The level, the signal it was taken on, that signal's value and the thresholds used."""

    level: Level
    signal: str
    score: float | None
    thresholds: Thresholds

    def as_dict(self) -> dict:
        """Plain data for JSON output and traces."""
        return {
            "level": self.level.value,
            "signal": self.signal,
            "score": self.score,
            "thresholds": {
                "answer": self.thresholds.answer,
                "caution": self.thresholds.caution,
                "sources": self.thresholds.sources,
            },
        }


def relevance(retrieval: Retrieval) -> tuple[str, float | None]:
    """The signal's name and value: ``("answerable", probability)`` when a fitted answerable model
    ran, else ``("rerank", top reranker score)`` or ``("dense", best dense similarity)``."""
    if retrieval.answerable is not None:
        return "answerable", retrieval.answerable
    if retrieval.hits and retrieval.hits[0].rerank_score is not None:
        return "rerank", retrieval.hits[0].rerank_score
    return "dense", retrieval.best_dense


def decide(retrieval: Retrieval, settings: DecisionSettings) -> Decision:
    """Pick the level for this retrieval with the signal's thresholds."""
    signal, score = relevance(retrieval)
    if signal == "answerable" and retrieval.answerable_thresholds is not None:
        thresholds = retrieval.answerable_thresholds  # chosen with the model by `bot calibrate`
    else:
        thresholds = settings.rerank if signal == "rerank" else settings.dense
    return Decision(level_for(score, thresholds), signal, score, thresholds)


def level_for(score: float | None, thresholds: Thresholds) -> Level:
    """The level a signal value falls in."""
    if score is None or score < thresholds.sources:
        return Level.REFUSE
    if score < thresholds.caution:
        return Level.SOURCES_ONLY
    if score < thresholds.answer:
        return Level.CAUTIOUS
    return Level.ANSWER
