"""One contract for every vector-store backend: Qdrant Edge, qdrant-client in memory and on disk.

Small hand-made vectors (4-d dense, a few sparse terms), so no model is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from bot.embed.base import SparseVector
from bot.errors import StoreError, StoreLockedError
from bot.store.base import CollectionSchema, OrMissing, RouteQuery, StoredPoint
from bot.store.edge import EdgeStore

REPO = Path(__file__).resolve().parents[2]

SCHEMA = CollectionSchema(
    dense={"question_dense": 4, "content_dense": 4},
    sparse={"question_sparse": True, "content_sparse": True},
    keyword_indexes=("doc", "kind", "language"),
)
WIDER = CollectionSchema(
    dense={"question_dense": 5, "content_dense": 5},
    sparse={"question_sparse": True, "content_sparse": True},
)


def pid(n: int) -> str:
    return str(uuid.UUID(int=n))


def sparse(**terms: float) -> SparseVector:
    """``sparse(t1=1.0, t5=2.0)`` -> indices [1, 5]."""
    pairs = sorted((int(name[1:]), float(value)) for name, value in terms.items())
    return SparseVector([i for i, _ in pairs], [v for _, v in pairs])


# Two FAQ items (question and content side) and two passages (content side only).
POINTS = [
    StoredPoint(
        pid(1),
        {"question_dense": [1.0, 0.0, 0.0, 0.0], "content_dense": [0.9, 0.1, 0.0, 0.0]},
        {"question_sparse": sparse(t1=1, t2=1), "content_sparse": sparse(t1=1, t3=1)},
        {"item_id": "faq-1", "doc": "a", "kind": "faq", "language": "en", "text": "one",
         "metadata": {"product": "note", "topic": "refund"}},
    ),
    StoredPoint(
        pid(2),
        {"question_dense": [0.0, 1.0, 0.0, 0.0], "content_dense": [0.1, 0.9, 0.1, 0.0]},
        {"question_sparse": sparse(t2=1, t4=1), "content_sparse": sparse(t4=1, t3=1)},
        {"item_id": "faq-2", "doc": "b", "kind": "faq", "language": "zh", "text": "two",
         "metadata": {"product": "pen", "topic": "hardware"}},
    ),
    StoredPoint(
        pid(3),
        {"content_dense": [0.0, 0.0, 1.0, 0.0]},
        {"content_sparse": sparse(t5=1, t3=1)},
        {"item_id": pid(3), "doc": "c", "kind": "passage", "language": "en", "text": "three",
         "metadata": {"product": "note"}},
    ),
    StoredPoint(
        pid(4),
        {"content_dense": [0.0, 0.0, 0.2, 1.0]},
        {"content_sparse": sparse(t6=1, t3=1)},
        {"item_id": pid(4), "doc": "d", "kind": "passage", "language": "zh", "text": "four",
         "metadata": {"product": "pen"}},
    ),
]
VECTORS = {p.id: p for p in POINTS}


def search(store, routes, *, fusion="rrf", limit=10, filters=None, route_payload=(), rrf_k=60):
    return store.search(
        routes, fusion=fusion, rrf_k=rrf_k, limit=limit, candidates=20,
        filters=filters, route_payload=route_payload,
    )


def all_routes(weights=(1.0, 1.0, 1.0, 1.0)):
    q = [0.8, 0.3, 0.1, 0.0]
    return [
        RouteQuery("question_dense", q, weights[0]),
        RouteQuery("question_sparse", sparse(t2=1), weights[1]),
        RouteQuery("content_dense", q, weights[2]),
        RouteQuery("content_sparse", sparse(t3=1, t5=1), weights[3]),
    ]


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def filled(store):
    store.ensure_collection(SCHEMA)
    store.upsert(POINTS)
    return store


# ---------------------------------------------------------------- collection


def test_empty_store_search_returns_empty(store):
    assert store.count() == 0
    assert search(store, all_routes()).fused == []
    store.ensure_collection(SCHEMA)
    assert store.count() == 0
    assert store.existing_ids([pid(1)]) == set()
    after = search(store, all_routes())
    assert after.fused == [] and all(not hits for hits in after.routes.values())
    assert search(store, []).fused == []


def test_a_missing_collection_reads_as_empty(store):
    """Before ensure_collection (or after drop) every read answers "nothing", on every backend."""
    assert store.count() == 0
    assert search(store, all_routes()).fused == []
    assert store.existing_ids([pid(1)]) == set()


def test_ensure_collection_is_idempotent(store):
    store.ensure_collection(SCHEMA)
    store.ensure_collection(SCHEMA)
    store.upsert(POINTS)
    store.ensure_collection(SCHEMA)
    assert store.count() == len(POINTS)
    assert search(store, all_routes()).fused


def test_ensure_with_another_dimension_raises_and_keeps_the_collection(filled):
    with pytest.raises(StoreError, match="--rebuild"):
        filled.ensure_collection(WIDER)
    # the failed check must leave the existing collection usable, as it was
    assert filled.count() == len(POINTS)
    assert {h.id for h in search(filled, all_routes()).fused} == set(VECTORS)
    filled.ensure_collection(SCHEMA)
    assert filled.count() == len(POINTS)


def test_reopen_with_another_dimension_raises(open_persistent_store):
    open_store = open_persistent_store
    first = open_store()
    first.ensure_collection(SCHEMA)
    first.upsert(POINTS)
    first.close()
    second = open_store()
    with pytest.raises(StoreError, match="--rebuild"):
        second.ensure_collection(WIDER)
    second.close()
    third = open_store()  # nothing was damaged on disk
    third.ensure_collection(SCHEMA)
    assert third.count() == len(POINTS)


# ---------------------------------------------------------------- writes


def test_upsert_count_and_existing_ids(store):
    store.ensure_collection(SCHEMA)
    store.upsert(POINTS[:2])
    assert store.count() == 2
    store.upsert(POINTS[2:])
    assert store.count() == 4
    assert store.existing_ids([pid(1), pid(3), pid(99)]) == {pid(1), pid(3)}
    assert store.existing_ids([]) == set()
    store.upsert([])
    assert store.count() == 4


def test_upsert_same_id_replaces_payload_and_vectors(filled):
    old = POINTS[2]
    new = StoredPoint(
        old.id,
        {"content_dense": [1.0, 0.0, 0.0, 0.0]},
        {"content_sparse": sparse(t7=1)},
        {"item_id": old.id, "doc": "c2", "kind": "passage", "language": "en", "text": "three v2",
         "metadata": {"product": "pen"}},
    )
    filled.upsert([new])
    assert filled.count() == len(POINTS)
    result = search(filled, [RouteQuery("content_sparse", sparse(t7=1))], route_payload=("doc",))
    assert [h.id for h in result.fused] == [old.id]
    assert result.fused[0].payload["text"] == "three v2" and result.fused[0].payload["doc"] == "c2"
    assert result.routes["content_sparse"][0].payload == {"doc": "c2"}
    # the old sparse term is gone with the old vector, and so is the old payload
    assert old.id not in {h.id for h in search(filled, [RouteQuery("content_sparse", sparse(t5=1))]).fused}
    assert search(filled, all_routes(), filters={"doc": "c"}).fused == []


def test_delete_ignores_unknown_ids(filled):
    filled.delete([pid(1), pid(99)])
    assert filled.count() == 3
    assert filled.existing_ids([pid(1), pid(2)]) == {pid(2)}
    filled.delete([pid(98)])
    filled.delete([])
    assert filled.count() == 3
    assert pid(1) not in {h.id for h in search(filled, all_routes()).fused}


def test_drop_then_count_is_zero(filled):
    filled.drop()
    assert filled.count() == 0
    assert search(filled, all_routes()).fused == []
    filled.ensure_collection(SCHEMA)  # and the collection can be made again
    assert filled.count() == 0
    filled.upsert(POINTS[:1])
    assert filled.count() == 1


# ---------------------------------------------------------------- search


def test_search_fuses_and_keeps_each_routes_raw_scores(filled):
    routes = all_routes()
    result = search(filled, routes, route_payload=("item_id", "doc"))
    assert {h.id for h in result.fused} == set(VECTORS)
    scores = [h.score for h in result.fused]
    assert scores == sorted(scores, reverse=True)
    for hit in result.fused:
        assert hit.payload == VECTORS[hit.id].payload  # fused hits carry the full payload
    assert set(result.routes) == {r.route for r in routes}

    query = routes[0].vector
    for route in ("question_dense", "content_dense"):
        hits = result.routes[route]
        stored = [p for p in POINTS if route in p.dense]
        assert {h.id for h in hits} == {p.id for p in stored}  # only points that have this vector
        for hit in hits:
            assert hit.score == pytest.approx(cosine(query, VECTORS[hit.id].dense[route]), abs=1e-4)
            assert hit.payload == {k: VECTORS[hit.id].payload[k] for k in ("item_id", "doc")}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    # sparse: only points sharing a query term, scored by dot product (with IDF, so all > 0)
    assert {h.id for h in result.routes["question_sparse"]} == {pid(1), pid(2)}
    content_sparse = result.routes["content_sparse"]
    assert {h.id for h in content_sparse} == set(VECTORS)  # t3 is everywhere
    assert content_sparse[0].id == pid(3)  # the only point also holding t5
    assert all(h.score > 0 for h in content_sparse)


def test_route_lists_hold_at_most_limit_hits(filled):
    result = search(filled, all_routes(), limit=2)
    assert len(result.fused) == 2
    assert all(len(hits) <= 2 for hits in result.routes.values())
    assert [h.id for h in result.routes["content_dense"]] == [pid(1), pid(2)]


def test_idf_makes_a_rare_term_outweigh_a_common_one(filled):
    # t3 is in every content vector, t6 only in point 4: with equal query weights, t6 decides
    result = search(filled, [RouteQuery("content_sparse", sparse(t3=1, t6=1))])
    hits = result.routes["content_sparse"]
    assert hits[0].id == pid(4)
    assert hits[0].score > 2 * hits[1].score


DENSE_FIRST = RouteQuery("content_dense", [1.0, 0.0, 0.0, 0.0])  # its own order: 1, 2, then 3 and 4
LEXICAL_FIRST = RouteQuery("content_sparse", sparse(t5=1, t3=1))  # its own order: 3, then 1, 2, 4


def weighted(dense: float, lexical: float) -> list[RouteQuery]:
    return [
        RouteQuery(DENSE_FIRST.route, DENSE_FIRST.vector, dense),
        RouteQuery(LEXICAL_FIRST.route, LEXICAL_FIRST.vector, lexical),
    ]


def test_rrf_weights_change_the_order(filled):
    orders = {
        weights: [h.id for h in search(filled, weighted(*weights)).fused]
        for weights in ((1.0, 1.0), (10.0, 1.0), (1.0, 10.0))
    }
    assert orders[(10.0, 1.0)] != orders[(1.0, 10.0)]


def test_rrf_weights_disjoint_routes_follow_the_heavier_route(filled):
    # question routes only hold points 1 and 2, the passage-only sparse term only points 3 and 4
    routes = [RouteQuery("question_dense", [1.0, 0.2, 0.0, 0.0], 10.0), RouteQuery("content_sparse", sparse(t6=1, t5=1), 1.0)]
    assert [h.id for h in search(filled, routes).fused][:2] == [pid(1), pid(2)]
    routes = [RouteQuery("question_dense", [1.0, 0.2, 0.0, 0.0], 1.0), RouteQuery("content_sparse", sparse(t6=1, t5=1), 10.0)]
    assert {h.id for h in search(filled, routes).fused[:2]} == {pid(3), pid(4)}


@pytest.mark.parametrize("heavy", ["content_dense", "content_sparse"])
def test_rrf_route_weighted_10x_dominates(filled, heavy):
    """A route weighted 10x against 1x decides the top hit, even when both routes return every point.

    Qdrant's weighted RRF scores a rank as ``1 / (rank / weight + k - 1)``: at k = 1 that is
    ``weight / rank``, a true multiplier (the project's default rrf_k); at k = 60 a weight
    barely matters, which is why bot.yml documents a small k.
    """
    routes = weighted(10.0, 1.0) if heavy == "content_dense" else weighted(1.0, 10.0)
    result = search(filled, routes, rrf_k=1)
    assert result.fused[0].id == result.routes[heavy][0].id


def test_dbsf_fusion(filled):
    result = search(filled, all_routes(), fusion="dbsf")
    assert {h.id for h in result.fused} == set(VECTORS)
    scores = [h.score for h in result.fused]
    assert scores == sorted(scores, reverse=True)
    assert result.fused[0].id == pid(1)  # first or second in every route that has it
    rrf = search(filled, all_routes())
    assert scores != [h.score for h in rrf.fused]  # not the rank-based scores


# ---------------------------------------------------------------- filters


def ids(result) -> set[str]:
    return {h.id for h in result.fused}


def test_filter_by_value(filled):
    result = search(filled, all_routes(), filters={"doc": "a"}, route_payload=("doc",))
    assert ids(result) == {pid(1)}
    assert all(h.payload["doc"] == "a" for hits in result.routes.values() for h in hits)
    assert ids(search(filled, all_routes(), filters={"language": "zh"})) == {pid(2), pid(4)}
    assert ids(search(filled, all_routes(), filters={"kind": "passage", "language": "en"})) == {pid(3)}


def test_filter_by_list_matches_any(filled):
    assert ids(search(filled, all_routes(), filters={"doc": ["a", "d"]})) == {pid(1), pid(4)}
    assert ids(search(filled, all_routes(), filters={"doc": ("b",)})) == {pid(2)}


def test_filter_on_nested_metadata(filled):
    result = search(filled, all_routes(), filters={"metadata.product": "pen"})
    assert ids(result) == {pid(2), pid(4)}
    assert all(
        VECTORS[h.id].payload["metadata"]["product"] == "pen"
        for hits in result.routes.values() for h in hits
    )
    assert ids(search(filled, all_routes(), filters={"metadata.topic": ["refund", "hardware"]})) == {pid(1), pid(2)}


def test_or_missing_filter_keeps_items_without_the_field(filled):
    # points 1 and 2 have topics refund and hardware; points 3 and 4 have none
    assert ids(search(filled, all_routes(), filters={"metadata.topic": OrMissing("refund")})) == {pid(1), pid(3), pid(4)}
    assert ids(search(filled, all_routes(), filters={"metadata.topic": OrMissing(["hardware"])})) == {pid(2), pid(3), pid(4)}
    strict = search(filled, all_routes(), filters={"metadata.topic": "refund"})
    assert ids(strict) == {pid(1)}


def test_filter_without_match_gives_nothing(filled):
    for filters in ({"doc": "zzz"}, {"metadata.product": "car"}, {"doc": "a", "language": "zh"}):
        result = search(filled, all_routes(), filters=filters)
        assert result.fused == []
        assert all(hits == [] for hits in result.routes.values())


def test_points_without_question_vectors_are_found_by_content_routes(filled):
    query = [0.0, 0.0, 1.0, 0.1]  # close to the passages, which have no question side
    result = search(filled, [RouteQuery("question_dense", query), RouteQuery("content_dense", query)])
    assert {pid(3), pid(4)} <= ids(result)
    assert [h.id for h in result.routes["content_dense"]][:2] == [pid(3), pid(4)]
    assert {h.id for h in result.routes["question_dense"]} == {pid(1), pid(2)}
    content_only = search(filled, [RouteQuery("content_dense", query), RouteQuery("content_sparse", sparse(t6=1))])
    assert ids(content_only) == set(VECTORS) and content_only.fused[0].id in {pid(3), pid(4)}
    assert [h.id for h in search(filled, [RouteQuery("content_sparse", sparse(t6=1))]).fused] == [pid(4)]


# ---------------------------------------------------------------- persistence and ownership


def test_data_survives_close_and_reopen(open_persistent_store):
    open_store = open_persistent_store
    first = open_store()
    first.ensure_collection(SCHEMA)
    first.upsert(POINTS)
    first.delete([pid(2)])
    expected = [(h.id, h.score) for h in search(first, all_routes()).fused]
    first.close()
    second = open_store()
    assert second.count() == 3
    assert second.existing_ids(list(VECTORS)) == {pid(1), pid(3), pid(4)}
    second.ensure_collection(SCHEMA)
    again = search(second, all_routes())
    assert [h.id for h in again.fused] == [i for i, _ in expected]
    assert again.fused[0].payload == VECTORS[again.fused[0].id].payload


OPEN_IN_CHILD = """
import sys
from pathlib import Path
from bot.errors import StoreLockedError
from bot.store.edge import EdgeStore
try:
    store = EdgeStore(Path(sys.argv[1]), sys.argv[2])
except StoreLockedError as exc:
    print("LOCKED:", exc)
    sys.exit(3)
store.close()
print("OPENED")
"""


def open_in_another_process(path: Path, collection: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", OPEN_IN_CHILD, str(path), collection],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_edge_store_has_one_owner_process(tmp_path):
    owner = EdgeStore(tmp_path, "c")
    try:
        owner.ensure_collection(SCHEMA)
        blocked = open_in_another_process(tmp_path, "c")
        assert blocked.returncode == 3, blocked.stderr
        assert f"pid {os.getpid()}" in blocked.stdout
        other = open_in_another_process(tmp_path, "other")  # another collection, same folder
        assert other.returncode == 0 and "OPENED" in other.stdout, other.stderr
    finally:
        owner.close()
    after = open_in_another_process(tmp_path, "c")
    assert after.returncode == 0 and "OPENED" in after.stdout, after.stderr


def test_lock_error_is_a_store_error():
    assert issubclass(StoreLockedError, StoreError)

