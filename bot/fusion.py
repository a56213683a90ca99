"""Learned fusion and refusal: two small logistic models over the routes' evidence.

Each route (question/content side, dense/sparse) returns its own ranked candidates. For every
candidate of their union, :func:`candidate_features` describes what each route said about it:
found or not, 1/rank, score relative to the route's best, distance below the best in units of
the route's top-10 spread, the raw score, and the reranker's score when one ran. A logistic
model (``candidate == an expected item``) re-scores the candidates. A second logistic model
gives the probability that the question is answerable at all, from query-level features of
the re-scored list (:func:`query_features`).

- :data:`DEFAULT_MODEL_FILE`: the shipped default (relative, scale-free features only), used
  when a collection has no model of its own;
- :func:`fit_models` (called by ``bot calibrate``): both models from labelled questions;
- :func:`save_models` / :func:`load_models`: small JSON beside the collection's data
  (``.bot/fusion/<collection>.json``), recording the encoders and collection fit for.

    models = load_models(settings, "knowledge")       # the fitted ones, else the default
    ranked, logits = models.rank(evidence)            # candidates best first
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from bot.config import ROUTES, Settings, Thresholds
from bot.errors import ConfigError
from bot.store.base import ScoredId

__all__ = [
    "Evidence",
    "LinearModel",
    "FusionModels",
    "TrainingQuery",
    "candidate_features",
    "query_features",
    "fit_linear",
    "fit_models",
    "default_models",
    "load_models",
    "save_models",
    "model_path",
    "encoder_signature",
    "fit_info",
    "RELATIVE_FEATURES",
    "GENERIC_GROUP",
    "RAW_FEATURES",
]

log = logging.getLogger(__name__)

FORMAT = 1
#: A candidate further below its route's best than this many top-10 spreads counts as this far.
GAP_CAP = 5.0
#: The spread of a route's scores is measured down to this rank.
SPREAD_RANK = 10
#: Scale-free candidate features: usable on any corpus without fitting (the default model).
RELATIVE_FEATURES = tuple(
    f"{route}.{kind}" for route in ROUTES for kind in ("found", "inv_rank", "rel", "gap")
) + ("routes_found",)
#: Raw scores: their scale depends on the corpus and encoders, so only fitted models use them.
RAW_FEATURES = tuple(f"{route}.raw" for route in ROUTES)
RERANK_FEATURES = ("rerank", "rerank.found")
QUERY_FEATURES = (
    ("top.logit", "margin", "top.routes_found")
    + tuple(f"{route}.best_raw" for route in ROUTES)
    + tuple(f"{route}.top_raw" for route in ROUTES)
    + tuple(f"{route}.margin" for route in ROUTES)
    + tuple(f"{route}.spread" for route in ROUTES)
    + ("top.agree", "top.inv_rank")
)
#: Training queries with this group are the shipped generic must-refuse questions.
GENERIC_GROUP = "generic"
#: Folds of the answerable questions: each one's query features come from a candidate model fit
#: without it, so the answerable model sees the scores that unseen questions will get.
FOLDS = 3
DEFAULT_MODEL_FILE = "default_fusion.json"


@dataclass(frozen=True)
class Evidence:
    """One query's candidates (any order) with their payloads, each route's ranked list with raw
    scores, and the reranker's scores by candidate id when one ran."""

    candidates: list[ScoredId]
    routes: Mapping[str, list[ScoredId]]
    rerank: Mapping[str, float] = field(default_factory=dict)
    #: why a configured reranker did not score the candidates (its server failed)
    rerank_skipped: str | None = None


@dataclass(frozen=True)
class LinearModel:
    """A logistic model over named features, standardized with the stored mean and scale."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def logits(self, matrix: np.ndarray) -> np.ndarray:
        """The model's log-odds for each row of ``matrix`` (columns in :attr:`features` order)."""
        weights = np.asarray(self.coef) / np.asarray(self.scale)
        return matrix @ weights + (self.intercept - float(np.dot(weights, self.mean)))

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LinearModel":
        model = cls(
            features=tuple(data["features"]),
            mean=tuple(float(x) for x in data["mean"]),
            scale=tuple(float(x) for x in data["scale"]),
            coef=tuple(float(x) for x in data["coef"]),
            intercept=float(data["intercept"]),
        )
        if not len(model.features) == len(model.mean) == len(model.scale) == len(model.coef):
            raise ValueError("features, mean, scale and coef differ in length")
        return model


