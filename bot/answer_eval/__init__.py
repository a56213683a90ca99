"""``bot eval --answers``: generate answers to labelled questions through the real path and
measure what users would read: answered / declined / refused against what was expected,
reference containment and token F1, required facts, citations of the expected items,
groundedness in the cited passages, latency and tokens; optionally an LLM judge.

    report = evaluate_answers(settings, Path("knowledge"), [Path("bench/answers/demo.jsonl")], workers=4)
    print(summary_table(report.summary()))
    write_outputs(report, Path(".bot/answer-eval"))
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from bot.answer_eval.dataset import AnswerQuery, read_answer_queries, sample
from bot.answer_eval.judge import Judge, judge_client, parse_verdict
from bot.answer_eval.report import html_report, summary_table, write_outputs
from bot.answer_eval.run import AnswerReport, QuestionResult, answer_questions, evidence_of, summarize
from bot.config import Settings

__all__ = [
    "AnswerQuery",
    "AnswerReport",
    "QuestionResult",
    "Judge",
    "read_answer_queries",
    "sample",
    "answer_questions",
    "evidence_of",
    "summarize",
    "parse_verdict",
    "summary_table",
    "html_report",
    "write_outputs",
    "evaluate_answers",
]


def evaluate_answers(
    settings: Settings,
    knowledge: Path,
    queries: Sequence[Path],
    *,
    workers: int = 4,
    limit: int | None = None,
    seed: int = 13,
    judge: bool = False,
    rebuild: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] = lambda message: None,
) -> AnswerReport:
    """Ingest ``knowledge`` into a collection of its own, answer the questions of ``queries``
    (a sample of ``limit`` drawn with ``seed``; ``rebuild`` re-embeds the knowledge) with the configured LLM (or the local demo
    server, started if needed) and score them; with ``judge``, grade the answers with the
    ``judge`` endpoint too. Nothing is traced (the turns are not users')."""
    from bot.engine import Engine
    from bot.evaluate import eval_collection_name
    from bot.llm.server import llm_endpoint

    skipped: list[str] = []
    questions = sample(read_answer_queries(queries, skipped), limit, seed=seed)
    if skipped:
        announce(f"left out {len(skipped)} record(s) with an empty query: {', '.join(skipped[:5])}")
    settings = replace(settings, traces=replace(settings.traces, enabled=False))
    grader = judge_client(settings) if judge else None  # a missing judge fails before the slow part
    with llm_endpoint(settings, announce) as url, Engine(
        settings, collection=eval_collection_name(knowledge), llm_url=url
    ) as engine:
        ingested = engine.ingest([knowledge], rebuild=rebuild, progress=progress)
        announce(ingested.summary())
        evidence = evidence_of(chunk for chunks in engine.iter_chunks([knowledge]) for chunk in chunks)
        report = answer_questions(engine, questions, evidence=evidence, workers=workers, progress=progress)
        if grader is not None:
            try:
                engine.run(Judge(grader, engine.prompts).grade_all(report.results, workers=workers))
            finally:
                engine.run(grader.aclose())
    return report
