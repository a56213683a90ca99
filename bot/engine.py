"""The knowledge engine, assembled from settings. Components load on first use, once.

    with Engine(load_settings()) as engine:
        engine.ingest()
        retrieval = engine.retrieve("How long does a refund take?")
        decision = engine.decide(retrieval)
        answer = engine.answer("退款多久到账？", history=[...])        # rewrite, retrieve, decide, generate
        async for event in engine.answer_stream("How do I pair the pen?"): ...   # TextDelta..., AnswerDone
"""

from __future__ import annotations

import asyncio
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence, TypeVar

from sqlalchemy.engine import Engine as SqlEngine

from bot.config import Settings
from bot.decide import Decision, decide
from bot.embed import DenseEncoder, SparseEncoder, build_encoders
from bot.errors import UnknownTurnError
from bot.feedback import RecentTurns
from bot.fusion import FusionModels, load_models
from bot.generate import Answer, AnswerDone, Event, Generator
from bot.guard import Guard
from bot.ingest.documents import Chunk
from bot.ingest.manifest import Manifest
from bot.ingest.pipeline import IngestReport, Ingestor
from bot.lang import detect_language
from bot.llm.budget import TokenCounter
from bot.llm.client import LLMClient
from bot.llm.prompts import Prompts
from bot.llm.server import LLMServer
from bot.retrieve import Retrieval, Retriever
from bot.rewrite import QueryRewriter
from bot.store.base import FilterValue, VectorStore
from bot.store.factory import open_store
from bot.traces import Redactor, TraceWriter, TurnContext, knowledge_row

__all__ = ["Engine"]

T = TypeVar("T")