@dataclass(frozen=True)
class FusionModels:
    """The candidate model, optionally the answerable model with its refusal thresholds, and
    what they were fit on (``info``: date, questions, collection, encoders)."""

    fusion: LinearModel
    answerable: LinearModel | None = None
    thresholds: Thresholds | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False

    @property
    def uses_rerank(self) -> bool:
        return "rerank" in self.fusion.features

    def describe(self) -> str:
        """One line for people: ``learned (fit 2026-12-05 on 412 questions, collection X)`` or ``default``."""
        if self.default:
            return "default (shipped model, relative route evidence; `bot calibrate` fits one for this collection)"
        info = self.info
        ranking = "; ranking: default" if info.get("ranking", "").startswith("default") else ""
        return (
            f"learned (fit {info.get('fitted', '?')} on {info.get('questions', '?')} questions, "
            f"collection {info.get('collection', '?')}{ranking})"
        )

    def rank(self, evidence: Evidence) -> tuple[list[ScoredId], np.ndarray]:
        """The candidates best first, and their log-odds in that order."""
        if not evidence.candidates:
            return [], np.zeros(0)
        logits = self.fusion.logits(candidate_features(evidence, self.fusion.features))
        order = np.argsort(-logits, kind="stable")
        return [evidence.candidates[i] for i in order], logits[order]

    def answerable_probability(self, evidence: Evidence, ranked: Sequence[ScoredId], logits: np.ndarray) -> float | None:
        """The probability that the question is answerable (None without an answerable model)."""
        if self.answerable is None:
            return None
        row = query_features(evidence, ranked, logits, self.answerable.features)
        return float(_sigmoid(self.answerable.logits(row[None, :]))[0])

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **self.info,
            "fusion": self.fusion.as_dict(),
            "answerable": self.answerable.as_dict() if self.answerable else None,
            "thresholds": asdict(self.thresholds) if self.thresholds else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default: bool = False) -> "FusionModels":
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        info = {k: v for k, v in data.items() if k not in ("format", "fusion", "answerable", "thresholds")}
        return cls(
            fusion=LinearModel.from_dict(data["fusion"]),
            answerable=LinearModel.from_dict(data["answerable"]) if data.get("answerable") else None,
            thresholds=Thresholds(**data["thresholds"]) if data.get("thresholds") else None,
            info=info,
            default=default,
        )


@dataclass(frozen=True)
class TrainingQuery:
    """A question's evidence and the ids that answer it (none: it must be refused). ``credited``
    maps a candidate id to every id it stands for (item id, doc, identical records)."""

    evidence: Evidence
    expected: frozenset[str]
    credited: Mapping[str, frozenset[str]]
    group: str = ""

    def labels(self) -> np.ndarray:
        return np.array(
            [bool(self.credited.get(c.id, frozenset()) & self.expected) for c in self.evidence.candidates],
            dtype=float,
        )


# ---------------------------------------------------------------- features


