"""The knowledge engine, assembled from settings. Components load on first use, once.

    with Engine(load_settings()) as engine:
        engine.ingest()
        retrieval = engine.retrieve("How long does a refund take?")
        decision = engine.decide(retrieval)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

from bot.config import Settings
from bot.decide import Decision, decide
from bot.embed import DenseEncoder, SparseEncoder, build_encoders
from bot.ingest.manifest import Manifest
from bot.ingest.pipeline import IngestReport, Ingestor
from bot.retrieve import Retrieval, Retriever
from bot.store.base import FilterValue, VectorStore
from bot.store.factory import open_store

__all__ = ["Engine"]


class Engine:
    """Ingestion, retrieval and decision over one collection (default: the configured one)."""

    def __init__(self, settings: Settings, *, collection: str | None = None):
        self.settings = settings
        self.collection = collection or settings.store.collection

    @cached_property
    def encoders(self) -> tuple[DenseEncoder, SparseEncoder]:
        return build_encoders(self.settings.embedding, self.settings.lexicon)

    @cached_property
    def store(self) -> VectorStore:
        return open_store(self.settings.store, self.collection)

    @cached_property
    def manifest(self) -> Manifest:
        from bot.db import connect

        return Manifest(connect(self.settings.sql.url, self.settings.root), self.collection)

    @cached_property
    def retriever(self) -> Retriever:
        reranker = None
        if self.settings.rerank.enabled:
            from bot.rerank import Reranker

            reranker = Reranker(self.settings.rerank.model_path)
        dense, sparse = self.encoders
        return Retriever(
            self.store,
            dense,
            sparse,
            self.settings.retrieval,
            reranker=reranker,
            rerank_top_n=self.settings.rerank.top_n,
        )

    def ingest(
        self, paths: Sequence[Path] | None = None, *, rebuild: bool = False, progress: bool = True
    ) -> IngestReport:
        """Bring the collection in line with ``paths`` (default: ``ingest.paths``)."""
        dense, sparse = self.encoders
        ingestor = Ingestor(
            self.store, self.manifest, dense, sparse, self.settings.ingest, self.settings.root
        )
        if rebuild:
            ingestor.rebuild()
        return ingestor.run(paths, progress=progress)

    def retrieve(
        self,
        query: str,
        filters: Mapping[str, FilterValue] | None = None,
        top_k: int | None = None,
        **overrides,
    ) -> Retrieval:
        """Fused hits for ``query``; see :meth:`Retriever.retrieve`."""
        return self.retriever.retrieve(query, filters, top_k, **overrides)

    def decide(self, retrieval: Retrieval) -> Decision:
        """The refusal level for a retrieval, with the configured thresholds."""
        return decide(retrieval, self.settings.decision)

    def close(self) -> None:
        """Release the store (and its lock)."""
        if "store" in self.__dict__:
            self.store.close()
            del self.__dict__["store"]

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
