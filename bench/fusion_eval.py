"""Learned fusion and refusal on development sets: leave-one-set-out, half/half, no hand labels.

Builds, in a cache outside git (``.bot/devsets/``, never committed), from ``--eval-dir``:

- per FAQ set (E.SUN, COVID-QA): its knowledge without a seeded fifth of its docs; questions
  about the removed items (the set's real questions, their FAQ questions and LLM-written ones)
  are the *topic-adjacent must-refuse* questions (issue 15, 5 b);
- CMRC 2018 (passages): knowledge and questions as they are;
- ``--enhanced FILE`` (repeatable, queries JSONL): LLM-written questions about the answers
  (``bot enhance``), each assigned to the set whose knowledge holds its expected id (5 a).

Each query's evidence (the routes' candidates, :meth:`Retriever.evidence`) is computed once and
cached; models are fit and scored offline. It prints and writes (``--out``, JSON and a PNG):

  (i)   leave-one-set-out: hit@1 / hit@5 per route alone, today's RRF, and the default learned
        fusion fit without that set's corpus;
  (ii)  calibrated on one half, tested on the other half (answerable and must-refuse split
        alike, seeded): fused hit@1 vs the best single route, answered / refused rates;
  (iii) no hand labels: calibrate on the LLM-written questions and the generic off-topic set
        alone, tested on the set's real questions, vs the uncalibrated default.

``--write-default`` fits the default on every set and writes ``bot/data/default_fusion.json``.

    .venv/bin/python bench/fusion_eval.py --enhanced /tmp/devsets/covid.jsonl --enhanced /tmp/devsets/esun.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from _common import DEFAULT_EVAL_DIR, REPO, exit_cleanly_on_sigterm, read_jsonl, table  # noqa: E402

from bot.config import ROUTES, load_settings  # noqa: E402
from bot.decide import level_for  # noqa: E402
from bot.engine import Engine  # noqa: E402
from bot.evaluate import identical_records  # noqa: E402
from bot.fusion import (  # noqa: E402
    DEFAULT_MODEL_FILE,
    GENERIC_GROUP,
    RELATIVE_FEATURES,
    Evidence,
    FusionModels,
    TrainingQuery,
    fit_linear,
    fit_models,
    fusion_rows,
)
from bot.retrieve import Hit, best_per_declared_doc, merge_identical  # noqa: E402
from bot.store.base import ScoredId  # noqa: E402

CACHE = REPO / ".bot" / "devsets"
FAQ_SETS = {"esun": "esun_faq_zh_tw", "covid": "covidqa_faq_en"}
PASSAGE_SETS = {"cmrc": "cmrc2018_trial_zh"}
OFFTOPIC = REPO / "bot" / "data" / "offtopic.jsonl"
KEEP_PAYLOAD = ("item_id", "doc", "source")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR)
    parser.add_argument("--enhanced", type=Path, action="append", default=[], help="LLM-written questions (queries JSONL)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "fusion_eval")
    parser.add_argument("--write-default", action="store_true", help="write bot/data/default_fusion.json")
    parser.add_argument("--answer-rate", type=float, default=0.95)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- building the sets


def doc_of(record: dict) -> str:
    return record.get("doc") or record["id"]


def build_sets(args) -> dict[str, dict]:
    """Each set's knowledge file and labelled questions: answerable, adjacent (must refuse), enhanced."""
    rng = random.Random(args.seed)
    sets: dict[str, dict] = {}
    enhanced = [q for path in args.enhanced for q in read_jsonl(path)]
    for name, folder in {**FAQ_SETS, **PASSAGE_SETS}.items():
        knowledge = read_jsonl(args.eval_dir / folder / "knowledge.jsonl")
        queries = read_jsonl(args.eval_dir / folder / "queries.jsonl")
        ids = {r["id"] for r in knowledge} | {doc_of(r) for r in knowledge}
        held: set[str] = set()
        if name in FAQ_SETS:
            docs = sorted({doc_of(r) for r in knowledge})
            held = set(rng.sample(docs, len(docs) // 5))
        held_ids = {r["id"] for r in knowledge if doc_of(r) in held} | held
        kept = [r for r in knowledge if doc_of(r) not in held]
        folder_out = CACHE / "sets" / name
        folder_out.mkdir(parents=True, exist_ok=True)
        path = folder_out / "knowledge.jsonl"
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")

        def split(records, kind, held_ids=held_ids):
            answerable, adjacent = [], []
            for q in records:
                expected = tuple(q.get("expected") or ())
                if not expected:
                    continue
                (adjacent if set(expected) <= held_ids else answerable).append(
                    {"query": q["query"], "expected": tuple(e for e in expected if e not in held_ids), "kind": kind}
                )
            return answerable, adjacent

        real, real_adjacent = split(queries, "real")
        mine = [q for q in enhanced if set(q.get("expected") or ()) & ids]
        enh, enh_adjacent = split(mine, "enhanced")
        faq_adjacent = [
            {"query": r["question"], "expected": (), "kind": "faq"} for r in knowledge if doc_of(r) in held and r.get("question")
        ]
        for q in real_adjacent + enh_adjacent:
            q["expected"] = ()
        sets[name] = {
            "knowledge": path,
            "real": real,
            "enhanced": enh,
            "adjacent": real_adjacent + faq_adjacent + enh_adjacent,
            "kept_items": len(kept),
            "held_docs": len(held),
        }
    return sets


def project_root() -> Path:
    """A project folder for the dev collections (its own store and SQLite file)."""
    root = CACHE / "project"
    root.mkdir(parents=True, exist_ok=True)
    repo_yml = yaml.safe_load((REPO / "bot.yml").read_text("utf-8"))
    bot_yml = {
        "ingest": {"paths": [], "chunk_max_tokens": 300, "batch_size": 32},
        "lexicon": {k: str(REPO / v) for k, v in repo_yml["lexicon"].items()},
        "embedding": repo_yml["embedding"],
        "retrieval": {**repo_yml["retrieval"], "fusion": "rrf"},
        "traces": {"enabled": False},
    }
    (root / "bot.yml").write_text(yaml.safe_dump(bot_yml, allow_unicode=True), "utf-8")
    (root / "endpoints.yml").write_text(
        "knowledge_store:\n  path: .bot/qdrant\n  collection: dev\nsql:\n  url: sqlite:///.bot/bot.db\n", "utf-8"
    )
    return root


# ---------------------------------------------------------------- evidence


def _short(payload) -> dict:
    payload = payload or {}
    kept = {k: payload[k] for k in KEEP_PAYLOAD if k in payload}
    if "question" in payload or "text" in payload:
        digest = hashlib.blake2b(f"{payload.get('question', '')}\0{payload.get('text', '')}".encode(), digest_size=8)
        kept["question"], kept["text"] = digest.hexdigest(), ""
    return kept


def compact(evidence: Evidence) -> Evidence:
    return Evidence(
        candidates=[ScoredId(c.id, c.score, _short(c.payload)) for c in evidence.candidates],
        routes={r: [ScoredId(h.id, h.score, _short(h.payload)) for h in hits] for r, hits in evidence.routes.items()},
        rerank=dict(evidence.rerank),
    )


def gather_evidence(root: Path, name: str, info: dict, questions: list[str]) -> tuple[dict, dict]:
    """Evidence per question text (cached), and the identical-record map of the set's knowledge."""
    cache_path = CACHE / "evidence" / f"{name}.pkl"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = pickle.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    stamp = hashlib.sha256(info["knowledge"].read_bytes()).hexdigest()
    if cache.get("stamp") != stamp:
        cache = {"stamp": stamp, "evidence": {}}
    settings = load_settings(root)
    with Engine(settings, collection=f"dev-{name}") as engine:
        report = engine.ingest([info["knowledge"]], progress=True)
        print(f"{name}: {report.summary().splitlines()[0]}", flush=True)
        identical = identical_records(c for chunks in engine.iter_chunks([info["knowledge"]]) for c in chunks)
        todo = [q for q in dict.fromkeys(questions) if q not in cache["evidence"]]
        for i, question in enumerate(todo, start=1):
            cache["evidence"][question] = compact(engine.retriever.evidence(question))
            if i % 500 == 0:
                print(f"  {name}: {i}/{len(todo)} questions", flush=True)
                cache_path.write_bytes(pickle.dumps(cache))
    cache_path.write_bytes(pickle.dumps(cache))
    return cache["evidence"], identical


# ---------------------------------------------------------------- scoring


def credited_ids(payload, identical) -> frozenset[str]:
    ids = frozenset(i for i in ((payload or {}).get("item_id"), (payload or {}).get("doc")) if i)
    return ids.union(*(identical[i] for i in ids if i in identical))


def training_query(evidence: Evidence, expected, identical, group: str = "") -> TrainingQuery:
    credited = {c.id: credited_ids(c.payload, identical) for c in evidence.candidates}
    return TrainingQuery(evidence=evidence, expected=frozenset(expected), credited=credited, group=group)


def fused_rank(ordered: list[ScoredId], expected: set[str], identical) -> int | None:
    """Rank of the first expected hit after the retriever's collapsing (one per doc, identical merged)."""
    hits = [Hit(id=c.id, rank=r, fused_score=0.0, route_scores={}, payload=c.payload or {}) for r, c in enumerate(ordered, 1)]
    hits = merge_identical(best_per_declared_doc(hits))
    for rank, hit in enumerate(hits[:10], start=1):
        ids = hit.ids.union(*(identical[i] for i in hit.ids if i in identical))
        if ids & expected:
            return rank
    return None


def route_rank(hits: list[ScoredId], expected: set[str], identical) -> int | None:
    for rank, hit in enumerate(hits[:10], start=1):
        if credited_ids(hit.payload, identical) & expected:
            return rank
    return None


def hit_rates(ranks: list[int | None]) -> tuple[float, float]:
    n = len(ranks) or 1
    return (round(sum(r == 1 for r in ranks if r) / n, 3), round(sum(r <= 5 for r in ranks if r) / n, 3))


def route_table(queries, evidence, identical, models: dict[str, FusionModels | None]) -> dict[str, tuple[float, float]]:
    """hit@1 / hit@5 of each route alone, today's RRF (the candidates' order) and each model."""
    rows: dict[str, list] = {r: [] for r in ROUTES} | {"rrf": []} | {m: [] for m in models}
    for q in queries:
        ev, expected = evidence[q["query"]], set(q["expected"])
        for route in ROUTES:
            rows[route].append(route_rank(ev.routes.get(route) or [], expected, identical))
        rows["rrf"].append(fused_rank(ev.candidates, expected, identical))
        for name, model in models.items():
            ranked, _ = model.rank(ev)
            rows[name].append(fused_rank(ranked, expected, identical))
    return {name: hit_rates(ranks) for name, ranks in rows.items()}


def default_fit(training: list[TrainingQuery]) -> FusionModels:
    matrix, labels, weights = fusion_rows(training, RELATIVE_FEATURES, balance_groups=True)
    return FusionModels(fusion=fit_linear(matrix, labels, RELATIVE_FEATURES, weights=weights), default=True)


def answerable_rates(models: FusionModels, evidence, answerable, refuse) -> tuple[float, float]:
    def level(q):
        ev = evidence[q["query"]]
        ranked, logits = models.rank(ev)
        return level_for(models.answerable_probability(ev, ranked, logits), models.thresholds)

    answered = np.mean([level(q).answers for q in answerable]) if answerable else 0.0
    refused = np.mean([not level(q).answers for q in refuse]) if refuse else 0.0
    return round(float(answered), 3), round(float(refused), 3)


def dense_rates(thresholds, evidence, answerable, refuse) -> tuple[float, float]:
    def level(q):
        ev = evidence[q["query"]]
        tops = [ev.routes[r][0].score for r in ("question_dense", "content_dense") if ev.routes.get(r)]
        return level_for(max(tops) if tops else None, thresholds)

    answered = np.mean([level(q).answers for q in answerable]) if answerable else 0.0
    refused = np.mean([not level(q).answers for q in refuse]) if refuse else 0.0
    return round(float(answered), 3), round(float(refused), 3)


def halves(items: list, rng: random.Random) -> tuple[list, list]:
    items = list(items)
    rng.shuffle(items)
    return items[: len(items) // 2], items[len(items) // 2 :]


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    sets = build_sets(args)
    root = project_root()
    offtopic = read_jsonl(OFFTOPIC)
    evidence, identical = {}, {}
    for name, info in sets.items():
        questions = [q["query"] for key in ("real", "enhanced", "adjacent") for q in info[key]] + [q["query"] for q in offtopic]
        evidence[name], identical[name] = gather_evidence(root, name, info, questions)
        print(f"{name}: {info['kept_items']} items kept ({info['held_docs']} docs held out), {len(info['real'])} real, "
              f"{len(info['enhanced'])} enhanced answerable, {len(info['adjacent'])} topic-adjacent must-refuse", flush=True)
    # evaluation units: each set's real questions and, as a set of its own, its LLM-written ones
    units = {}
    for name, info in sets.items():
        units[name] = (name, info["real"])
        if info["enhanced"]:
            units[f"{name}-enh"] = (name, info["enhanced"])

    def training(unit_names):
        return [
            training_query(evidence[corpus][q["query"]], q["expected"], identical[corpus], group=unit)
            for unit in unit_names
            for corpus, queries in [units[unit]]
            for q in queries
        ]

    results: dict = {"seed": args.seed, "sets": {n: {k: len(v) if isinstance(v, list) else v for k, v in i.items() if k != "knowledge"} for n, i in sets.items()}}

    # (i) leave one corpus out: the default is fit without every unit of the evaluated set's corpus
    loso = {}
    for unit, (corpus, queries) in units.items():
        model = default_fit(training([u for u, (c, _) in units.items() if c != corpus]))
        loso[unit] = route_table(queries, evidence[corpus], identical[corpus], {"default (LOSO)": model})
    results["loso"] = loso
    names = [*ROUTES, "rrf", "default (LOSO)"]
    print("\n(i) leave-one-set-out, hit@1 / hit@5 (default fit without the set's corpus)")
    print(table(["set", *names], [[u, *(f"{r[n][0]:.3f} / {r[n][1]:.3f}" for n in names)] for u, r in loso.items()]))

    # (ii) calibrated on one half, tested on the other (answerable and must-refuse alike)
    half = {}
    plot_yes, plot_no = [], []
    for corpus, info in sets.items():
        rng = random.Random(f"{args.seed}-{corpus}")
        labelled = info["real"] + info["enhanced"]
        train_q, test_q = halves(labelled, rng)
        train_r, test_r = halves(info["adjacent"], rng)
        train = [training_query(evidence[corpus][q["query"]], q["expected"], identical[corpus], "train") for q in train_q + train_r]
        train += [training_query(evidence[corpus][q["query"]], (), identical[corpus], GENERIC_GROUP) for q in offtopic]
        fallback = default_fit(training([u for u, (c, _) in units.items() if c != corpus])).fusion
        models, _, _ = fit_models(train, answer_rate=args.answer_rate, info={"collection": f"dev-{corpus}"}, fallback=fallback)
        row = {"ranking": models.info.get("ranking", "fitted"), "first_hits": models.info["first_hits"]}
        for kind in ("real", "enhanced"):
            test = [q for q in test_q if q["kind"] == kind]
            if not test:
                continue
            ranks = route_table(test, evidence[corpus], identical[corpus], {"calibrated": models})
            best_route = max(ROUTES, key=lambda r: ranks[r][0])
            row[kind] = {"n": len(test), "calibrated": ranks["calibrated"], "best_route": best_route, "best_route_hits": ranks[best_route], "rrf": ranks["rrf"]}
        if models.answerable is not None:
            answered, refused = answerable_rates(models, evidence[corpus], test_q, test_r)
            row["answered"], row["refused_adjacent"], row["n_adjacent_test"] = answered, refused, len(test_r)
            row["thresholds"] = vars(models.thresholds)
            for q in test_q + test_r:
                ev = evidence[corpus][q["query"]]
                ranked, logits = models.rank(ev)
                (plot_yes if q["expected"] else plot_no).append(models.answerable_probability(ev, ranked, logits))
        half[corpus] = row
    results["half"] = half
    print("\n(ii) calibrated on half, tested on the other half")
    rows = []
    for corpus, row in half.items():
        for kind in ("real", "enhanced"):
            if kind in row:
                r = row[kind]
                rows.append([f"{corpus} {kind}", r["n"], f"{r['calibrated'][0]:.3f} / {r['calibrated'][1]:.3f}",
                             f"{r['best_route']} {r['best_route_hits'][0]:.3f}", f"{r['rrf'][0]:.3f}",
                             row.get("answered", "-"), row.get("refused_adjacent", "-"), row.get("n_adjacent_test", "-")])
    print(table(["set", "n", "calibrated hit@1/@5", "best route hit@1", "rrf hit@1", "answered", "refused adj.", "n adj."], rows))

    # (iii) no hand labels: LLM-written questions + generic off-topic only, tested on real questions
    nolabel = {}
    for corpus, info in sets.items():
        if not info["enhanced"] or not info["real"]:
            continue
        train = [training_query(evidence[corpus][q["query"]], q["expected"], identical[corpus]) for q in info["enhanced"]]
        train += [training_query(evidence[corpus][q["query"]], (), identical[corpus], GENERIC_GROUP) for q in offtopic]
        loso_default = default_fit(training([u for u, (c, _) in units.items() if c != corpus]))
        models, _, _ = fit_models(train, answer_rate=args.answer_rate, info={"collection": f"dev-{corpus}"}, fallback=loso_default.fusion)
        ranks = route_table(info["real"], evidence[corpus], identical[corpus], {"no-labels": models, "default (LOSO)": loso_default})
        adjacent_real = [q for q in info["adjacent"] if q["kind"] == "real"] or info["adjacent"]
        settings = load_settings(REPO)
        nolabel[corpus] = {
            "hit": {k: ranks[k] for k in ("no-labels", "default (LOSO)", "rrf")},
            "no_labels_rates": answerable_rates(models, evidence[corpus], info["real"], adjacent_real),
            "default_dense_rates": dense_rates(settings.decision.dense, evidence[corpus], info["real"], adjacent_real),
            "n_adjacent": len(adjacent_real),
            "ranking": models.info.get("ranking", "fitted"),
        }
    results["no_labels"] = nolabel
    print("\n(iii) no hand labels (enhance -> calibrate), tested on the real questions")
    print(table(
        ["set", "hit@1 no-labels", "hit@1 default", "answered/refused no-labels", "answered/refused default (dense)", "n adj."],
        [[c, r["hit"]["no-labels"][0], r["hit"]["default (LOSO)"][0], "%.3f / %.3f" % r["no_labels_rates"],
          "%.3f / %.3f" % r["default_dense_rates"], r["n_adjacent"]] for c, r in nolabel.items()],
    ))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False), "utf-8")
    if plot_yes:
        from bot.calibrate import plot_scores
        from bot.evaluate import choose_thresholds

        plot_scores(plot_yes, plot_no, choose_thresholds(plot_yes, plot_no), args.out.with_suffix(".png"),
                    signal="answerable (test halves, all sets)", title="Answerable probability: answerable vs topic-adjacent")
    print(f"\nwritten: {args.out.with_suffix('.json')}" + (f", {args.out.with_suffix('.png')}" if plot_yes else ""))

    if args.write_default:
        model = default_fit(training(list(units)))
        model = replace(model, info={"fitted": str(np.datetime64("today")), "note": "default: relative features, fit by bench/fusion_eval.py --write-default",
                                     "sets": list(units), "questions": sum(len(q) for _, q in units.values())})
        path = REPO / "bot" / "data" / DEFAULT_MODEL_FILE
        path.write_text(json.dumps(model.as_dict(), indent=1), "utf-8")
        print(f"default model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
