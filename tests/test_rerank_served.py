"""The served reranker (bot/rerank_client.py): against a real vLLM serving a cross-encoder TEST
model (the session's ``rerank_server``), and its failures: a real closed port, and a named
fault-injecting stand-in for what a real server will not do on demand (5xx, malformed JSON, hang)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

import kb_project as kb
from assistant_project import free_port
from bot.config import DecisionSettings, Thresholds, load_settings
from bot.db.schema import turns
from bot.decide import Level, decide
from bot.errors import RerankError
from bot.rerank import Reranker, build_reranker
from bot.rerank_client import ServedReranker
from vllm_server import RERANKER_NAME

QUERY = "How do I reset my password?"
PASSAGES = [
    "Click 'Forgot password' on the sign-in page and follow the link we email you.",
    "Our office is closed on public holidays.",
    "Refunds reach your account within seven working days.",
    "Passwords must have at least twelve characters.",
    "年付套餐在付款后 7 天内可以全额退款，超过 7 天按未使用的整月比例退款。",
    " ".join(["The reset link in the email is valid for fifteen minutes."] * 60),  # over 512 tokens: cut
]
LOGGER = "bot.rerank_client"


@pytest.fixture(scope="module")
def served(rerank_server) -> ServedReranker:
    reranker = ServedReranker(url=rerank_server.url, model=RERANKER_NAME, read_timeout=60)
    yield reranker
    reranker.close()


@pytest.fixture(scope="module")
def local(rerank_server) -> Reranker:
    return Reranker(rerank_server.model_dir)


def test_served_scores_equal_the_local_flag_rerankers(served, local, figures):
    for query in (QUERY, "年付的套餐能退钱吗"):
        remote = served.score(query, PASSAGES)
        assert remote == pytest.approx(local.score(query, PASSAGES), abs=2e-4)
        assert all(0.0 < s < 1.0 for s in remote) and max(remote) - min(remote) > 0.05  # a real spread
    assert served.score(QUERY, []) == []
    assert served.score(QUERY, PASSAGES[2:3]) == pytest.approx(served.score(QUERY, PASSAGES)[2:3], abs=1e-5)

    twenty = [f"{PASSAGES[i % 5]} ({i})" for i in range(20)]
    timings = {}
    for name, reranker in (("vLLM", served), ("FlagReranker", local)):  # both warm: one call each
        started = time.perf_counter()
        reranker.score(QUERY, twenty)
        timings[name] = (time.perf_counter() - started) * 1000
    figures["rerank 20 passages (MiniLM-L6 cross-encoder, CPU)"] = (
        f"vLLM {timings['vLLM']:.0f} ms, local FlagReranker {timings['FlagReranker']:.0f} ms"
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The kb test project with the served reranker configured as a user would (endpoints.yml)."""
    template, _ = kb.ingested_template(tmp_path_factory)
    root = kb.copy_project(template, tmp_path_factory.mktemp("served-rerank") / "project")
    bot_yml = yaml.safe_load((root / "bot.yml").read_text("utf-8"))
    bot_yml["rerank"] = {"enabled": True, "top_n": 8}
    bot_yml["generation"] = {"use_llm": False}
    (root / "bot.yml").write_text(yaml.safe_dump(bot_yml, allow_unicode=True), "utf-8")
    with (root / "endpoints.yml").open("a", encoding="utf-8") as endpoints:
        endpoints.write(f"rerank:\n  url: ${{TEST_RERANK_URL}}\n  model: {RERANKER_NAME}\n  read_timeout: 60\n")
    return root


def test_retrieval_reorders_by_the_served_scores_and_decides_on_them(project, rerank_server, served, monkeypatch):
    monkeypatch.setenv("TEST_RERANK_URL", rerank_server.url)
    settings = load_settings(project)
    assert settings.rerank_server.url == rerank_server.url and settings.rerank_server.model == RERANKER_NAME
    with kb.engine_for(project) as engine:
        assert isinstance(engine.retriever.reranker, ServedReranker)
        reranked = engine.retrieve(QUERY, top_k=8)
        engine.retriever.reranker = None
        fused = engine.retrieve(QUERY, top_k=8)
    assert reranked.rerank_skipped is None and "rerank" in reranked.timings
    scores = served.score(reranked.query, [f"{h.question}\n{h.text}".strip() for h in fused.hits])
    expected = [h.id for h, _ in sorted(zip(fused.hits, scores), key=lambda pair: pair[1], reverse=True)]
    assert [h.id for h in reranked.hits] == expected
    assert expected != [h.id for h in fused.hits]  # the reranker did change the order
    assert [h.rerank_score for h in reranked.hits] == pytest.approx(sorted(scores, reverse=True), abs=1e-6)

    top = reranked.hits[0].rerank_score
    decision = engine.decide(reranked)
    assert decision.signal == "rerank" and decision.score == top and decision.thresholds == settings.decision.rerank
    high = DecisionSettings(dense=settings.decision.dense, rerank=Thresholds(answer=top + 0.01, caution=top - 0.01, sources=0))
    assert decide(reranked, high).level is Level.CAUTIOUS
    assert decide(fused, high).signal == "dense"


