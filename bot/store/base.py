"""One interface for every vector-store backend.

A backend holds one collection of points, each with named dense and sparse
vectors and a JSON payload, and answers fused multi-route queries inside
Qdrant. Backends: :mod:`bot.store.edge` (embedded, default) and
:mod:`bot.store.qdrant` (a Qdrant server or cluster; its local mode too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bot.embed.base import SparseVector

__all__ = [
    "CollectionSchema",
    "StoredPoint",
    "RouteQuery",
    "ScoredId",
    "SearchResult",
    "VectorStore",
    "FilterValue",
    "OrMissing",
]


@dataclass(frozen=True)
class OrMissing:
    """A filter value that also lets through items without the field, e.g. a product scope that
    keeps general documents: ``{"metadata.product": OrMissing("nimbus-pen")}``."""

    value: str | int | bool | Sequence[str] | Sequence[int]


FilterValue = str | int | bool | Sequence[str] | Sequence[int] | OrMissing


@dataclass(frozen=True)
class CollectionSchema:
    """Named vectors: dense name -> dimension, sparse name -> whether Qdrant applies IDF."""

    dense: Mapping[str, int]
    sparse: Mapping[str, bool]
    keyword_indexes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredPoint:
    """A point to write: id (UUID string), vectors by name, payload."""

    id: str
    dense: Mapping[str, Sequence[float]]
    sparse: Mapping[str, SparseVector]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteQuery:
    """One retrieval route: search the named vector with a dense or sparse query."""

    route: str
    vector: Sequence[float] | SparseVector
    weight: float = 1.0


@dataclass(frozen=True)
class ScoredId:
    """A hit: point id, the score the query gave it, and its payload when asked for."""

    id: str
    score: float
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SearchResult:
    """The fused list (best first) and each route's own list with raw scores."""

    fused: list[ScoredId]
    routes: dict[str, list[ScoredId]]


class VectorStore(ABC):
    """A collection of points answering fused queries. Use as a context manager."""

    @abstractmethod
    def ensure_collection(self, schema: CollectionSchema) -> None:
        """Create the collection, or check that the existing one has this schema."""

    @abstractmethod
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points by id."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Remove points by id; unknown ids are ignored."""

    @abstractmethod
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""

    @abstractmethod
    def count(self) -> int:
        """Number of points stored."""

    @abstractmethod
    def search(
        self,
        routes: Sequence[RouteQuery],
        *,
        fusion: str,
        rrf_k: int,
        limit: int,
        candidates: int,
        filters: Mapping[str, FilterValue] | None = None,
        route_payload: Sequence[str] = (),
    ) -> SearchResult:
        """Prefetch ``candidates`` per route, fuse in Qdrant (``rrf`` weighted by route, or ``dbsf``).

        ``filters`` maps payload keys (dotted paths allowed) to a value or a list of
        accepted values; all must match. Each route's list holds its top ``limit``
        hits with raw scores and the payload keys named in ``route_payload``.
        """

    @abstractmethod
    def drop(self) -> None:
        """Delete the collection and everything in it."""

    @abstractmethod
    def close(self) -> None:
        """Release files, locks and connections."""

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
