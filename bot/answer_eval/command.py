"""``bot eval --answers`` on the command line: run the evaluation, print the table (or JSON),
write the report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import click

from bot.answer_eval import evaluate_answers, summary_table, write_outputs
from bot.config import load_settings

__all__ = ["run_answer_eval"]


def run_answer_eval(
    root: Path | None,
    knowledge: Path,
    queries: Sequence[Path],
    *,
    as_json: bool,
    workers: int,
    limit: int | None,
    seed: int,
    output: Path | None,
    judge: bool,
    rebuild: bool = False,
    fusion: str | None = None,
) -> None:
    """Evaluate the answers, write ``output`` (default ``.bot/answer-eval``) and print the summary."""
    if fusion:
        raise click.UsageError("--fusion applies to retrieval evaluation; with --answers, set retrieval.fusion in bot.yml")
    settings = load_settings(root)
    report = evaluate_answers(
        settings, knowledge, queries, workers=workers, limit=limit, seed=seed, judge=judge, rebuild=rebuild,
        progress=not as_json, announce=lambda message: click.echo(message, err=True),
    )  # fmt: skip
    paths = write_outputs(report, output or settings.data_dir / "answer-eval")
    summary = report.summary()
    if as_json:
        click.echo(json.dumps({"model": report.model, "sets": summary, "files": {k: str(v) for k, v in paths.items()}},
                              ensure_ascii=False))  # fmt: skip
        return
    click.echo(f"model: {report.model}")
    click.echo(summary_table(summary))
    click.echo(f"report: {paths['html']}\nper question: {paths['jsonl']}")
