"""The ``bot`` command through click's CliRunner, against a real project folder in tmp (``--root``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import kb_project as kb
from bot.cli import cli
from bot.config import ROUTES, Thresholds, load_settings

REPO = Path(__file__).resolve().parents[1]

KNOWLEDGE = [
    {"id": "k-refund", "question": "年付套餐可以退款吗？", "answer": "年付套餐在付款后 7 天内可以全额退款。", "doc": "billing"},
    {"id": "k-password", "question": "How do I reset my password?", "answer": "Click Forgot password on the sign-in page.", "doc": "account"},
    {"id": "k-pen", "question": "智能笔充一次电能用多久？", "answer": "充满电后可以连续书写约 12 小时。", "doc": "pen"},
    {"id": "k-export", "question": "Can I export all my notes?", "answer": "Yes: Settings, then Export, as Markdown or PDF."},
    {"id": "p-shipping", "title": "发货", "text": "订单付款后 48 小时内发货，一般 2 到 4 天送达。", "doc": "shipping"},
    {"id": "p-warranty", "title": "Warranty", "text": "The smart pen has a one-year warranty covering manufacturing defects.", "doc": "warranty"},
]
QUERIES = [
    {"query": "年付的套餐能退钱吗", "expected": ["k-refund"]},
    {"query": "I forgot my password", "expected": ["k-password"]},
    {"query": "智能笔电池能撑多久", "expected": ["k-pen"]},
    {"query": "how long is the warranty of the pen", "expected": ["warranty"]},  # matches the doc
    {"query": "付款后多久发货", "expected": ["p-shipping"]},
    {"query": "what is the capital of France", "expected": []},  # must refuse
]


def run(root: Path, *args: str):
    result = CliRunner().invoke(cli, ["--root", str(root), *args])
    return result


def ok(result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return kb.write_project(tmp_path_factory.mktemp("cli") / "project")


@pytest.fixture(scope="module")
def first_ingest(project):
    return run(project, "ingest")


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("eval")
    knowledge, queries = folder / "knowledge.jsonl", folder / "queries.jsonl"
    knowledge.write_text("\n".join(json.dumps(k, ensure_ascii=False) for k in KNOWLEDGE) + "\n", "utf-8")
    queries.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QUERIES) + "\n", "utf-8")
    return knowledge, queries


# ---------------------------------------------------------------- ingest


def test_ingest_prints_the_summary(first_ingest):
    out = ok(first_ingest)
    assert "documents: 3 added, 0 updated, 0 removed, 0 unchanged, 0 failed" in out
    assert "chunks:    10 added" in out
    assert re.search(r"embedded 10 chunks in [\d.]+ s", out)
    assert "verified: every chunk is in the store" in out


def test_ingest_twice_embeds_nothing(project, first_ingest):
    ok(first_ingest)
    out = ok(run(project, "ingest"))
    assert "embedded 0 chunks" in out
    assert "documents: 0 added, 0 updated, 0 removed, 3 unchanged, 0 failed" in out


def test_ingest_json(project, first_ingest):
    ok(first_ingest)
    report = json.loads(ok(run(project, "ingest", "--json")))
    assert report["complete"] is True and report["embedded"] == 0
    assert report["documents"] == {"unchanged": 3} and report["failures"] == []


# ---------------------------------------------------------------- search


def test_search_json(project, first_ingest):
    ok(first_ingest)
    data = json.loads(ok(run(project, "search", "年付的套餐能退钱吗", "--json")))
    assert data["query"] == "年付的套餐能退钱吗"
    assert data["decision"]["level"] == "answer" and data["decision"]["signal"] == "dense"
    assert set(data["decision"]["thresholds"]) == {"answer", "caution", "sources"}
    hits = data["hits"]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["item_id"] == "faq-zh-refund"
    assert set(hits[0]["route_scores"]) == set(ROUTES)
    assert data["decision"]["score"] == pytest.approx(
        max(hits[0]["route_scores"]["question_dense"], hits[0]["route_scores"]["content_dense"])
    )
    assert {"embed", "search"} <= set(data["timings_ms"])


def test_search_with_a_filter(project, first_ingest):
    ok(first_ingest)
    data = json.loads(ok(run(project, "search", "battery", "--filter", "product=nimbus-pen", "--json", "--top-k", "10")))
    assert {h["item_id"] for h in data["hits"]} == {"faq-zh-pen-battery", "faq-en-pen-pair"}
    assert all(h["metadata"]["product"] == "nimbus-pen" for h in data["hits"])
    both = json.loads(ok(run(project, "search", "battery", "--filter", "product=nimbus-pen,nimbus-note",
                             "--filter", "language=en", "--json", "--top-k", "10")))
    assert {h["item_id"] for h in both["hits"]} == {"faq-en-password", "faq-en-pen-pair", "faq-en-export"}


def test_search_prints_hits_for_people(project, first_ingest):
    ok(first_ingest)
    out = ok(run(project, "search", "I forgot my password, how can I reset it?"))
    assert re.match(r"decision: answer \(dense 0\.\d{4}\)", out)
    assert "[1] faq  (faq-en-password)" in out
    assert "content_dense=0." in out and "Q: How do I reset my password?" in out
    assert f"source: {kb.FAQ}" in out


def test_a_bad_filter_is_a_usage_error(project):
    result = run(project, "search", "battery", "--filter", "product")
    assert result.exit_code == 2 and "NAME=VALUE" in result.output


# ---------------------------------------------------------------- eval and calibrate


def test_eval_json(project, eval_files):
    knowledge, queries = eval_files
    metrics = json.loads(ok(run(project, "eval", "--knowledge", str(knowledge), "--queries", str(queries), "--json")))
    assert metrics["n_answerable"] == 5 and metrics["n_refuse"] == 1
    for key in ("hit_at_1", "hit_at_5", "mrr_at_10", "answered_rate", "refused_rate"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["hit_at_5"] >= metrics["hit_at_1"] >= 0.6
    assert metrics["hit_at_1"] <= metrics["mrr_at_10"]  # every rank-1 hit adds a full 1/rank
    assert set(metrics["routes"]) == set(ROUTES)
    assert metrics["queries_with_hits"] == 5
    for route, row in metrics["routes"].items():
        assert set(row) == {"hit_at_1", "hit_at_5", "mrr_at_10", "queries_with_hits"}
        assert 0.0 <= row["hit_at_1"] <= row["hit_at_5"] <= 1.0, route
    assert metrics["routes"]["content_dense"]["hit_at_5"] == 1.0  # 6 items: everything is in the top 5
    assert sum(metrics["levels"].values()) == 6 and metrics["signal"] == "dense"


def test_eval_twice_reuses_its_collection(project, eval_files):
    knowledge, queries = eval_files
    result = run(project, "eval", "--knowledge", str(knowledge), "--queries", str(queries))
    out = ok(result)
    assert "5 answerable, 1 must-refuse; signal: dense" in out
    assert re.search(r"^fused\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.MULTILINE)
    assert "embedded 0 chunks" in result.stderr  # the ingest summary goes to stderr


def test_eval_of_passages_marks_the_question_routes_as_empty(project, tmp_path):
    knowledge, queries = tmp_path / "passages.jsonl", tmp_path / "queries.jsonl"
    passages = [
        {"id": "p-charge", "title": "Charging", "text": "The pen charges over USB-C in 90 minutes."},
        {"id": "p-ship", "title": "Shipping", "text": "Orders ship within 48 hours of payment."},
    ]
    knowledge.write_text("\n".join(json.dumps(p) for p in passages) + "\n", "utf-8")
    queries.write_text(json.dumps({"query": "how long does charging take", "expected": ["p-charge"]}) + "\n", "utf-8")
    args = ("eval", "--knowledge", str(knowledge), "--queries", str(queries))
    metrics = json.loads(ok(run(project, *args, "--json")))
    routes = {route: row["queries_with_hits"] for route, row in metrics["routes"].items()}
    assert routes == {"question_dense": 0, "question_sparse": 0, "content_dense": 1, "content_sparse": 1}
    out = ok(run(project, *args))
    assert re.search(r"^question_dense\s+-\s+-\s+-\s+\(nothing to search", out, re.MULTILINE)
    assert re.search(r"^content_dense\s+1\.000", out, re.MULTILINE)


THRESHOLDS_LINE = re.compile(r"dense thresholds: answer >= ([\d.]+), caution >= ([\d.]+), sources >= ([\d.]+)")


def test_calibrate_dry_run_writes_the_plot_but_not_bot_yml(project, eval_files, tmp_path):
    knowledge, queries = eval_files
    before = (project / "bot.yml").read_bytes()
    plot = tmp_path / "dry.png"
    out = ok(run(project, "calibrate", "--knowledge", str(knowledge), "--queries", str(queries),
                 "--plot", str(plot), "--dry-run"))
    assert THRESHOLDS_LINE.search(out) and "written to" not in out
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert (project / "bot.yml").read_bytes() == before


def test_calibrate_writes_thresholds_and_plot(project, eval_files, tmp_path):
    knowledge, queries = eval_files
    plot = tmp_path / "calibration.png"
    out = ok(run(project, "calibrate", "--knowledge", str(knowledge), "--queries", str(queries), "--plot", str(plot)))
    answer, caution, sources = map(float, THRESHOLDS_LINE.search(out).groups())
    assert plot.stat().st_size > 5000 and plot.read_bytes().startswith(b"\x89PNG")
    assert "written to" in out and "decision.thresholds.dense" in out
    settings = load_settings(project)
    assert settings.decision.dense == Thresholds(answer=answer, caution=caution, sources=sources)
    assert re.search(r"answered \d/5 answerable, refused \d/1 must-refuse", out)
    assert "# Test engine settings" in (project / "bot.yml").read_text("utf-8")  # comments kept


# ---------------------------------------------------------------- errors


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_bad_config_is_one_clean_line(tmp_path):
    root = kb.write_project(tmp_path / "project", bot_yml={"retrieval": {"topk": 5}}, knowledge=False)
    assert_clean_error(run(root, "search", "anything"), "bot.yml: retrieval", "topk")


HOLD_STORE = """
import sys
from pathlib import Path
from bot.store.edge import EdgeStore
store = EdgeStore(Path(sys.argv[1]), "knowledge")
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_a_store_locked_by_another_process_is_one_clean_line(project, first_ingest):
    ok(first_ingest)
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, str(project / ".bot" / "qdrant")],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
        assert_clean_error(run(project, "search", "年付的套餐能退钱吗"), "is in use by", f"pid {owner.pid}")
        assert_clean_error(run(project, "ingest"), f"pid {owner.pid}")
    finally:
        owner.communicate("", timeout=60)
    assert owner.returncode == 0
    ok(run(project, "search", "年付的套餐能退钱吗"))  # free again


def test_serve_llm_without_its_environment_says_how_to_install(tmp_path):
    """The vLLM environment is missing: one clean error line naming the install script."""
    result = CliRunner().invoke(
        cli, ["serve-llm", "--python", str(tmp_path / "no-venv" / "bin" / "python"), "--model", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "scripts/install_llm.sh" in result.output and "Traceback" not in result.output


def test_serve_llm_lists_the_vllm_knobs():
    result = CliRunner().invoke(cli, ["serve-llm", "--help"])
    assert result.exit_code == 0
    for knob in ("--served-name", "--max-model-len", "--gpu-memory-utilization", "--quantization",
                 "--tensor-parallel-size", "--dtype"):
        assert knob in result.output
