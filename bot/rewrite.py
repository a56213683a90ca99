"""Query rewriting: a follow-up question made explicit from the dialogue history.

The rewritten question drives retrieval; the user's own question is what the LLM answers.
Without history, or for a question that does not refer back (``generation.rewrite: referring``),
nothing is called. When the LLM fails, or its question still refers back ("its battery",
"它的电池", "And ...?") as small models' often do, retrieval gets the previous question and
this one together instead.

    rewriter = QueryRewriter(client, prompts, history_turns=3)
    await rewriter.rewrite("它多少钱？", history=[{"role": "user", "content": "云序智能笔是什么？"}, ...])
    # "云序智能笔多少钱？"
"""

from __future__ import annotations

import logging
import re
from typing import Mapping, Sequence

from bot.errors import LLMError
from bot.lang import detect_language
from bot.llm.client import LLMClient
from bot.llm.prompts import Prompts

__all__ = ["QueryRewriter", "recent_history"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_CHARS = 300  # long answers in the history are cut: the rewriter needs their subject

#: Words that make a question depend on the one before: pronouns, and openings like "And ...".
_REFERS_BACK = re.compile(
    r"\b(it|its|they|them|their)\b|^\s*(and|what about|how about)\b"
    r"|它|它们|这个|那个|该产品|^\s*(那|那么|还有|另外)",
    re.IGNORECASE,
)


def recent_history(history: Sequence[Mapping[str, str]], turns: int) -> list[dict[str, str]]:
    """The last ``turns`` user/assistant pairs, each message cut to a few hundred characters."""
    messages = [
        {"role": m["role"], "content": m["content"][:_MAX_MESSAGE_CHARS]}
        for m in history
        if m.get("role") in ("user", "assistant") and m.get("content")
    ]
    return messages[-2 * turns :] if turns > 0 else []


class QueryRewriter:
    """Rewrites follow-up questions with the LLM."""

    def __init__(
        self,
        client: LLMClient,
        prompts: Prompts,
        *,
        history_turns: int = 3,
        max_tokens: int = 96,
        when: str = "referring",
    ):
        self.client, self.prompts = client, prompts
        self.history_turns, self.max_tokens = history_turns, max_tokens
        self.when = when  # "referring": only questions that refer back (see refers_back) | "always"

    async def rewrite(self, question: str, history: Sequence[Mapping[str, str]] = ()) -> str:
        """The standalone form of ``question``: itself without history, or when it does not refer
        back and ``when`` is "referring"; the previous question joined to it when the LLM fails
        or leaves the reference in place."""
        recent = recent_history(history, self.history_turns)
        if not recent or (self.when == "referring" and not refers_back(question)):
            return question
        prompt = self.prompts.chat("rewrite", detect_language(question), question=question, history=recent)
        try:
            completion = await self.client.acomplete(prompt.messages, max_tokens=self.max_tokens)
            rewritten = _first_line(completion.text)
        except LLMError as exc:
            log.warning("query rewrite skipped: %s", exc)
            rewritten = question
        if not rewritten or len(rewritten) > 2 * len(question) + 40:  # empty, or an answer/instructions
            rewritten = question
        previous = [m["content"] for m in recent if m["role"] == "user"]
        if previous and refers_back(rewritten):  # the LLM left the reference in place
            return f"{previous[-1]} {rewritten}"
        return rewritten


def refers_back(question: str) -> bool:
    """Whether ``question`` leans on the conversation (a pronoun, or an opening like "And ...")."""
    return bool(_REFERS_BACK.search(question))


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip('"“”').strip()
        for prefix in ("Rewritten question:", "Standalone question:", "改写后的问题：", "追问："):
            line = line.removeprefix(prefix).strip()
        if line:
            return line
    return ""