def candidate_features(evidence: Evidence, names: Sequence[str]) -> np.ndarray:
    """One row per candidate, one column per feature name (see the module docstring)."""
    ids = [c.id for c in evidence.candidates]
    columns: dict[str, np.ndarray] = {}
    found_total = np.zeros(len(ids))
    for route in ROUTES:
        hits = evidence.routes.get(route) or []
        found, inv_rank, rel, gap, raw = (np.zeros(len(ids)) for _ in range(5))
        gap[:] = GAP_CAP
        if hits:
            best = hits[0].score
            spread = best - hits[min(SPREAD_RANK, len(hits)) - 1].score
            position = {hit.id: (rank, hit.score) for rank, hit in enumerate(hits, start=1)}
            for i, cid in enumerate(ids):
                seen = position.get(cid)
                if seen is None:
                    continue
                rank, score = seen
                found[i], inv_rank[i], raw[i] = 1.0, 1.0 / rank, score
                rel[i] = score / best if best > 0 else 0.0
                gap[i] = min(GAP_CAP, (best - score) / spread) if spread > 0 else 0.0
        found_total += found
        columns.update({f"{route}.found": found, f"{route}.inv_rank": inv_rank, f"{route}.rel": rel,
                        f"{route}.gap": gap, f"{route}.raw": raw})
    columns["routes_found"] = found_total / len(ROUTES)
    rerank = np.array([evidence.rerank.get(cid, 0.0) for cid in ids], dtype=float)
    columns["rerank"] = rerank
    columns["rerank.found"] = np.array([cid in evidence.rerank for cid in ids], dtype=float)
    return _stack(columns, names, len(ids))


def query_features(
    evidence: Evidence, ranked: Sequence[ScoredId], logits: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """Query-level features for the answerable model, from the re-scored candidates."""
    values: dict[str, float] = {
        "top.logit": float(logits[0]) if len(logits) else -20.0,
        "margin": float(logits[0] - logits[1]) if len(logits) > 1 else 0.0,
    }
    top = ranked[0].id if ranked else None
    routes_found, agree, inv_rank = 0, 0, 0.0
    for route in ROUTES:
        hits = evidence.routes.get(route) or []
        values[f"{route}.best_raw"] = hits[0].score if hits else 0.0
        values[f"{route}.margin"] = hits[0].score - hits[1].score if len(hits) > 1 else 0.0
        values[f"{route}.spread"] = hits[0].score - hits[min(SPREAD_RANK, len(hits)) - 1].score if hits else 0.0
        rank = next((r for r, h in enumerate(hits, start=1) if h.id == top), None)
        values[f"{route}.top_raw"] = hits[rank - 1].score if rank else 0.0
        routes_found += rank is not None
        agree += rank == 1
        inv_rank += 1.0 / rank if rank else 0.0
    values["top.routes_found"] = routes_found / len(ROUTES)
    values["top.agree"] = agree / len(ROUTES)  # routes whose own first is the fused first
    values["top.inv_rank"] = inv_rank / len(ROUTES)
    values["top.rerank"] = evidence.rerank.get(top, 0.0) if top else 0.0
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"the answerable model asks for unknown features {missing}")
    return np.array([values[n] for n in names], dtype=float)


def _stack(columns: Mapping[str, np.ndarray], names: Sequence[str], rows: int) -> np.ndarray:
    missing = [n for n in names if n not in columns]
    if missing:
        raise ConfigError(f"the fusion model asks for unknown features {missing}")
    return np.column_stack([columns[n] for n in names]) if names else np.zeros((rows, 0))


# ---------------------------------------------------------------- fitting


def fit_linear(
    matrix: np.ndarray, labels: np.ndarray, names: Sequence[str], *, weights: np.ndarray | None = None, c: float = 1.0
) -> LinearModel:
    """A standardized L2 logistic regression (scikit-learn), stored as plain numbers."""
    from sklearn.linear_model import LogisticRegression

    if len(set(labels.tolist())) < 2:
        raise ConfigError("fitting needs examples of both kinds (positive and negative)")
    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((matrix - mean) / scale, labels, sample_weight=weights)
    return LinearModel(
        features=tuple(names),
        mean=tuple(float(x) for x in mean),
        scale=tuple(float(x) for x in scale),
        coef=tuple(float(x) for x in model.coef_[0]),
        intercept=float(model.intercept_[0]),
    )


