"""Questions with reference answers, read from queries JSONL.

One JSON object a line: ``query``; ``expected``, the item ids that answer it (an empty list:
it must be refused); and any of ``answers`` (reference spans or texts, e.g. CMRC2018's),
``answer`` (one reference text) and ``must_include`` (facts the answer must state, each a
text or a list of acceptable alternatives). Each file is one set in the report.

    questions = read_answer_queries([Path("bench/answers/demo.jsonl")])
    sample(questions, 100, seed=13)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from bot.answer_eval.metrics import Fact
from bot.errors import ConfigError

__all__ = ["AnswerQuery", "read_answer_queries", "sample"]


@dataclass(frozen=True)
class AnswerQuery:
    """A question, the items that answer it, its reference answers and required facts."""

    query: str
    expected: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    must_include: tuple[Fact, ...] = ()
    set_name: str = ""

    @property
    def answerable(self) -> bool:
        """False when the question must be refused (``expected`` is empty and no reference given)."""
        return bool(self.expected or self.references or self.must_include)


def read_answer_queries(paths: Iterable[Path], skipped: list[str] | None = None) -> list[AnswerQuery]:
    """Every question of the files, in order; a malformed line is a ConfigError naming it. A
    record whose query is empty (public sets have some) is left out and named in ``skipped``."""
    questions = []
    for path in paths:
        path = Path(path)
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            question = _parse(line, f"{path.name}:{number}", path.stem)
            if question.query:
                questions.append(question)
            elif skipped is not None:
                skipped.append(f"{path.name}:{number}")
    if not questions:
        raise ConfigError("no questions in the queries files")
    return questions


def sample(questions: Sequence[AnswerQuery], limit: int | None, *, seed: int) -> list[AnswerQuery]:
    """``limit`` questions drawn with ``seed`` (kept in file order), or all of them."""
    if limit is None or limit >= len(questions):
        return list(questions)
    chosen = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in chosen]


def _parse(line: str, where: str, set_name: str) -> AnswerQuery:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("query"), str):
        raise ConfigError(f'{where}: a question needs "query" (text)')
    references = list(_texts(record.get("answers"), where, "answers"))
    if record.get("answer") is not None:
        references += _texts([record["answer"]], where, "answer")
    facts = []
    for fact in record.get("must_include") or []:
        if isinstance(fact, list) and fact and all(isinstance(a, str) and a for a in fact):
            facts.append(tuple(fact))
        elif isinstance(fact, str) and fact:
            facts.append(fact)
        else:
            raise ConfigError(f'{where}: each "must_include" fact is a text or a list of texts')
    return AnswerQuery(
        query=record["query"].strip(),
        expected=tuple(_texts(record.get("expected"), where, "expected")),
        references=tuple(references),
        must_include=tuple(facts),
        set_name=set_name,
    )


def _texts(value, where: str, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f'{where}: "{name}" must be a list of texts')
    return [item for item in value if item.strip()]
