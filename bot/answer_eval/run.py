"""Answer every labelled question through the real path and score what the user would read.

Each question goes through :meth:`Engine.answer_async` (rewrite, retrieve, decide, generate,
the output check), ``workers`` at a time (vLLM batches concurrent requests). Each answer is
scored against its references (:mod:`bot.answer_eval.metrics`), its citations against the
expected items, and what it asserts against the passages it cites (:mod:`.grounded`).

    report = answer_questions(engine, questions, evidence=evidence_of(chunks), workers=4)
    report.summary()["all"]["answered_rate"]
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from tqdm import tqdm

from bot.answer_eval.dataset import AnswerQuery
from bot.answer_eval.grounded import Evidence, unsupported_claims
from bot.answer_eval.metrics import contains, facts_found, token_f1
from bot.errors import BotError
from bot.percentile import nearest_rank

__all__ = ["QuestionResult", "AnswerReport", "answer_questions", "evidence_of", "OUTCOMES"]

#: What a question got: an answer from the LLM, the LLM's "the passages do not say", the best
#: sources without an answer, a refusal, or an error (the LLM failed: sources shown instead).
OUTCOMES = ("answered", "declined", "sources_only", "refused", "error")


@dataclass
class QuestionResult:
    """One question's answer and its verdicts (None: not applicable, e.g. no reference given)."""

    set_name: str
    query: str
    expected: list[str]
    references: list[str]
    must_include: list[Any]
    outcome: str = "error"
    level: str = ""
    answer: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    cited_passages: list[dict[str, str]] = field(default_factory=list)  # number, title, text
    contains: bool | None = None
    f1: float | None = None
    facts: list[bool] = field(default_factory=list)
    cites_expected: bool | None = None
    grounded: bool | None = None
    unsupported: list[str] = field(default_factory=list)
    seconds: float | None = None
    first_token: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str = ""
    judge: dict[str, Any] | None = None  # {"correct": bool, "reason": str} from the LLM judge

    @property
    def answerable(self) -> bool:
        return bool(self.expected or self.references or self.must_include)

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    @property
    def outcome_ok(self) -> bool:
        """Answered when answerable; anything but an answer when it must be refused."""
        return self.answered == self.answerable

    @property
    def auto_correct(self) -> bool | None:
        """The automatic verdict on an answer: it holds a reference and states every required fact."""
        if not self.answered or not (self.references or self.must_include):
            return None
        return (self.contains is not False) and all(self.facts)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "answerable": self.answerable, "outcome_ok": self.outcome_ok,
                "auto_correct": self.auto_correct}  # fmt: skip


@dataclass
class AnswerReport:
    """Every question's result, in input order; :meth:`summary` aggregates per set and overall."""

    results: list[QuestionResult]
    model: str = ""

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{"all": {...}, "<set>": {...}}``, each from :func:`summarize`."""
        sets: dict[str, list[QuestionResult]] = {}
        for result in self.results:
            sets.setdefault(result.set_name, []).append(result)
        out = {"all": summarize(self.results)}
        if len(sets) > 1:
            out.update({name: summarize(rows) for name, rows in sets.items()})
        return out


def summarize(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Rates over a set: outcomes against what was expected, then the quality of the answers
    given to answerable questions (containment, F1, facts, citations, groundedness), latency
    and tokens, and the judge's verdicts and agreement when it ran."""
    answerable = [r for r in results if r.answerable]
    refuse = [r for r in results if not r.answerable]
    answered = [r for r in answerable if r.answered]
    with_refs = [r for r in answered if r.references]
    with_facts = [r for r in answered if r.must_include]
    with_expected = [r for r in answered if r.expected]
    seconds = sorted(r.seconds for r in results if r.seconds is not None)
    first = [r.first_token for r in results if r.first_token is not None]
    judged = [r for r in answered if r.judge is not None]
    agreeing = [r for r in judged if r.auto_correct is not None]
    return {
        "n": len(results),
        "n_answerable": len(answerable),
        "n_refuse": len(refuse),
        "outcomes": {name: sum(r.outcome == name for r in results) for name in OUTCOMES},
        "answered_rate": _rate(len(answered), len(answerable)),
        "declined_rate": _rate(sum(r.outcome == "declined" for r in answerable), len(answerable)),
        "refused_rate": _rate(sum(not r.answered for r in refuse), len(refuse)),
        "containment": _rate(sum(bool(r.contains) for r in with_refs), len(with_refs)),
        "f1": _mean([r.f1 for r in with_refs]),
        "facts_all": _rate(sum(all(r.facts) for r in with_facts), len(with_facts)),
        "facts_share": _rate(sum(sum(r.facts) for r in with_facts), sum(len(r.facts) for r in with_facts)),
        "cites_expected": _rate(sum(bool(r.cites_expected) for r in with_expected), len(with_expected)),
        "grounded": _rate(sum(bool(r.grounded) for r in answered), len(answered)),
        "correct": _rate(sum(bool(r.auto_correct) for r in answered), len(answered)),
        "latency_p50": _percentile(seconds, 50),
        "latency_p95": _percentile(seconds, 95),
        "first_token_p50": _percentile(first, 50),
        "prompt_tokens_mean": _mean([r.prompt_tokens for r in results if r.prompt_tokens is not None]),
        "completion_tokens_mean": _mean([r.completion_tokens for r in results if r.completion_tokens is not None]),
        "judged": len(judged) if judged else None,
        "judge_correct": _rate(sum(bool(r.judge["correct"]) for r in judged), len(judged)) if judged else None,
        "judge_agreement": (
            _rate(sum(r.judge["correct"] == r.auto_correct for r in agreeing), len(agreeing)) if agreeing else None
        ),
        "errors": sum(r.outcome == "error" for r in results),
    }