def fusion_rows(queries: Iterable[TrainingQuery], names: Sequence[str], *, balance_groups: bool = False):
    """Candidate rows, labels and weights of the answerable queries whose expected item is among
    their candidates (the others teach the ranking nothing). With ``balance_groups`` every group
    (e.g. evaluation set) weighs the same in total."""
    matrices, labels, groups = [], [], []
    for query in queries:
        if not query.expected or not query.evidence.candidates:
            continue
        y = query.labels()
        if not y.any():
            continue
        matrices.append(candidate_features(query.evidence, names))
        labels.append(y)
        groups.append(query.group)
    if not matrices:
        raise ConfigError("no answerable question found its expected item among the candidates: nothing to learn from")
    per_group: dict[str, int] = {}
    for group in groups:
        per_group[group] = per_group.get(group, 0) + 1
    weights = [
        np.full(len(y), (1.0 / per_group[g] if balance_groups else 1.0) / max(1.0, y.sum())) for y, g in zip(labels, groups)
    ]
    weights = np.concatenate(weights)
    return np.vstack(matrices), np.concatenate(labels), weights * (len(weights) / weights.sum())


def fit_models(
    queries: Sequence[TrainingQuery],
    *,
    rerank: bool = False,
    answer_rate: float = 0.95,
    info: Mapping[str, Any] | None = None,
    fallback: LinearModel | None = None,
) -> tuple[FusionModels, list[float], list[float]]:
    """Fit the candidate model on the answerable queries, then (with must-refuse queries) the
    answerable model and its thresholds. Returns the models and the answerable probabilities of
    the answerable and must-refuse queries (out of fold, for the plot).

    The fitted candidate model is kept only if, fit without them, it puts more of the answerable
    queries' items first than ``fallback`` (default: the shipped default) does; otherwise the
    fallback ranks and only the answerable model is new (too few or too easy examples).

    Must-refuse queries weigh as much in total as the answerable ones, shared equally between
    the user's own and the generic ones (:data:`GENERIC_GROUP`): a few topic-adjacent questions
    are not drowned by hundreds of everyday ones."""
    from bot.evaluate import choose_thresholds

    names = RELATIVE_FEATURES + RAW_FEATURES + (RERANK_FEATURES if rerank else ())
    fusion = _fit_fusion(queries, names)
    answerable_queries = [q for q in queries if q.expected]
    refuse = [q for q in queries if not q.expected]
    fold_models = _fold_models(answerable_queries, names, fusion)
    fallback = fallback or default_models().fusion
    fitted_first = sum(_first_is_expected(fold_models[i % FOLDS], q) for i, q in enumerate(answerable_queries))
    fallback_first = sum(_first_is_expected(FusionModels(fusion=fallback), q) for q in answerable_queries)
    info = {
        **(info or {}),
        "questions": len(answerable_queries),
        "refuse_questions": len(refuse),
        "first_hits": {"fitted_out_of_fold": fitted_first, "default": fallback_first},
    }
    if fitted_first <= fallback_first:
        fusion = fallback
        fold_models = [FusionModels(fusion=fallback)] * FOLDS
        info["ranking"] = "default (the fitted ranking did no better out of fold)"
    if not refuse:
        return FusionModels(fusion=fusion, info=info), [], []
    query_names = QUERY_FEATURES + (("top.rerank",) if rerank else ())
    rows, targets, weights = [], [], []
    per_kind = {kind: sum(1 for q in refuse if (q.group == GENERIC_GROUP) == kind) for kind in (True, False)}
    kinds = sum(1 for n in per_kind.values() if n)
    for index, query in enumerate(answerable_queries + refuse):
        model = fold_models[index % FOLDS] if query.expected else FusionModels(fusion=fusion)
        ranked, logits = model.rank(query.evidence)
        rows.append(query_features(query.evidence, ranked, logits, query_names))
        targets.append(1.0 if query.expected else 0.0)
        if query.expected:
            weights.append(1.0)
        else:
            weights.append(len(answerable_queries) / kinds / per_kind[query.group == GENERIC_GROUP])
    matrix, target = np.vstack(rows), np.array(targets)
    answerable = fit_linear(matrix, target, query_names, weights=np.array(weights))
    probabilities = _sigmoid(answerable.logits(matrix))
    yes = [float(p) for p, t in zip(probabilities, targets) if t]
    no = [float(p) for p, t in zip(probabilities, targets) if not t]
    thresholds = choose_thresholds(yes, no, answer_rate=answer_rate)
    return FusionModels(fusion=fusion, answerable=answerable, thresholds=thresholds, info=info), yes, no


