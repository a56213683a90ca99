"""Evaluation and calibration on labelled questions (the ``../shared/eval`` formats).

Queries JSONL: ``{"query": ..., "expected": [ids]}``; an empty list means "must refuse".
An expected id matches a hit whose ``item_id`` or ``doc`` equals it, or whose record is
identical to the expected one (the same question and text under another id: which of the two
ranks first is the store's arbitrary choice). The rule is the same for the fused list and
every route's list.

- :func:`evaluate`: hit@1, hit@5, MRR@10 over answerable queries (fused and per route),
  answered rate among answerable and refused rate among must-refuse at the configured
  thresholds. "Answered" means the answer or cautious level (the LLM is called);
  "refused" means sources-only or refuse (it is not).
- :func:`choose_thresholds`: thresholds from the two score distributions.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tqdm import tqdm

from bot.config import ROUTES, DecisionSettings, Thresholds
from bot.decide import decide
from bot.errors import ConfigError
from bot.ingest.documents import Chunk
from bot.store.base import ScoredId

__all__ = [
    "LabelledQuery",
    "EvalReport",
    "read_queries",
    "evaluate",
    "choose_thresholds",
    "eval_collection_name",
    "identical_records",
]


@dataclass(frozen=True)
class LabelledQuery:
    """A question and the ids that answer it (none: it must be refused)."""

    query: str
    expected: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return bool(self.expected)


@dataclass
class _RankMetrics:
    hits_at_1: int = 0
    hits_at_5: int = 0
    reciprocal_ranks: float = 0.0
    queries_with_hits: int = 0  # none: the route has nothing to search (passages have no question side)

    def add(self, rank: int | None, *, found: bool) -> None:
        self.queries_with_hits += found
        if rank is None:
            return
        self.hits_at_1 += rank == 1
        self.hits_at_5 += rank <= 5
        self.reciprocal_ranks += 1.0 / rank if rank <= 10 else 0.0

    def as_dict(self, n: int) -> dict[str, float]:
        return {
            "hit_at_1": _rate(self.hits_at_1, n),
            "hit_at_5": _rate(self.hits_at_5, n),
            "mrr_at_10": round(self.reciprocal_ranks / n, 4) if n else 0.0,
            "queries_with_hits": self.queries_with_hits,
        }


@dataclass
class EvalReport:
    """Counts and scores gathered over a query set; :meth:`as_dict` gives the metrics."""

    n_answerable: int = 0
    n_refuse: int = 0
    fused: _RankMetrics = field(default_factory=_RankMetrics)
    routes: dict[str, _RankMetrics] = field(default_factory=lambda: {r: _RankMetrics() for r in ROUTES})
    answered: int = 0
    refused: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    signal: str = "dense"
    fusion: str = ""
    answerable_scores: list[float] = field(default_factory=list)
    refuse_scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The metrics as one flat object, with per-route metrics under ``routes``."""
        return {
            "n_answerable": self.n_answerable,
            "n_refuse": self.n_refuse,
            **self.fused.as_dict(self.n_answerable),
            "answered_rate": _rate(self.answered, self.n_answerable),
            "refused_rate": _rate(self.refused, self.n_refuse),
            "levels": self.levels,
            "signal": self.signal,
            "fusion": self.fusion,
            "routes": {name: m.as_dict(self.n_answerable) for name, m in self.routes.items()},
        }


def read_queries(paths: Iterable[Path]) -> list[LabelledQuery]:
    """Read one or more queries JSONL files."""
    queries = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                queries.append(LabelledQuery(record["query"], tuple(record.get("expected") or ())))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not a query record ({exc})") from exc
    return queries


def evaluate(
    engine,
    queries: Sequence[LabelledQuery],
    *,
    decision: DecisionSettings | None = None,
    progress: bool = True,
    identical: Mapping[str, frozenset[str]] | None = None,
    **overrides,
) -> EvalReport:
    """Run every query through retrieval and decision; ``overrides`` go to ``retrieve``.
    ``identical`` (from :func:`identical_records`) credits a hit for a record identical to the
    expected one."""
    identical = identical or {}
    decision = decision or engine.settings.decision
    report = EvalReport()
    for labelled in tqdm(queries, desc="evaluating", unit="query", disable=not progress):
        retrieval = engine.retrieve(labelled.query, top_k=10, **overrides)
        verdict = decide(retrieval, decision)
        report.signal, report.fusion = verdict.signal, retrieval.fusion
        report.levels[verdict.level.value] = report.levels.get(verdict.level.value, 0) + 1
        score = verdict.score if verdict.score is not None else 0.0
        if labelled.answerable:
            report.n_answerable += 1
            report.answered += verdict.level.answers
            report.answerable_scores.append(score)
            expected = set(labelled.expected)
            fused_rank = _first_rank((_credited(h.ids, identical) for h in retrieval.hits), expected)
            report.fused.add(fused_rank, found=bool(retrieval.hits))
            for name, hits in retrieval.routes.items():
                rank = _first_rank((_credited(ids, identical) for ids in _ids(hits)), expected)
                report.routes[name].add(rank, found=bool(hits))
        else:
            report.n_refuse += 1
            report.refused += not verdict.level.answers
            report.refuse_scores.append(score)
    return report


