"""The embedded default: a Qdrant Edge shard in a local folder (``qdrant-edge-py``).

Each collection is a shard folder ``<path>/<collection>/``. One process owns a
collection at a time: opening it takes an exclusive lock on
``<path>/<collection>.lock``, and a second opener gets :class:`StoreLockedError`
at once, naming the owner, instead of corrupting the shard. See "Who owns the
store" in the README.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Mapping, Sequence

import qdrant_edge as qe

from bot.embed.base import SparseVector
from bot.errors import StoreError
from bot.store.base import (
    CollectionSchema,
    FilterValue,
    OrMissing,
    RouteQuery,
    ScoredId,
    SearchResult,
    StoredPoint,
    VectorStore,
)
from bot.store.lock import OwnerLock

__all__ = ["EdgeStore"]


class EdgeStore(VectorStore):
    """A collection stored in an embedded Qdrant Edge shard.

    >>> store = EdgeStore(Path(".bot/qdrant"), "knowledge")
    >>> store.ensure_collection(schema)
    """

    def __init__(self, path: Path, collection: str):
        self.folder = Path(path) / collection
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._lock = OwnerLock(Path(path) / f"{collection}.lock")
        self._lock.acquire()
        self._shard: qe.EdgeShard | None = None
        self._write_lock = threading.Lock()
        if self._has_segments():
            self._shard = self._call("open the shard", qe.EdgeShard.load, str(self.folder))

    def ensure_collection(self, schema: CollectionSchema) -> None:
        config = qe.EdgeConfig(
            vectors={
                name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)
                for name, dim in schema.dense.items()
            },
            sparse_vectors={
                name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if idf else None)
                for name, idf in schema.sparse.items()
            },
        )
        if self._shard is None:
            self._shard = self._call("create the shard", qe.EdgeShard.create, str(self.folder), config)
            for key in schema.keyword_indexes:
                self._update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            return
        self._shard.close()
        self._shard = None
        try:
            self._shard = qe.EdgeShard.load(str(self.folder), config)
        except Exception as exc:
            self._shard = self._call("reopen the shard", qe.EdgeShard.load, str(self.folder))
            raise StoreError(
                f"the collection at {self.folder} was built with other vectors than the "
                f"configured encoders make ({exc}); rebuild it with `bot ingest --rebuild`"
            ) from exc

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        if points:
            self._update(qe.UpdateOperation.upsert_points([_point(p) for p in points]))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._update(qe.UpdateOperation.delete_points(list(ids)))

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids or self._shard is None:
            return set()
        records = self._call("read points", self._shard.retrieve, list(ids), False, False)
        return {str(record.id) for record in records}

    def count(self) -> int:
        if self._shard is None:
            return 0
        return self._call("count points", self._shard.count, qe.CountRequest(exact=True))

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
        if self._shard is None or not routes:
            return SearchResult(fused=[], routes={})
        condition = _filter(filters)
        fuse = (
            qe.Fusion.Rrf(k=rrf_k, weights=[float(r.weight) for r in routes])
            if fusion == "rrf"
            else qe.Fusion.Dbsf()
        )
        fused = qe.QueryRequest(
            limit=limit,
            prefetches=[
                qe.Prefetch(limit=candidates, query=_nearest(r), filter=condition) for r in routes
            ],
            query=fuse,
            filter=condition,
            with_payload=True,
        )
        singles = [
            qe.QueryRequest(
                limit=limit,
                query=_nearest(r),
                filter=condition,
                with_payload=list(route_payload) if route_payload else False,
            )
            for r in routes
        ]
        batch = qe.QueryBatchRequest([fused, *singles])
        results = self._call("query", self._shard.query_batch, batch)
        return SearchResult(
            fused=[ScoredId(str(p.id), float(p.score), p.payload or {}) for p in results[0]],
            routes={
                route.route: [ScoredId(str(p.id), float(p.score), p.payload) for p in hits]
                for route, hits in zip(routes, results[1:])
            },
        )

    def commit(self) -> None:
        """Flush to disk and build the vector indexes (HNSW) for what was written."""
        if self._shard is not None:
            with self._write_lock:
                self._call("flush", self._shard.flush)
                self._call("optimize", self._shard.optimize)

    def drop(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
        self._lock.release()

    def _has_segments(self) -> bool:
        return self.folder.is_dir() and any(self.folder.iterdir())

    def _update(self, operation: "qe.UpdateOperation") -> None:
        if self._shard is None:
            raise StoreError("the collection does not exist yet; run `bot ingest` first")
        with self._write_lock:
            self._call("write", self._shard.update, operation)

    def _call(self, what: str, function, *args):
        try:
            return function(*args)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Qdrant Edge could not {what} at {self.folder}: {exc}") from exc


def _nearest(route: RouteQuery) -> "qe.Query":
    vector = route.vector
    if isinstance(vector, SparseVector):
        vector = qe.SparseVector(indices=list(vector.indices), values=list(vector.values))
    else:
        vector = [float(x) for x in vector]
    return qe.Query.Nearest(vector, using=route.route)


def _point(point: StoredPoint) -> "qe.Point":
    vectors: dict[str, object] = {name: [float(x) for x in v] for name, v in point.dense.items()}
    for name, sparse in point.sparse.items():
        if sparse:
            vectors[name] = qe.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
    return qe.Point(point.id, vectors, dict(point.payload))


def _filter(filters: Mapping[str, FilterValue] | None) -> "qe.Filter | None":
    if not filters:
        return None
    conditions = []
    for key, value in filters.items():
        or_missing = isinstance(value, OrMissing)
        value = value.value if or_missing else value
        if isinstance(value, (list, tuple, set, frozenset)):
            match = qe.MatchAny(list(value))
        else:
            match = qe.MatchValue(value)
        condition = qe.FieldCondition(key=key, match=match)
        conditions.append(qe.Filter(should=[condition, qe.IsEmptyCondition(key=key)]) if or_missing else condition)
    return qe.Filter(must=conditions)
