"""A Qdrant server or cluster through ``qdrant-client`` (its local mode too, for tests).

    QdrantStore("knowledge", url="http://qdrant:6333", api_key=...)   # server or cluster
    QdrantStore("knowledge", location=":memory:")                       # local mode
"""

from __future__ import annotations

from typing import Mapping, Sequence

from qdrant_client import QdrantClient, models

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

__all__ = ["QdrantStore"]


class QdrantStore(VectorStore):
    """A collection on a Qdrant server (``url``) or in qdrant-client's local mode (``location``/``path``)."""

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        location: str | None = None,
        timeout: float = 10.0,
    ):
        self.collection = collection
        self._where = url or path or location
        try:
            if url:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
            elif path:
                self._client = QdrantClient(path=path)
            else:
                self._client = QdrantClient(location=location or ":memory:")
        except Exception as exc:
            raise StoreError(f"cannot open Qdrant at {self._where}: {exc}") from exc

    def ensure_collection(self, schema: CollectionSchema) -> None:
        if not self._call("list collections", self._client.collection_exists, self.collection):
            self._call(
                "create the collection",
                self._client.create_collection,
                self.collection,
                vectors_config={
                    name: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                    for name, dim in schema.dense.items()
                },
                sparse_vectors_config={
                    name: models.SparseVectorParams(modifier=models.Modifier.IDF if idf else None)
                    for name, idf in schema.sparse.items()
                },
            )
            for key in schema.keyword_indexes:
                self._call(
                    "index a payload field",
                    self._client.create_payload_index,
                    self.collection,
                    key,
                    models.PayloadSchemaType.KEYWORD,
                )
            return
        self._check_schema(schema)

    def _check_schema(self, schema: CollectionSchema) -> None:
        params = self._call("read the collection", self._client.get_collection, self.collection).config.params
        dense = {name: p.size for name, p in (params.vectors or {}).items()}
        sparse = set((params.sparse_vectors or {}).keys())
        if dense != dict(schema.dense) or sparse != set(schema.sparse):
            raise StoreError(
                f"collection {self.collection!r} at {self._where} has vectors {dense} / {sorted(sparse)}, "
                f"but the configured encoders make {dict(schema.dense)} / {sorted(schema.sparse)}; "
                "rebuild it with `bot ingest --rebuild`"
            )

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        if points:
            self._call("write", self._client.upsert, self.collection, [_point(p) for p in points])

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._call(
                "delete", self._client.delete, self.collection, models.PointIdsList(points=list(ids))
            )

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids or not self._client.collection_exists(self.collection):
            return set()
        records = self._call(
            "read points", self._client.retrieve, self.collection, list(ids), with_payload=False
        )
        return {str(record.id) for record in records}

    def count(self) -> int:
        if not self._client.collection_exists(self.collection):
            return 0
        return self._call("count", self._client.count, self.collection, exact=True).count

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
        if not routes or not self._client.collection_exists(self.collection):
            return SearchResult(fused=[], routes={})
        condition = _filter(filters)
        fuse = (
            models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=[float(r.weight) for r in routes]))
            if fusion == "rrf"
            else models.FusionQuery(fusion=models.Fusion.DBSF)
        )
        fused = models.QueryRequest(
            prefetch=[
                models.Prefetch(query=_vector(r), using=r.route, limit=candidates, filter=condition)
                for r in routes
            ],
            query=fuse,
            filter=condition,
            limit=limit,
            with_payload=True,
        )
        singles = [
            models.QueryRequest(
                query=_vector(r),
                using=r.route,
                filter=condition,
                limit=limit,
                with_payload=list(route_payload) if route_payload else False,
            )
            for r in routes
        ]
        responses = self._call(
            "query", self._client.query_batch_points, self.collection, [fused, *singles]
        )
        return SearchResult(
            fused=[
                ScoredId(str(p.id), float(p.score), p.payload or {}) for p in responses[0].points
            ],
            routes={
                route.route: [
                    ScoredId(str(p.id), float(p.score), p.payload) for p in response.points
                ]
                for route, response in zip(routes, responses[1:])
            },
        )

    def drop(self) -> None:
        if self._client.collection_exists(self.collection):
            self._call("delete the collection", self._client.delete_collection, self.collection)

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Qdrant at {self._where} could not {what}: {exc}") from exc


def _vector(route: RouteQuery):
    if isinstance(route.vector, SparseVector):
        return models.SparseVector(
            indices=list(route.vector.indices), values=[float(v) for v in route.vector.values]
        )
    return [float(x) for x in route.vector]


def _point(point: StoredPoint) -> models.PointStruct:
    vectors: dict[str, object] = {name: [float(x) for x in v] for name, v in point.dense.items()}
    for name, sparse in point.sparse.items():
        if sparse:
            vectors[name] = models.SparseVector(
                indices=list(sparse.indices), values=[float(v) for v in sparse.values]
            )
    return models.PointStruct(id=point.id, vector=vectors, payload=dict(point.payload))


def _filter(filters: Mapping[str, FilterValue] | None) -> models.Filter | None:
    if not filters:
        return None
    conditions = []
    for key, value in filters.items():
        or_missing = isinstance(value, OrMissing)
        value = value.value if or_missing else value
        if isinstance(value, (list, tuple, set, frozenset)):
            match = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        condition = models.FieldCondition(key=key, match=match)
        if or_missing:
            missing = models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
            condition = models.Filter(should=[condition, missing])
        conditions.append(condition)
    return models.Filter(must=conditions)
