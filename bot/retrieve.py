"""Fused retrieval: one prefetch per route, fused inside Qdrant, optionally reranked.

    retriever = Retriever(store, dense, sparse, settings.retrieval)
    result = retriever.retrieve("退款要多久到账？", filters={"product": "nimbus-note"})
    result.hits[0].route_scores      # {"content_dense": 0.87, "question_sparse": 7.2, ...}
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from bot.config import ROUTES, RetrievalSettings, Thresholds
from bot.embed.base import DenseEncoder, SparseEncoder
from bot.errors import RerankError
from bot.fusion import Evidence, FusionModels, default_models
from bot.ingest.documents import declared_doc, heading
from bot.store.base import FilterValue, RouteQuery, ScoredId, VectorStore

__all__ = [
    "Hit",
    "Retrieval",
    "Retriever",
    "best_per_declared_doc",
    "merge_identical",
    "payload_filters",
    "DENSE_ROUTES",
]

DENSE_ROUTES = ("question_dense", "content_dense")
#: Filter names that are payload fields; any other name is looked up in the item's metadata.
PAYLOAD_FIELDS = ("doc", "source", "item_id", "language", "kind", "title")
#: Payload keys kept with each route's own hits, enough to evaluate a route.
ROUTE_PAYLOAD = ("item_id", "doc")
#: Query vectors embedded ahead of their retrieval (:meth:`Retriever.prepare`) kept at most.
PREPARED_QUERIES = 64


@dataclass(frozen=True)
class Hit:
    """One fused hit: its rank (1 = best), fused score, each route's raw score, payload."""

    id: str
    rank: int
    fused_score: float
    route_scores: dict[str, float]
    payload: Mapping[str, Any]
    rerank_score: float | None = None
    #: item ids and declared docs of records identical to this one, merged into it
    aliases: tuple[str, ...] = ()

    @property
    def item_id(self) -> str:
        return self.payload.get("item_id", self.id)

    @property
    def doc(self) -> str:
        return self.payload.get("doc", "")

    @property
    def ids(self) -> frozenset[str]:
        """Every id this hit stands for: its item id, doc and aliases (an expected id matches any)."""
        return frozenset(i for i in (self.item_id, self.doc, *self.aliases) if i)

    @property
    def title(self) -> str:
        return self.payload.get("title", "")

    @property
    def declared_doc(self) -> str:
        """The doc the knowledge record declares; "" for a chunk of a file."""
        return declared_doc(self.doc, self.source)

    @property
    def text(self) -> str:
        return self.payload.get("text", "")

    @property
    def question(self) -> str:
        return self.payload.get("question", "")

    @property
    def source(self) -> str:
        return self.payload.get("source", "")

    @property
    def heading(self) -> str:
        """The FAQ question, else "title > section"."""
        return heading(self.question, self.title, self.payload.get("section", ""))

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output and traces."""
        return {
            "rank": self.rank,
            "id": self.id,
            "item_id": self.item_id,
            "doc": self.doc,
            "fused_score": self.fused_score,
            "route_scores": self.route_scores,
            "rerank_score": self.rerank_score,
            "aliases": list(self.aliases),
            "title": self.title,
            "section": self.payload.get("section", ""),
            "question": self.question,
            "text": self.text,
            "source": self.source,
            "metadata": self.payload.get("metadata", {}),
        }


@dataclass(frozen=True)
class Retrieval:
    """A query's hits (best first) and each route's own ranked list with raw scores."""

    query: str
    hits: list[Hit]
    routes: dict[str, list[ScoredId]]
    timings: dict[str, float] = field(default_factory=dict)
    #: why a configured reranker did not rerank this query (its server failed); hits keep the fused order
    rerank_skipped: str | None = None
    #: which fusion ran: "rrf", "dbsf", or the learned model's description
    fusion: str = ""
    #: the answerable probability and its thresholds, when a fitted answerable model ran
    answerable: float | None = None
    answerable_thresholds: Thresholds | None = None

    @property
    def best_dense(self) -> float | None:
        """The best dense similarity any dense route found: the default relevance signal."""
        tops = [hits[0].score for name, hits in self.routes.items() if name in DENSE_ROUTES and hits]
        return max(tops) if tops else None


def payload_filters(filters: Mapping[str, FilterValue] | None) -> dict[str, FilterValue]:
    """Map filter names to payload paths: ``product`` -> ``metadata.product``, ``doc`` stays."""
    return {
        (name if name in PAYLOAD_FIELDS or "." in name else f"metadata.{name}"): value
        for name, value in (filters or {}).items()
        if value not in (None, "", [], ())
    }


def best_per_declared_doc(hits: list[Hit]) -> list[Hit]:
    """``hits`` (best first) keeping only the best record of each declared doc, ranks renumbered.

    Records that declare one doc are parts of one FAQ entry (e.g. a page's questions): five
    siblings would otherwise crowd the other entries out of the top hits."""
    seen: set[str] = set()
    kept: list[Hit] = []
    for hit in hits:
        doc = hit.declared_doc
        if doc and doc in seen:
            continue
        seen.add(doc)
        kept.append(replace(hit, rank=len(kept) + 1))
    return kept


def merge_identical(hits: list[Hit]) -> list[Hit]:
    """``hits`` (best first) with each record whose question and text equal a better hit's merged
    into it, ranks renumbered: the same answer stored under two ids is one hit, and the merged
    record's item id and declared doc join the kept hit's ``aliases``. Their route scores are
    equal, so without this the store's arbitrary order between them decides which one ranks first."""
    kept: list[Hit] = []
    by_content: dict[tuple[str, str], int] = {}
    for hit in hits:
        content = (hit.question, hit.text)
        if content in by_content:
            index = by_content[content]
            merged = tuple(i for i in (hit.item_id, hit.declared_doc) if i and i not in kept[index].ids)
            kept[index] = replace(kept[index], aliases=kept[index].aliases + merged)
            continue
        by_content[content] = len(kept)
        kept.append(replace(hit, rank=len(kept) + 1))
    return kept


class Retriever:
    """Searches the four routes of a collection and fuses them: in Qdrant (``rrf``, ``dbsf``), or
    by re-scoring the routes' candidates with a learned model (``learned``: ``fusion_models``,
    else the shipped default)."""

    def __init__(
        self,
        store: VectorStore,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        settings: RetrievalSettings,
        reranker=None,
        rerank_top_n: int = 20,
        fusion_models: FusionModels | None = None,
    ):
        self.store, self.dense, self.sparse = store, dense, sparse
        self.settings = settings
        self.models = fusion_models
        if self.models is None and settings.fusion == "learned":
            self.models = default_models()
        self.reranker, self.rerank_top_n = reranker, rerank_top_n
        self._prepared: OrderedDict[str, list[float]] = OrderedDict()

    def prepare(self, query: str) -> None:
        """Embed ``query`` now, so that its retrieval later skips the dense encoder (the web
        widget sends the message here while Rasa is still classifying it)."""
        if query not in self._prepared:
            self._prepared[query] = self.dense.embed_query(query).tolist()
            while len(self._prepared) > PREPARED_QUERIES:
                self._prepared.popitem(last=False)

    def retrieve(
        self,
        query: str,
        filters: Mapping[str, FilterValue] | None = None,
        top_k: int | None = None,
        *,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> Retrieval:
        """The ``top_k`` best hits for ``query``; run-time ``fusion``/``weights`` override the settings."""
        top_k = top_k or self.settings.top_k
        weights = {**self.settings.weights, **(weights or {})}
        fusion = fusion or self.settings.fusion
        timings: dict[str, float] = {}
        started = time.perf_counter()
        routes = self._routes(query, weights)
        timings["embed"] = time.perf_counter() - started
        limit = max(top_k, 10, self.rerank_top_n if self.reranker else 0)
        if fusion == "learned":
            return self._learned(query, routes, filters, limit, top_k, timings)
        # siblings of one declared doc and identical records are dropped after fusion: fetch
        # enough to fill `limit`
        collapses = self.settings.one_per_doc or self.settings.merge_identical
        fetch = 3 * limit if collapses else limit
        started = time.perf_counter()
        result = self.store.search(
            routes,
            fusion=fusion,
            rrf_k=self.settings.rrf_k,
            limit=fetch,
            candidates=max(self.settings.candidates, limit),
            filters=payload_filters(filters),
            route_payload=ROUTE_PAYLOAD,
        )
        timings["search"] = time.perf_counter() - started
        route_scores = {
            name: {hit.id: hit.score for hit in hits} for name, hits in result.routes.items()
        }
        hits = self._collapse([_hit(hit, rank, route_scores) for rank, hit in enumerate(result.fused, start=1)], limit)
        hits, rerank_skipped = self._reranked(query, hits, timings)
        return Retrieval(
            query=query,
            hits=hits[:top_k],
            routes=result.routes,
            timings=timings,
            rerank_skipped=rerank_skipped,
            fusion=fusion,
        )

    def evidence(
        self,
        query: str,
        filters: Mapping[str, FilterValue] | None = None,
        *,
        routes: list[RouteQuery] | None = None,
        timings: dict[str, float] | None = None,
        with_rerank: bool | None = None,
    ) -> Evidence:
        """The routes' prefetched candidates (Qdrant's RRF first ``retrieval.candidates`` of their
        union, with payloads) and each route's list with raw scores: what the learned fusion
        scores (``bot calibrate`` fits on it). The
        reranker scores the head when the model uses its scores (``with_rerank`` overrides)."""
        timings = {} if timings is None else timings
        if routes is None:
            routes = self._routes(query, self.settings.weights)
        candidates = self.settings.candidates
        started = time.perf_counter()
        # the first `candidates` of Qdrant's RRF over the prefetches, with their payloads, and each
        # route's own first `candidates`: what the routes say about them (more would cost payloads)
        result = self.store.search(
            routes,
            fusion="rrf",
            rrf_k=self.settings.rrf_k,
            limit=candidates,
            candidates=candidates,
            filters=payload_filters(filters),
            route_payload=ROUTE_PAYLOAD,
        )
        timings["search"] = time.perf_counter() - started
        rerank: dict[str, float] = {}
        skipped = None
        if with_rerank is None:
            with_rerank = self.models is not None and self.models.uses_rerank
        if self.reranker is not None and with_rerank and result.fused:
            started = time.perf_counter()
            head = [_hit(hit, rank, {}) for rank, hit in enumerate(result.fused[: self.rerank_top_n], start=1)]
            try:
                rerank = {h.id: h.rerank_score for h in self._rerank(query, head) if h.rerank_score is not None}
            except RerankError as exc:  # scored as if no candidate was reranked
                skipped = str(exc)
            timings["rerank"] = time.perf_counter() - started
        return Evidence(candidates=result.fused, routes=result.routes, rerank=rerank, rerank_skipped=skipped)

    def _learned(self, query, routes, filters, limit: int, top_k: int, timings: dict[str, float]) -> Retrieval:
        """Retrieval with the learned fusion: every candidate re-scored from its routes' evidence."""
        evidence = self.evidence(query, filters, routes=routes, timings=timings)
        started = time.perf_counter()
        ranked, logits = self.models.rank(evidence)
        answerable = self.models.answerable_probability(evidence, ranked, logits)
        route_scores = {name: {hit.id: hit.score for hit in hits} for name, hits in evidence.routes.items()}
        hits = [
            replace(_hit(hit, rank, route_scores, score=_sigmoid(logit)), rerank_score=evidence.rerank.get(hit.id))
            for rank, (hit, logit) in enumerate(zip(ranked, logits), start=1)
        ]
        hits = self._collapse(hits, limit)
        timings["fusion"] = time.perf_counter() - started
        skipped = evidence.rerank_skipped  # a model fit with rerank scores reranked its evidence
        if not self.models.uses_rerank:
            hits, skipped = self._reranked(query, hits, timings)
        return Retrieval(
            query=query,
            hits=hits[:top_k],
            routes=evidence.routes,
            timings=timings,
            rerank_skipped=skipped,
            fusion=self.models.describe(),
            answerable=answerable,
            answerable_thresholds=self.models.thresholds if answerable is not None else None,
        )

    def _routes(self, query: str, weights: Mapping[str, float]) -> list[RouteQuery]:
        active = [route for route in ROUTES if weights.get(route, 0) > 0]
        routes = []
        if any(route.endswith("_dense") for route in active):
            vector = self._prepared.pop(query, None) or self.dense.embed_query(query).tolist()
            routes += [RouteQuery(r, vector, weights[r]) for r in active if r.endswith("_dense")]
        if any(route.endswith("_sparse") for route in active):
            vector = self.sparse.encode_query(query)
            if vector:  # a query of stop words only has no lexical route
                routes += [RouteQuery(r, vector, weights[r]) for r in active if r.endswith("_sparse")]
        return routes

    def _collapse(self, hits: list[Hit], limit: int) -> list[Hit]:
        """The first ``limit`` of ``hits`` once siblings of one declared doc and identical records are one hit."""
        if self.settings.one_per_doc:
            hits = best_per_declared_doc(hits)
        if self.settings.merge_identical:
            hits = merge_identical(hits)
        return hits[:limit]

    def _reranked(self, query: str, hits: list[Hit], timings: dict[str, float]) -> tuple[list[Hit], str | None]:
        """``hits`` reordered by the reranker when one is configured, and why it was skipped if its
        server failed (the hits then keep their order: never a failed turn)."""
        if self.reranker is None or not hits:
            return hits, None
        started = time.perf_counter()
        try:
            return self._rerank(query, hits), None
        except RerankError as exc:
            return hits, str(exc)
        finally:
            timings["rerank"] = time.perf_counter() - started

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        head, tail = hits[: self.rerank_top_n], hits[self.rerank_top_n :]
        scores = self.reranker.score(query, [f"{h.question}\n{h.text}".strip() for h in head])
        ranked = sorted(zip(head, scores), key=lambda pair: pair[1], reverse=True)
        reranked = [
            replace(h, rank=rank, rerank_score=float(score)) for rank, (h, score) in enumerate(ranked, start=1)
        ]
        return reranked + [replace(h, rank=len(reranked) + i) for i, h in enumerate(tail, start=1)]


def _hit(hit: ScoredId, rank: int, route_scores: Mapping[str, Mapping[str, float]], score: float | None = None) -> Hit:
    """A fused hit from the store's point: its score in each route that found it."""
    return Hit(
        id=hit.id,
        rank=rank,
        fused_score=hit.score if score is None else score,
        route_scores={n: s[hit.id] for n, s in route_scores.items() if hit.id in s},
        payload=hit.payload or {},
    )


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, float(logit)))))