def choose_thresholds(
    answerable: Sequence[float],
    refuse: Sequence[float],
    *,
    answer_rate: float = 0.95,
    false_answer_rate: float = 0.01,
    sources_rate: float = 0.99,
) -> Thresholds:
    """Thresholds from the two score distributions.

    - caution: the highest value that still lets ``answer_rate`` of the answerable questions
      be answered refuses as many must-refuse questions as possible; the threshold is then
      lowered into the middle of the gap between the highest must-refuse score beneath it and
      the next answerable score, which answers more answerable questions while refusing
      exactly as many must-refuse ones (with the widest margin on both sides).
    - answer (full confidence): the lowest value that at most ``false_answer_rate`` of the
      must-refuse questions reach (never below caution).
    - sources: the value ``sources_rate`` of the answerable questions reach: below it, refuse.
    """
    if not answerable:
        raise ConfigError("calibration needs answerable questions (queries with expected ids)")
    for name, rate in (
        ("answer rate", answer_rate),
        ("false answer rate", false_answer_rate),
        ("sources rate", sources_rate),
    ):
        if not 0 < rate <= 1:
            raise ConfigError(f"the {name} must be above 0 and at most 1, got {rate}")
    ranked = sorted(answerable)
    caution = _round_down(ranked[int(math.floor((1 - answer_rate) * len(ranked)))])
    if refuse:
        caution = _gap_middle(caution, ranked, refuse)
    sources = min(caution, _round_down(ranked[int(math.floor((1 - sources_rate) * len(ranked)))]))
    answer = caution
    if refuse:
        ranked_refuse = sorted(refuse)
        index = max(0, int(math.ceil((1 - false_answer_rate) * len(ranked_refuse))) - 1)
        answer = max(caution, _round_up(ranked_refuse[index]))
    return Thresholds(answer=answer, caution=caution, sources=sources)


def identical_records(chunks: Iterable[Chunk]) -> dict[str, frozenset[str]]:
    """For each item id whose record has the same question and text as another's, the item ids
    and declared docs of all of them (the same grouping as ``retrieval.merge_identical``)."""
    groups: dict[tuple[str, str], set[str]] = {}
    members: dict[tuple[str, str], list[str]] = {}
    for chunk in chunks:
        content = (chunk.question, chunk.text)
        groups.setdefault(content, set()).update(i for i in (chunk.item_id, chunk.declared_doc) if i)
        members.setdefault(content, []).append(chunk.item_id)
    return {
        item_id: frozenset(groups[content])
        for content, item_ids in members.items()
        if len(set(item_ids)) > 1
        for item_id in item_ids
    }


def eval_collection_name(knowledge: Path) -> str:
    """A collection name of its own for an evaluation knowledge file."""
    path = Path(knowledge).resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", f"{path.parent.name}-{path.stem}".lower()).strip("-")
    return f"eval-{slug}"


def _ids(hits: list[ScoredId]) -> Iterable[frozenset[str]]:
    for hit in hits:
        payload = hit.payload or {}
        yield frozenset((payload.get("item_id", hit.id), payload.get("doc", "")))


def _credited(ids: frozenset[str], identical: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """``ids`` and the ids of every record identical to one of them."""
    return ids.union(*(identical[i] for i in ids if i in identical))


def _first_rank(ranked: Iterable[frozenset[str]], expected: set[str]) -> int | None:
    """The rank of the first hit, given as the ids it stands for, that matches an expected id."""
    for rank, ids in enumerate(ranked, start=1):
        if ids & expected:
            return rank
    return None


def _gap_middle(cut: float, answerable: Sequence[float], refuse: Sequence[float]) -> float:
    """The middle of the gap below ``cut`` that holds no must-refuse score."""
    beneath = [score for score in refuse if score < cut]
    if not beneath:
        return min(cut, _round_down(answerable[0]))
    highest_refused = max(beneath)
    next_answerable = min((s for s in answerable if s > highest_refused), default=cut)
    middle = _round_down((highest_refused + min(next_answerable, cut)) / 2)
    return min(cut, max(middle, _round_up(highest_refused)))


def _round_up(value: float) -> float:
    """Strictly above ``value`` at four decimals (a must-refuse score equal to it stays below)."""
    return math.floor(value * 10_000 + 1) / 10_000


def _round_down(value: float) -> float:
    """At or below ``value`` at four decimals (an answerable score equal to it stays above)."""
    return math.floor(value * 10_000) / 10_000


def _rate(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0