def _first_is_expected(models: FusionModels, query: TrainingQuery) -> bool:
    ranked, _ = models.rank(query.evidence)
    return bool(ranked) and bool(query.credited.get(ranked[0].id, frozenset()) & query.expected)


def _fit_fusion(queries: Sequence[TrainingQuery], names: Sequence[str]) -> LinearModel:
    matrix, labels, weights = fusion_rows(queries, names)
    return fit_linear(matrix, labels, names, weights=weights)


def _fold_models(answerable: Sequence[TrainingQuery], names: Sequence[str], whole: LinearModel) -> list[FusionModels]:
    """Per fold (query ``i`` is in fold ``i % FOLDS``), the candidate model fit on the other folds;
    the whole model where a fold's complement has nothing to learn from."""
    models = []
    for fold in range(FOLDS):
        rest = [q for i, q in enumerate(answerable) if i % FOLDS != fold]
        try:
            models.append(FusionModels(fusion=_fit_fusion(rest, names)))
        except ConfigError:
            models.append(FusionModels(fusion=whole))
    return models


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


# ---------------------------------------------------------------- storage


def encoder_signature(settings: Settings) -> dict[str, str]:
    """What makes the route scores: the dense and sparse encoders (raw scores depend on them)."""
    embedding = settings.embedding
    return {
        "dense": embedding.dense_backend + (f":{Path(embedding.dense_model_path).name}" if embedding.dense_model_path else ""),
        "sparse": embedding.sparse_backend,
    }


def model_path(settings: Settings, collection: str) -> Path:
    """Where the models fit for ``collection`` are kept: ``.bot/fusion/<collection>.json``."""
    return settings.data_dir / "fusion" / f"{collection}.json"


def save_models(models: FusionModels, path: Path) -> Path:
    """Write ``models`` as JSON (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(models.as_dict(), ensure_ascii=False, indent=1), "utf-8")
    partial.replace(path)
    return path


def default_models() -> FusionModels:
    """The shipped default: relative features only, fit on several public sets (bench/fusion_eval.py)."""
    text = resources.files("bot.data").joinpath(DEFAULT_MODEL_FILE).read_text("utf-8")
    return FusionModels.from_dict(json.loads(text), default=True)


def load_models(settings: Settings, collection: str, *, rerank: bool = False) -> FusionModels:
    """The models ``bot calibrate`` fit for ``collection``; the default when there are none, or
    (with a logged warning) when they were fit for other encoders or another collection, need a
    reranker that is not configured, or cannot be read."""
    path = model_path(settings, collection)
    if not path.is_file():
        return default_models()
    try:
        models = FusionModels.from_dict(json.loads(path.read_text("utf-8")))
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        log.warning("fusion model %s cannot be read (%s); using the default fusion. Run `bot calibrate` again.", path.name, exc)
        return default_models()
    problem = _mismatch(models, settings, collection, rerank=rerank)
    if problem:
        log.warning("fusion model %s was %s; using the default fusion. Run `bot calibrate` again.", path.name, problem)
        return default_models()
    return models


def _mismatch(models: FusionModels, settings: Settings, collection: str, *, rerank: bool) -> str:
    if models.info.get("collection") != collection:
        return f"fit for collection {models.info.get('collection')!r}, not {collection!r}"
    if models.info.get("encoders") != encoder_signature(settings):
        return f"fit with encoders {models.info.get('encoders')}, not {encoder_signature(settings)}"
    if models.uses_rerank and not rerank:
        return "fit with a reranker's scores, and no reranker is configured"
    return ""


def fit_info(settings: Settings, collection: str, **extra: Any) -> dict[str, Any]:
    """What a fitted model records: the date, the collection and the encoders."""
    return {"fitted": date.today().isoformat(), "collection": collection, "encoders": encoder_signature(settings), **extra}