class Engine:
    """Ingestion, retrieval, decision and generation over one collection (default: the configured one).

    ``llm_url`` overrides ``endpoints.yml``'s ``llm.url`` (e.g. the local server's URL).
    """

    def __init__(self, settings: Settings, *, collection: str | None = None, llm_url: str | None = None):
        self.settings = settings
        self.collection = collection or settings.store.collection
        self.llm_url = llm_url or settings.llm.url or LLMServer.from_settings(settings).url
        self._retrieve_lock = threading.Lock()  # encoders and the embedded store serve one query at a time
        self.recent_turns = RecentTurns()  # feedback on a turn whose trace is still queued finds it here
        self._loop: asyncio.AbstractEventLoop | None = None

    @cached_property
    def encoders(self) -> tuple[DenseEncoder, SparseEncoder]:
        return build_encoders(self.settings.embedding, self.settings.lexicon)

    @cached_property
    def store(self) -> VectorStore:
        return open_store(self.settings.store, self.collection)

    @cached_property
    def sql(self) -> SqlEngine:
        """The SQL database (manifest, feedback), migrated to the current schema."""
        from bot.db import connect

        return connect(self.settings.sql.url, self.settings.root)

    @cached_property
    def redactor(self) -> Redactor:
        """Masks personal data (``traces.redact``) in what is stored: traces, feedback comments."""
        return Redactor(self.settings.traces.redact)

    @cached_property
    def traces(self) -> TraceWriter | None:
        """Where finished turns go (None: ``traces.enabled`` is off). The database is opened by
        the writer's thread, so a database that is down delays traces, never answers."""
        settings = self.settings.traces
        if not settings.enabled:
            return None
        return TraceWriter(
            lambda: self.sql,
            self.redactor,
            retention_days=settings.retention_days,
            queue_size=settings.queue_size,
        )

    @cached_property
    def manifest(self) -> Manifest:
        return Manifest(self.sql, self.collection)

    @cached_property
    def retriever(self) -> Retriever:
        from bot.rerank import build_reranker

        reranker = build_reranker(self.settings)
        dense, sparse = self.encoders
        return Retriever(
            self.store,
            dense,
            sparse,
            self.settings.retrieval,
            reranker=reranker,
            rerank_top_n=self.settings.rerank.top_n,
            fusion_models=self.fusion_models,
        )

    @cached_property
    def fusion_models(self) -> FusionModels | None:
        """The learned fusion for this collection (``bot calibrate``), else the default; None
        when ``retrieval.fusion`` is Qdrant's own (rrf, dbsf)."""
        if self.settings.retrieval.fusion != "learned":
            return None
        return load_models(self.settings, self.collection, rerank=self.settings.rerank.enabled)

    @cached_property
    def llm(self) -> LLMClient:
        penalty = self.settings.generation.repetition_penalty
        extra = {"repetition_penalty": penalty} if penalty is not None else None
        return LLMClient.from_settings(self.settings.llm, self.llm_url, extra_body=extra)

    @cached_property
    def prompts(self) -> Prompts:
        return Prompts(self.settings.generation.prompts_dir)

    @cached_property
    def generator(self) -> Generator:
        generation = self.settings.generation
        checks = self.settings.guard
        return Generator(
            self.llm,
            self.prompts,
            TokenCounter(generation.tokenizer_path),
            generation,
            output_guard=self.guard.output if checks.enabled and checks.check_output else None,
        )

    @cached_property
    def guard(self) -> Guard:
        """The guardrails (``bot.yml: guard``, ``endpoints.yml: moderation``); lexicons checked on first use."""
        return Guard.from_settings(self.settings)

    @cached_property
    def rewriter(self) -> QueryRewriter:
        generation = self.settings.generation
        return QueryRewriter(self.llm, self.prompts, history_turns=generation.history_turns, when=generation.rewrite)

    def ingest(
        self, paths: Sequence[Path] | None = None, *, rebuild: bool = False, progress: bool = True
    ) -> IngestReport:
        """Bring the collection in line with ``paths`` (default: ``ingest.paths``)."""
        dense, sparse = self.encoders
        checks = self.settings.guard
        ingestor = Ingestor(
            self.store,
            self.manifest,
            dense,
            sparse,
            self.settings.ingest,
            self.settings.root,
            instructions=self.guard.instruction_like if checks.enabled and checks.report_instructions else None,
        )
        if rebuild:
            ingestor.rebuild()
        return ingestor.run(paths, progress=progress)

    def iter_chunks(
        self,
        paths: Sequence[Path] | None = None,
        *,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> Iterator[list[Chunk]]:
        """The chunks of each file under ``paths`` (default: ``ingest.paths``) as ingestion cuts
        them, without generated questions. Touches neither the store nor the manifest, so it works
        while another process holds the embedded store; ``on_failure(source, reason)`` hears of
        files that cannot be parsed."""
        dense, sparse = self.encoders
        chunker = Ingestor(None, None, dense, sparse, self.settings.ingest, self.settings.root)  # type: ignore[arg-type]
        return chunker.iter_chunks(paths, on_failure=on_failure)

    def retrieve(
        self,
        query: str,
        filters: Mapping[str, FilterValue] | None = None,
        top_k: int | None = None,
        **overrides,
    ) -> Retrieval:
        """Fused hits for ``query``; see :meth:`Retriever.retrieve`."""
        with self._retrieve_lock:
            return self.retriever.retrieve(query, filters, top_k, **overrides)

    def prepare(self, query: str) -> None:
        """Embed ``query`` ahead of its retrieval (see :meth:`Retriever.prepare`)."""
        with self._retrieve_lock:
            self.retriever.prepare(query)

    def decide(self, retrieval: Retrieval) -> Decision:
        """The refusal level for a retrieval, with the configured thresholds."""
        return decide(retrieval, self.settings.decision)

    async def answer_stream(
        self,
        question: str,
        *,
        history: Sequence[Mapping[str, str]] = (),
        filters: Mapping[str, FilterValue] | None = None,
        scope: Mapping[str, FilterValue] | None = None,
        context: TurnContext | None = None,
        screen_topics: bool = False,
    ) -> AsyncIterator[Event]:
        """One knowledge turn: rewrite (with history), retrieve, decide, generate.

        Yields ``TextDelta`` events as the answer is written, then one ``AnswerDone``.
        ``history`` is the conversation so far as ``{"role", "content"}`` messages. ``filters``
        always apply; ``scope`` (e.g. the product the user talks about) applies unless the
        question is not answerable within it but is without it (``Answer.widened`` says so).
        The finished turn is traced under ``context`` (who asked, where; default: a CLI turn),
        and ``Answer.turn_id`` names its trace. With ``screen_topics``, a question whose best
        hits are items of a sensitive topic (``guard.sensitive_topics``) is not generated:
        ``Answer.guard`` names the canned response to give instead (the knowledge action does).
        """
        context = context or TurnContext()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        use_llm = self.settings.generation.use_llm
        query = await self.rewriter.rewrite(question, history) if history and use_llm else question
        timings["rewrite"] = time.perf_counter() - started
        scoped = {**(filters or {}), **(scope or {})}
        retrieval = await asyncio.to_thread(self.retrieve, query, scoped)
        timings.update(retrieval.timings)
        decision = self.decide(retrieval)
        widened = False
        if scope and not decision.level.answers:
            wider = await asyncio.to_thread(self.retrieve, query, filters)
            wider_decision = self.decide(wider)
            if wider_decision.level.rank > decision.level.rank:
                retrieval, decision, widened = wider, wider_decision, True
        language = detect_language(question)
        verdict = self.guard.screen_hits(retrieval.hits) if screen_topics and decision.level.rank else None
        if verdict is None:
            events = self.generator.stream(question, retrieval, decision, language=language, query=query)
        else:
            events = _guarded(Answer(question, query, language, decision, decision.level, guard=verdict))
        async for event in events:
            if isinstance(event, AnswerDone):
                answer = event.answer
                answer.widened = widened
                answer.turn_id = context.turn_id
                answer.timings = {**timings, **answer.timings, "total": time.perf_counter() - started}
                self.recent_turns.remember(context.turn_id, context.conversation_id)
                self.trace(lambda answer=answer: knowledge_row(context, answer, retrieval, scoped))
            yield event

    def record_feedback(self, conversation_id: str, turn_id: str | None, rating: int, comment: str | None = None) -> int:
        """Store a thumbs up (+1) or down (-1) on ``turn_id`` (None: nothing answered yet); returns its row id.

        The comment is cut to ``serving.max_comment_chars``, then masked like traces. Raises
        :class:`UnknownTurnError` (nothing stored) unless ``turn_id`` is a turn of ``conversation_id``.
        """
        from bot.feedback import record_feedback

        if turn_id is not None and not self.turn_in_conversation(turn_id, conversation_id):
            raise UnknownTurnError(f"no turn {turn_id!r} in conversation {conversation_id!r}")
        if comment:
            comment = self.redactor.text(comment[: self.settings.serving.max_comment_chars])
        return record_feedback(self.sql, conversation_id, turn_id, rating, comment or None)

    def turn_in_conversation(self, turn_id: str, conversation_id: str) -> bool:
        """Whether ``turn_id`` is a turn of ``conversation_id``: one this process answered
        lately (its trace may still be queued), or one in the traces."""
        from bot.feedback import turn_in_conversation

        known = self.recent_turns.conversation_of(turn_id)
        if known is not None:
            return known == conversation_id
        return turn_in_conversation(self.sql, turn_id, conversation_id)

    def trace(self, build_row) -> None:
        """Hand a turn's trace (a function making its ``turns`` row) to the writer, if tracing is on."""
        if self.traces is not None:
            self.traces.submit(build_row)

    async def answer_async(self, question: str, **options) -> Answer:
        """The whole answer to one turn; ``options`` as for :meth:`answer_stream`."""
        answer = None
        async for event in self.answer_stream(question, **options):
            if isinstance(event, AnswerDone):
                answer = event.answer
        if answer is None:
            raise AssertionError("answer_stream ended without AnswerDone")
        return answer

    def answer(self, question: str, **options) -> Answer:
        """The whole answer to one turn, from blocking code; ``options`` as for :meth:`answer_stream`."""
        return self.run(self.answer_async(question, **options))

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run a coroutine to completion from blocking code, always on this engine's own event
        loop (the async HTTP connection pool is bound to the loop that first used it)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    def close(self) -> None:
        """Write the queued traces, release the store (and its lock) and the blocking calls' event loop."""
        if self.__dict__.get("traces") is not None:
            self.traces.close()
        self.__dict__.pop("traces", None)
        if self._loop is not None:
            if "llm" in self.__dict__:
                self._loop.run_until_complete(self.llm.aclose())
            self._loop.close()
            self._loop = None
        if "store" in self.__dict__:
            self.store.close()
            del self.__dict__["store"]

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _guarded(answer: Answer) -> AsyncIterator[Event]:
    """A turn the sensitive guard took from the LLM: no text, only its verdict."""
    yield AnswerDone(answer)
