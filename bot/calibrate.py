"""Write calibrated thresholds into ``bot.yml`` and draw the score distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ruamel.yaml import YAML

from bot.config import Thresholds

__all__ = ["write_thresholds", "plot_scores"]


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
