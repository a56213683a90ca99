"""Where to put the FallbackClassifier threshold: intent confidences of correct and wrong
predictions, from k-fold cross-validation on the training data (`rasa test nlu
--cross-validation`; the held-out test set stays untouched).

A message under the threshold becomes nlu_fallback and goes to the knowledge action, which
answers or refuses (and gives the canned answer when NLU's best guess was a sensitive intent).
For each candidate threshold it prints how many correct predictions would fall back and how
many wrong ones would be caught, and plots both confidence distributions.

    .venv/bin/python bench/nlu_fallback.py [--folds 3] [--plot bench/out/nlu_fallback.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

THRESHOLDS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=Path("bench/out/nlu_fallback.png"))
    args = parser.parse_args()

    from bot.assistant import rasa_command, rasa_environment
    from bot.config import load_settings

    settings = load_settings()
    with tempfile.TemporaryDirectory() as out:
        command = rasa_command(
            "test", "nlu", "--nlu", "data/nlu", "--config", "config.yml", "--cross-validation",
            "--folds", str(args.folds), "--out", out, "--successes",
        )  # fmt: skip
        print(f"{args.folds}-fold cross-validation on data/nlu (trains {args.folds} models, a few minutes)...")
        subprocess.run(command, cwd=settings.root, env=rasa_environment(settings), check=True, capture_output=True)
        correct = [x["intent_prediction"]["confidence"] for x in json.loads(Path(out, "intent_successes.json").read_text())]
        wrong = [x["intent_prediction"]["confidence"] for x in json.loads(Path(out, "intent_errors.json").read_text())]
        macro_f1 = json.loads(Path(out, "intent_report.json").read_text())["macro avg"]["f1-score"]

    print(f"cross-validated intent macro-F1 {macro_f1:.3f}: {len(correct)} correct, {len(wrong)} wrong predictions")
    print(f"{'threshold':>9}  {'correct that fall back':>22}  {'wrong ones caught':>17}")
    for threshold in THRESHOLDS:
        lost = sum(c < threshold for c in correct)
        caught = sum(c < threshold for c in wrong)
        print(f"{threshold:>9.2f}  {lost:>6} ({lost / len(correct):6.1%})      {caught:>6} ({caught / len(wrong):6.1%})")
    _plot(correct, wrong, args.plot)
    print(f"plot: {args.plot}")


def _plot(correct: list[float], wrong: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4))
    bins = [i / 40 for i in range(41)]
    ax.hist(correct, bins=bins, alpha=0.6, color="tab:green", label=f"correct (n={len(correct)})")
    ax.hist(wrong, bins=bins, alpha=0.6, color="tab:red", label=f"wrong (n={len(wrong)})")
    ax.set_xlabel("intent confidence (cross-validated)")
    ax.set_ylabel("messages")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("NLU intent confidence: where the fallback threshold cuts")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
