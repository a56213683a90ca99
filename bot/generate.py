"""Grounded generation: the decision's level picks what happens, the LLM writes from passages.

- answer / cautious: the top passages, trimmed to the token budget, go into the ``answer`` or
  ``cautious`` prompt; with ``strategy: refine`` passages beyond one prompt are folded in by
  further ``refine`` calls. The answer streams; citations not among the passages are removed.
- sources_only: the best sources, no LLM call.
- refuse: a polite refusal that says what the bot can answer.
- The LLM unreachable or timing out: the sources-only answer with a plain notice.
- An answer asserting a number, amount, e-mail, URL, name or claim that no cited passage holds
  (the output guard, ``bot/guard/output.py``): the sources-only answer with a plain notice.

    generator = Generator(client, prompts, counter, settings.generation)
    async for event in generator.stream(question, retrieval, decision, language="en"):
        if isinstance(event, TextDelta): print(event.text, end="")
        else: answer = event.answer                      # AnswerDone, always last
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Union

from bot.citations import CitationFilter, attribute
from bot.config import GenerationSettings
from bot.decide import Decision, Level
from bot.errors import LLMError
from bot.guard import Evidence, GuardVerdict, OutputGuard
from bot.lang import shorten
from bot.llm.budget import TokenCounter
from bot.llm.client import LLMClient, StreamStats
from bot.llm.prompts import ChatPrompt, Prompts
from bot.retrieve import Hit, Retrieval

log = logging.getLogger(__name__)

__all__ = ["Passage", "Citation", "Answer", "TextDelta", "AnswerDone", "Event", "Generator"]

_EXCERPT_CHARS = 120
_MIN_TRIMMED_TOKENS = 48  # a passage cut shorter than this is left out instead
_PROMPT_MARGIN = 16  # tokens of chat-template markup around the messages


@dataclass(frozen=True)
class Passage:
    """A retrieved hit as shown to the LLM and the user, numbered from 1."""

    number: int
    heading: str
    text: str
    hit: Hit

    @property
    def link(self) -> str:
        """A URL for the source: the item's ``url``/``link`` metadata, else its source file path."""
        metadata = self.hit.payload.get("metadata") or {}
        return str(metadata.get("url") or metadata.get("link") or self.hit.source)

    @property
    def excerpt(self) -> str:
        return shorten(self.text, _EXCERPT_CHARS)