def test_an_unreachable_reranker_skips_rerank_with_one_warning_and_the_turn_is_answered(
    project, monkeypatch, caplog
):
    closed = f"http://127.0.0.1:{free_port()}/v1"  # a real port nobody listens on
    monkeypatch.setenv("TEST_RERANK_URL", closed)
    with kb.engine_for(project) as engine:
        engine.retriever.reranker.retry_after = 0  # ask the closed port on every query
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            retrievals = [engine.retrieve(q) for q in (QUERY, "年付的套餐能退钱吗", QUERY)]
            answer = engine.answer(QUERY)
        engine.retriever.reranker = None
        fused = engine.retrieve(QUERY)
        engine.traces.flush()
        with engine.sql.connect() as conn:
            decision = conn.execute(select(turns.c.decision).where(turns.c.turn_id == answer.turn_id)).scalar_one()
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    for retrieval in retrievals:
        assert "unreachable" in retrieval.rerank_skipped and closed in retrieval.rerank_skipped
        assert all(hit.rerank_score is None for hit in retrieval.hits)
    assert [h.id for h in retrievals[0].hits] == [h.id for h in fused.hits]  # the fused order, kept
    assert answer.decision.signal == "dense" and answer.level.value in ("answer", "cautious", "sources_only")
    assert answer.sources and "unreachable" in decision["rerank_skipped"]


def test_the_configured_reranker_is_the_served_one_only_when_enabled(project, monkeypatch):
    monkeypatch.setenv("TEST_RERANK_URL", "http://127.0.0.1:9/v1")
    settings = load_settings(project)
    assert isinstance(build_reranker(settings), ServedReranker)
    off = replace(settings, rerank=replace(settings.rerank, enabled=False))
    assert build_reranker(off) is None


# ------------------------------------------------------ faults a real server will not produce on demand


class FaultyRerankServer:
    """A FAULT-INJECTING STAND-IN for a reranker server (not a reranker): answers ``/rerank``
    with ``mode``: "ok" (valid logits), "500", "not-json", "wrong-count", "nan", "hang"."""

    def __init__(self):
        self.mode, self.requests = "ok", 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                stand_in.requests += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                count = len(body["documents"])
                if stand_in.mode == "hang":
                    time.sleep(1.0)
                results = [{"index": i, "relevance_score": float(count - i)} for i in range(count)]
                replies = {
                    "500": (500, b'{"error": "internal"}'),
                    "not-json": (200, b"<html>proxy error</html>"),
                    "wrong-count": (200, json.dumps({"results": results[:-1]}).encode()),
                    "nan": (200, json.dumps({"results": [{"index": 0, "relevance_score": "NaN"}]}).encode()),
                }
                status, payload = replies.get(stand_in.mode, (200, json.dumps({"results": results}).encode()))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (hang)
                    pass

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stand_in():
    server = FaultyRerankServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("500", "answered HTTP 500"),
        ("not-json", "malformed reply (not JSON)"),
        ("wrong-count", "malformed reply"),
        ("nan", "malformed reply"),
        ("hang", "did not answer in time"),
    ],
)
def test_each_fault_is_a_rerank_error_with_a_short_reason(stand_in, mode, reason):
    reranker = ServedReranker(url=stand_in.url, model="m", read_timeout=0.3, retry_after=0)
    assert reranker.score(QUERY, ["a", "b"]) == pytest.approx([0.8808, 0.7311], abs=1e-4)  # sigmoid(2), sigmoid(1)
    stand_in.mode = mode
    with pytest.raises(RerankError) as error:
        reranker.score(QUERY, ["a", "b"])
    assert reason in str(error.value) and "proxy error" not in str(error.value)


def test_one_warning_per_failure_burst_and_no_calls_while_waiting_to_retry(stand_in, caplog):
    reranker = ServedReranker(url=stand_in.url, model="m", retry_after=0.3)
    stand_in.mode = "500"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(4):
            with pytest.raises(RerankError, match="HTTP 500"):
                reranker.score(QUERY, ["a"])
        assert stand_in.requests == 1  # the other three waited for retry_after without a request
        time.sleep(0.35)
        with pytest.raises(RerankError):
            reranker.score(QUERY, ["a"])
        assert stand_in.requests == 2
        stand_in.mode = "ok"
        time.sleep(0.35)
        assert reranker.score(QUERY, ["a"]) == pytest.approx([0.7311], abs=1e-4)
        stand_in.mode = "not-json"
        with pytest.raises(RerankError):
            reranker.score(QUERY, ["a"])
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 3, messages
    assert "HTTP 500" in messages[0] and "answers again after 5 failed queries" in messages[1]
    assert "malformed" in messages[2]