def evidence_of(chunks: Iterable) -> dict[str, Evidence]:
    """What each item says (heading and text, product metadata), by item id: the evidence a
    citation of that item stands for."""
    evidence = {}
    for chunk in chunks:
        text = f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
        evidence[chunk.item_id] = Evidence(text, str((chunk.metadata or {}).get("product") or ""))
    return evidence


def answer_questions(
    engine,
    questions: Sequence[AnswerQuery],
    *,
    evidence: Mapping[str, Evidence],
    workers: int = 4,
    progress: bool = True,
) -> AnswerReport:
    """Answer and score every question, ``workers`` at a time; results keep the input order."""

    async def run_all() -> list[QuestionResult]:
        gate = asyncio.Semaphore(workers)
        bar = tqdm(total=len(questions), desc="answering", unit="question", disable=not progress)

        async def one(question: AnswerQuery) -> QuestionResult:
            async with gate:
                result = await _answer_one(engine, question, evidence)
            bar.update()
            return result

        try:
            return list(await asyncio.gather(*(one(q) for q in questions)))
        finally:
            bar.close()

    results = engine.run(run_all())
    return AnswerReport(results, model=engine.llm.model)


async def _answer_one(engine, question: AnswerQuery, evidence: Mapping[str, Evidence]) -> QuestionResult:
    result = QuestionResult(
        question.set_name, question.query, list(question.expected), list(question.references),
        [list(f) if not isinstance(f, str) else f for f in question.must_include],
    )  # fmt: skip
    try:
        answer = await engine.answer_async(question.query)
    except BotError as exc:  # e.g. a prompt template that cannot be rendered
        result.error = str(exc)
        return result
    result.level, result.answer, result.error = answer.level.value, answer.text, answer.error
    result.outcome = _outcome(answer)
    result.citations = [c.as_dict() for c in answer.citations]
    cited = [evidence[c.item_id] for c in answer.citations if c.item_id in evidence]
    result.cited_passages = [
        {"number": str(c.number), "title": c.title, "text": evidence[c.item_id].text if c.item_id in evidence else ""}
        for c in answer.citations
    ]
    timings = answer.timings
    result.seconds, result.first_token = timings.get("total"), timings.get("llm_first_token")
    result.prompt_tokens, result.completion_tokens = answer.prompt_tokens, answer.completion_tokens
    if result.answered:
        if question.references:
            result.contains = contains(answer.text, question.references)
            result.f1 = round(token_f1(answer.text, question.references), 4)
        result.facts = facts_found(answer.text, question.must_include)
        if question.expected:
            wanted = set(question.expected)
            result.cites_expected = any({c.item_id, c.doc} & wanted for c in answer.citations)
        result.unsupported = unsupported_claims(answer.text, cited)
        result.grounded = not result.unsupported
    return result


def _outcome(answer) -> str:
    if answer.error:
        return "error"
    if answer.level.value == "refuse":
        return "refused"
    if answer.level.value == "sources_only":
        return "sources_only"
    return "declined" if answer.declined else "answered"


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def _mean(values: list) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _percentile(values: list[float], percent: int) -> float | None:
    value = nearest_rank(values, percent)
    return None if value is None else round(value, 3)