@dataclass(frozen=True)
class Citation:
    """A passage the answer cites: its number in the answer and where it comes from."""

    number: int
    title: str
    source: str
    link: str
    item_id: str
    doc: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Answer:
    """Everything about one answered turn; ``text`` is authoritative (channels show it last)."""

    question: str
    query: str  # what retrieval ran on (the rewritten question)
    language: str
    decision: Decision
    level: Level  # what the user got: the decision's level, or sources_only after an LLM failure
    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    sources: list[Citation] = field(default_factory=list)  # every passage offered (or shown)
    notice: str = ""  # e.g. the LLM was unavailable
    error: str = ""  # the LLM error behind a fallback
    declined: bool = False  # the LLM said the passages do not answer the question
    citations_inferred: bool = False  # the LLM cited nothing; markers added by text overlap
    widened: bool = False  # the scope (e.g. a product) found too little; retrieval ran without it
    guard: GuardVerdict | None = None  # a guard stopped the turn (canned response) or downgraded the answer
    turn_id: str = ""  # the turn's trace (bot traces show TURN_ID)
    model: str = ""
    prompt: ChatPrompt | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output and traces."""
        return {
            "question": self.question,
            "query": self.query,
            "language": self.language,
            "decision": self.decision.as_dict(),
            "level": self.level.value,
            "text": self.text,
            "citations": [c.as_dict() for c in self.citations],
            "sources": [c.as_dict() for c in self.sources],
            "notice": self.notice,
            "error": self.error,
            "declined": self.declined,
            "citations_inferred": self.citations_inferred,
            "widened": self.widened,
            "guard": self.guard.as_dict() if self.guard else None,
            "turn_id": self.turn_id,
            "model": self.model,
            "prompt": {"template": self.prompt.template, "messages": self.prompt.messages} if self.prompt else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "timings": self.timings,
        }


@dataclass(frozen=True)
class TextDelta:
    """A piece of answer text, in order."""

    text: str


@dataclass(frozen=True)
class AnswerDone:
    """The last event of a turn: the whole answer with citations and the decision."""

    answer: Answer


Event = Union[TextDelta, AnswerDone]


class Generator:
    """Turns a retrieval and its decision into an answer (streamed)."""

    def __init__(
        self,
        client: LLMClient,
        prompts: Prompts,
        counter: TokenCounter,
        settings: GenerationSettings,
        *,
        output_guard: OutputGuard | None = None,
    ):
        self.client, self.prompts, self.counter, self.settings = client, prompts, counter, settings
        self.output_guard = output_guard  # None: answers are not checked against their passages

    async def stream(
        self,
        question: str,
        retrieval: Retrieval,
        decision: Decision,
        *,
        language: str,
        query: str | None = None,
    ) -> AsyncIterator[Event]:
        """Text deltas, then one :class:`AnswerDone`."""
        answer = Answer(question, query or question, language, decision, decision.level)
        passages = self.passages(retrieval.hits[: self.settings.passages])
        if decision.level is Level.REFUSE:
            answer.text = self.prompts.text(
                "refuse",
                language,
                question=question,
                topics=self.prompts.message("topics", language),
                suggestions=[p.hit.question for p in passages if p.hit.question][:3],
            )
        elif decision.level is Level.SOURCES_ONLY or not self.settings.use_llm:
            answer.level = Level.SOURCES_ONLY
            self._sources_only(answer, passages)
        else:
            async for delta in self._generate(answer, passages):
                yield TextDelta(delta)
        yield AnswerDone(answer)

    def sources_block(self, answer: Answer) -> str:
        """The cited sources as lines for a chat message ("Sources:" then "[n] title — link");
        empty when nothing is cited (sources-only answers list theirs in the text)."""
        if not answer.citations:
            return ""
        heading = self.prompts.message("sources_heading", answer.language)
        lines = [f"[{c.number}] {c.title} — {c.link}" for c in answer.citations]
        colon = "：" if answer.language.startswith("zh") else ":"
        return "\n".join([heading + colon, *lines])

    def passages(self, hits: list[Hit]) -> list[Passage]:
        """Hits as numbered passages (an FAQ item is headed by its question). A passage cannot
        close the prompt's ``<context>`` data block: its own context tags are defused."""
        return [
            Passage(number, _defused(hit.heading), _defused(hit.text), hit) for number, hit in enumerate(hits, start=1)
        ]

    def batches(self, passages: list[Passage], template_tokens: int) -> list[list[Passage]]:
        """Passages in rank order packed into prompts that fit the context; the first batch
        always holds the best passage (trimmed if it alone is too long)."""
        budget = (
            self.settings.max_context_tokens - self.settings.max_answer_tokens - template_tokens - _PROMPT_MARGIN
        )
        limit = 1 if self.settings.strategy == "stuff" else self.settings.refine_batches
        batches: list[list[Passage]] = [[]]
        left = budget
        for passage in passages:
            tokens = self.counter.count(f"[{passage.number}] {passage.heading}\n{passage.text}\n")
            if tokens > left and batches[-1]:
                if len(batches) == limit:
                    break
                batches.append([])
                left = budget
            if tokens > left:
                if left < _MIN_TRIMMED_TOKENS:
                    break
                trimmed = self.counter.truncate(passage.text, left - self.counter.count(passage.heading) - 8)
                passage = Passage(passage.number, passage.heading, trimmed, passage.hit)
                tokens = left
            batches[-1].append(passage)
            left -= tokens
        return [batch for batch in batches if batch]

    async def _generate(self, answer: Answer, passages: list[Passage]) -> AsyncIterator[str]:
        language = answer.language
        task = "cautious" if answer.decision.level is Level.CAUTIOUS else "answer"
        variables = dict(
            question=answer.question,
            assistant=self.prompts.message("assistant", language),
            decline=self.prompts.message("decline", language),
        )
        skeleton = self.prompts.chat(task, language, passages=[], **variables)
        batches = self.batches(passages, self.counter.count(skeleton.text))
        if not batches:  # the prompt's instructions and the answer leave no room for a passage
            log.warning(
                "generation.max_context_tokens (%d) minus max_answer_tokens (%d) leaves no room for a passage "
                "after the %s prompt's instructions: showing the sources instead",
                self.settings.max_context_tokens, self.settings.max_answer_tokens, task,
            )  # fmt: skip
            answer.level = Level.SOURCES_ONLY
            self._sources_only(answer, passages)
            return
        offered = [p for batch in batches for p in batch]
        answer.sources = [_citation(p) for p in offered]
        cleaner = CitationFilter(p.number for p in offered)
        started = time.perf_counter()
        try:
            draft = ""
            for index, batch in enumerate(batches):
                if index == 0:
                    prompt = self.prompts.chat(task, language, passages=batch, **variables)
                else:
                    prompt = self.prompts.chat("refine", language, passages=batch, answer=draft, **variables)
                answer.prompt = prompt
                if index < len(batches) - 1:
                    draft = (await self.client.acomplete(
                        prompt.messages, max_tokens=self.settings.max_answer_tokens,
                        temperature=self.settings.temperature,
                    )).text  # fmt: skip
                    continue
                stats = StreamStats()
                async for delta in self.client.stream(
                    prompt.messages,
                    max_tokens=self.settings.max_answer_tokens,
                    temperature=self.settings.temperature,
                    stats=stats,
                ):
                    shown = cleaner.feed(delta)
                    answer.text += shown
                    if shown:
                        yield shown
                tail = cleaner.finish()
                answer.text = (answer.text + tail).strip()
                if tail:
                    yield tail
                answer.model = self.client.model
                answer.prompt_tokens, answer.completion_tokens = stats.prompt_tokens, stats.completion_tokens
                if stats.first_token is not None:
                    answer.timings["llm_first_token"] = stats.first_token
        except LLMError as exc:
            answer.error = str(exc)
            answer.level = Level.SOURCES_ONLY
            answer.citations = []
            self._sources_only(answer, passages, notice=self.prompts.message("llm_unavailable", language))
            return
        finally:
            answer.timings["generate"] = time.perf_counter() - started
        decline = self.prompts.message("decline", language)
        answer.declined = _normalized(decline) in _normalized(answer.text)
        cited = cleaner.cited
        if not cited and not answer.declined:
            cited = attribute(answer.text, {p.number: f"{p.heading}\n{p.text}" for p in offered})
            if cited:
                suffix = " " + "".join(f"[{n}]" for n in cited)
                answer.text += suffix
                answer.citations_inferred = True
                yield suffix
        by_number = {c.number: c for c in answer.sources}
        answer.citations = [by_number[n] for n in cited]
        if self.output_guard is not None and not answer.declined:
            self._verify(answer, passages, [p for p in offered if p.number in set(cited)])

    def _verify(self, answer: Answer, passages: list[Passage], cited: list[Passage]) -> None:
        """Downgrade ``answer`` to its sources when it asserts what its cited passages do not hold."""
        evidence = [
            Evidence(f"{p.heading}\n{p.text}\n{p.link}", str((p.hit.payload.get("metadata") or {}).get("product") or ""))
            for p in cited
        ]
        failed = self.output_guard.unsupported(answer.text, evidence)
        if not failed:
            return
        reason = f"not in the cited passages: {', '.join(failed)[:300]} (the answer was: {answer.text[:500]})"
        answer.guard = GuardVerdict("downgraded", "output", "unsupported", reason)
        answer.level = Level.SOURCES_ONLY
        answer.citations = []
        self._sources_only(answer, passages, notice=self.prompts.message("answer_unverified", answer.language))

    def _sources_only(self, answer: Answer, passages: list[Passage], notice: str = "") -> None:
        shown = passages[:3]
        answer.notice = notice
        answer.sources = [_citation(p) for p in shown]
        answer.text = self.prompts.text(
            "sources_only", answer.language, question=answer.question, passages=shown, notice=notice
        )


def _citation(passage: Passage) -> Citation:
    hit = passage.hit
    return Citation(
        number=passage.number,
        title=passage.heading or hit.title,
        source=hit.source,
        link=passage.link,
        item_id=hit.item_id,
        doc=hit.doc,
    )


def _defused(text: str) -> str:
    return text.replace("<context>", "<context >").replace("</context>", "</context >")


def _normalized(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())
