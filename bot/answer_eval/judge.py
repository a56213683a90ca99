"""An LLM as judge: asks a second model whether each answer agrees with its references.

The judge is any OpenAI-compatible server configured as ``judge`` in ``endpoints.yml`` (off
unless ``bot eval --answers --judge``); the rubric is the ``judge`` prompt template
(``bot/prompts/judge.en.j2``, overridable from ``generation.prompts_dir``). Its verdicts are
reported beside the automatic ones, with how often the two agree.

    judge = Judge(LLMClient.from_settings(settings.judge), Prompts())
    await judge.grade_all(report.results, workers=4)
"""

from __future__ import annotations

import asyncio
import re
from typing import Sequence

from bot.answer_eval.run import QuestionResult
from bot.config import Settings
from bot.errors import ConfigError, LLMError
from bot.llm.client import LLMClient
from bot.llm.prompts import Prompts

__all__ = ["Judge", "parse_verdict", "judge_client"]

_VERDICT = re.compile(r"verdict\s*[:：]\s*\**\s*(incorrect|correct)", re.IGNORECASE)
_REASON = re.compile(r"reason\s*[:：]\s*(.+)", re.IGNORECASE)
_MAX_TOKENS = 96


def judge_client(settings: Settings) -> LLMClient:
    """A client for ``endpoints.yml``'s ``judge``; a ConfigError says how to set it when absent."""
    if not settings.judge.url:
        raise ConfigError(
            "no judge configured: add to endpoints.yml\n  judge:\n    url: http://HOST:PORT/v1\n    model: NAME\n"
            "(any OpenAI-compatible server), or leave out --judge"
        )
    return LLMClient.from_settings(settings.judge)


def parse_verdict(reply: str) -> dict | None:
    """``{"correct": bool, "reason": str}`` from the judge's reply; None when it gave no verdict."""
    match = _VERDICT.search(reply)
    if match is None:
        return None
    reason = _REASON.search(reply)
    return {"correct": match.group(1).lower() == "correct", "reason": reason.group(1).strip() if reason else ""}


class Judge:
    """Grades answered questions with the rubric; results keep their verdicts in ``judge``."""

    def __init__(self, client: LLMClient, prompts: Prompts):
        self.client, self.prompts = client, prompts
        self.unparsed = 0  # replies without a verdict
        self.failed = 0  # requests that failed

    async def grade(self, result: QuestionResult) -> dict | None:
        """The judge's verdict on one answer (None: it failed or gave none)."""
        prompt = self.prompts.chat(
            "judge", "en", question=result.query, references=result.references, answer=result.answer,
            facts=[fact if isinstance(fact, str) else " / ".join(fact) for fact in result.must_include],
        )  # fmt: skip
        try:
            reply = await self.client.acomplete(prompt.messages, max_tokens=_MAX_TOKENS, temperature=0.0)
        except LLMError:
            self.failed += 1
            return None
        verdict = parse_verdict(reply.text)
        self.unparsed += verdict is None
        return verdict

    async def grade_all(self, results: Sequence[QuestionResult], *, workers: int = 4) -> None:
        """Grade every answered question with references or facts, ``workers`` at a time."""
        gate = asyncio.Semaphore(workers)

        async def one(result: QuestionResult) -> None:
            async with gate:
                result.judge = await self.grade(result)

        await asyncio.gather(*(one(r) for r in results if r.auto_correct is not None))
