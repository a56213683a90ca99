"""An answer evaluation as people and programs read it: a terminal table, one JSON line per
question, and a self-contained HTML page (no scripts, no outside resources; everything escaped).

    print(summary_table(report.summary()))
    write_outputs(report, Path(".bot/answer-eval"))   # summary.json, answers.jsonl, report.html
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.answer_eval.run import AnswerReport

__all__ = ["summary_table", "write_outputs", "html_report", "ROWS"]

#: The summary's rows as the table and the page show them: key, label, kind.
ROWS = (
    ("n", "questions", "count"),
    ("n_answerable", "answerable", "count"),
    ("n_refuse", "must refuse", "count"),
    ("answered_rate", "answered (of answerable)", "rate"),
    ("declined_rate", "LLM declined (of answerable)", "rate"),
    ("refused_rate", "not answered (of must-refuse)", "rate"),
    ("containment", "reference contained (answered)", "rate"),
    ("f1", "token F1 (answered)", "rate"),
    ("facts_all", "all required facts (answered)", "rate"),
    ("facts_share", "required facts stated (answered)", "rate"),
    ("cites_expected", "cites an expected item (answered)", "rate"),
    ("grounded", "grounded in cited passages (answered)", "rate"),
    ("correct", "automatic verdict correct (answered)", "rate"),
    ("judged", "judged answers", "count"),
    ("judge_correct", "judge: correct (answered)", "rate"),
    ("judge_agreement", "judge agrees with automatic verdict", "rate"),
    ("latency_p50", "latency p50 (s)", "seconds"),
    ("latency_p95", "latency p95 (s)", "seconds"),
    ("first_token_p50", "first token p50 (s)", "seconds"),
    ("prompt_tokens_mean", "prompt tokens (mean)", "tokens"),
    ("completion_tokens_mean", "completion tokens (mean)", "tokens"),
    ("errors", "LLM errors", "count"),
)

_TEMPLATES = Path(__file__).parent / "templates"


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        return f"{value:.3f}"
    if kind == "seconds":
        return f"{value:.2f}"
    if kind == "tokens":
        return f"{value:.0f}"
    return str(value)


def summary_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as aligned text: one column per set ("all" first)."""
    names = list(summary)
    width = max(len(label) for _, label, _ in ROWS) + 2
    columns = [max(9, len(name) + 2) for name in names]
    lines = ["".ljust(width) + "".join(name.rjust(w) for name, w in zip(names, columns))]
    for key, label, kind in ROWS:
        cells = [_cell(summary[name].get(key), kind) for name in names]
        if all(cell == "-" for cell in cells):
            continue
        lines.append(label.ljust(width) + "".join(cell.rjust(w) for cell, w in zip(cells, columns)))
    outcomes = summary["all"]["outcomes"]
    lines.append("outcomes: " + ", ".join(f"{name} {count}" for name, count in outcomes.items()))
    return "\n".join(lines)


def html_report(report: AnswerReport, *, title: str = "Answer evaluation") -> str:
    """The whole evaluation as one HTML page: the summary, then every question with its answer,
    cited passages and verdicts."""
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    env.filters["cell"] = _cell
    summary = report.summary()
    return env.get_template("report.html").render(
        title=title,
        model=report.model,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summary=summary,
        rows=[row for row in ROWS if any(summary[name].get(row[0]) is not None for name in summary)],
        results=report.results,
    )


def write_outputs(report: AnswerReport, folder: Path) -> dict[str, Path]:
    """Write ``summary.json``, ``answers.jsonl`` (one question a line) and ``report.html``
    into ``folder``; returns their paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"summary": folder / "summary.json", "jsonl": folder / "answers.jsonl", "html": folder / "report.html"}
    summary = {"model": report.model, "sets": report.summary()}
    paths["summary"].write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", "utf-8")
    paths["jsonl"].write_text(
        "".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in report.results), "utf-8"
    )
    paths["html"].write_text(html_report(report), "utf-8")
    return paths
