"""Calibration: thresholds into ``bot.yml``, the learned fusion and refusal models, the plot.

Training examples for the models (:func:`fit_for_engine`) are labelled questions: the user's
queries files (``bot traces export`` writes one), the LLM-written questions of ``bot enhance``'s
review file that were *not* approved into the index (:func:`enhanced_questions`, labelled with
their own item), and a generic zh + en off-topic set shipped with the package
(:func:`generic_refuse`) as must-refuse examples.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Collection, Mapping, Sequence

from ruamel.yaml import YAML
from tqdm import tqdm

from bot.config import Thresholds
from bot.evaluate import LabelledQuery
from bot.fusion import GENERIC_GROUP, FusionModels, TrainingQuery, fit_info, fit_models

__all__ = ["write_thresholds", "plot_scores", "enhanced_questions", "generic_refuse", "fit_for_engine"]

GENERIC_REFUSE_FILE = "offtopic.jsonl"


def write_thresholds(config_file: Path, signal: str, thresholds: Thresholds) -> None:
    """Set ``decision.thresholds.<signal>`` in ``config_file``, keeping its comments and order."""
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(config_file.read_text("utf-8")) if config_file.exists() else None
    data = data if data is not None else {}
    decision = data.setdefault("decision", {})
    table = decision.setdefault("thresholds", {})
    table[signal] = {
        "answer": float(thresholds.answer),
        "caution": float(thresholds.caution),
        "sources": float(thresholds.sources),
    }
    with config_file.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)


def plot_scores(
    answerable: Sequence[float],
    refuse: Sequence[float],
    thresholds: Thresholds,
    path: Path,
    *,
    signal: str,
    title: str = "",
) -> Path:
    """Save a PNG of both score distributions with the three thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = list(answerable) + list(refuse)
    low, high = min(scores), max(scores)
    bins = [low + (high - low) * i / 40 for i in range(41)] if high > low else 10
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    axes.hist(answerable, bins=bins, alpha=0.6, color="tab:green", label=f"answerable (n={len(answerable)})")
    if refuse:
        axes.hist(refuse, bins=bins, alpha=0.6, color="tab:red", label=f"must refuse (n={len(refuse)})")
    for name, value, style in (
        ("answer", thresholds.answer, "-"),
        ("caution", thresholds.caution, "--"),
        ("sources", thresholds.sources, ":"),
    ):
        axes.axvline(value, color="black", linestyle=style, label=f"{name} = {value:.4f}")
    axes.set_xlabel(f"relevance signal: {signal}")
    axes.set_ylabel("questions")
    axes.set_title(title or "Score distributions and refusal thresholds")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def enhanced_questions(path: Path | None, item_ids: Collection[str]) -> list[LabelledQuery]:
    """The questions of a ``bot enhance`` review file as answerable examples of their own item.

    Approved entries are skipped: ``bot ingest`` put them on the question side, and a model fit
    on questions its index already holds would learn that the question side always matches.
    Entries for items ``item_ids`` does not hold (another knowledge) and unreadable lines too."""
    if path is None or not Path(path).is_file():
        return []
    found = []
    for line in Path(path).read_text("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or entry.get("approved") is True or entry.get("item_id") not in item_ids:
            continue
        questions = entry.get("questions")
        for question in questions if isinstance(questions, list) else ():
            if isinstance(question, str) and question.strip():
                found.append(LabelledQuery(question.strip(), (entry["item_id"],)))
    return found


def generic_refuse() -> list[LabelledQuery]:
    """Everyday questions no knowledge base of a product answers (weather, cooking, sports,
    homework, travel, coding, ...), 150+ in Chinese and 150+ in English: must-refuse examples."""
    text = resources.files("bot.data").joinpath(GENERIC_REFUSE_FILE).read_text("utf-8")
    return [LabelledQuery(json.loads(line)["query"], ()) for line in text.splitlines() if line.strip()]


def is_generic(query: LabelledQuery, generic: Collection[str]) -> bool:
    """Whether ``query`` is one of the shipped generic must-refuse questions."""
    return not query.answerable and query.query in generic


def fit_for_engine(
    engine,
    queries: Sequence[LabelledQuery],
    *,
    identical: Mapping[str, frozenset[str]],
    answer_rate: float = 0.95,
    progress: bool = True,
    **info,
) -> tuple[FusionModels, list[float], list[float]]:
    """Fit the fusion and answerable models on ``queries`` run through ``engine``'s routes.
    Returns the models and the answerable probabilities of the answerable and must-refuse ones."""
    retriever = engine.retriever
    rerank = retriever.reranker is not None
    generic = {q.query for q in generic_refuse()}
    training = []
    for labelled in tqdm(queries, desc="calibrating", unit="query", disable=not progress):
        evidence = retriever.evidence(labelled.query, with_rerank=rerank)
        credited = {}
        for candidate in evidence.candidates:
            payload = candidate.payload or {}
            ids = frozenset(i for i in (payload.get("item_id", candidate.id), payload.get("doc", "")) if i)
            credited[candidate.id] = ids.union(*(identical[i] for i in ids if i in identical))
        group = GENERIC_GROUP if is_generic(labelled, generic) else ""
        training.append(TrainingQuery(evidence, frozenset(labelled.expected), credited, group))
    rerank = rerank and any(t.evidence.rerank for t in training)
    return fit_models(
        training,
        rerank=rerank,
        answer_rate=answer_rate,
        info=fit_info(engine.settings, engine.collection, **info),
    )
