"""Retrieval and the refusal policy on a small real collection; threshold choice, calibration output, config."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import kb_project as kb
from bot.calibrate import plot_scores, write_thresholds
from bot.config import DEFAULT_WEIGHTS, ROUTES, DecisionSettings, Thresholds, load_settings
from bot.decide import Level, decide, level_for, relevance
from bot.errors import ConfigError
from bot.ingest.documents import Chunk
from bot.evaluate import LabelledQuery, choose_thresholds, evaluate, identical_records
from bot.retrieve import DENSE_ROUTES, Hit, Retrieval, best_per_declared_doc, merge_identical
from bot.store.base import OrMissing, ScoredId

REPO = Path(__file__).resolve().parents[1]

REFUND_ZH = "年付的套餐能退钱吗"
PASSWORD_EN = "I forgot my password, how can I reset it?"
NONSENSE = "what is the capital of France"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    template, _ = kb.ingested_template(tmp_path_factory)
    root = kb.copy_project(template, tmp_path_factory.mktemp("retrieve") / "project")
    with kb.engine_for(root) as engine:
        yield engine


@pytest.fixture(scope="module")
def refund(engine) -> Retrieval:
    return engine.retrieve(REFUND_ZH)


# ---------------------------------------------------------------- retrieval


@pytest.mark.parametrize(
    "query, item_id",
    [
        (REFUND_ZH, "faq-zh-refund"),
        ("智能笔电池能撑多久", "faq-zh-pen-battery"),
        (PASSWORD_EN, "faq-en-password"),
        ("how to connect the pen to my phone over bluetooth", "faq-en-pen-pair"),
    ],
)
def test_a_clear_paraphrase_finds_its_faq_item_first(engine, query, item_id):
    hits = engine.retrieve(query).hits
    assert hits[0].item_id == item_id
    assert hits[0].payload["kind"] == "faq"


def test_hits_are_ranked_and_carry_the_scores_of_the_routes_that_found_them(engine, refund):
    hits = refund.hits
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert len(hits) == engine.settings.retrieval.top_k
    assert [h.fused_score for h in hits] == sorted((h.fused_score for h in hits), reverse=True)
    assert set(refund.routes) == set(ROUTES)
    assert set(hits[0].route_scores) == set(ROUTES)  # question and answer match, densely and lexically
    route_ids = {name: {s.id: s.score for s in scored} for name, scored in refund.routes.items()}
    for hit in hits:
        for name in ROUTES:
            if name in hit.route_scores:
                assert hit.route_scores[name] == route_ids[name][hit.id]
            else:
                assert hit.id not in route_ids[name]
    passage = next(h for h in engine.retrieve("顺丰快递几天送达", top_k=10).hits if h.payload["kind"] == "passage")
    assert not {"question_dense", "question_sparse"} & set(passage.route_scores)  # a passage has no question side
    assert refund.best_dense == max(refund.routes[name][0].score for name in DENSE_ROUTES)


def test_dense_route_scores_are_cosine_similarities(engine, refund):
    dense, _ = engine.encoders
    top = refund.hits[0]
    chunk = Chunk(id=top.id, **top.payload)  # the stored payload is the chunk
    query = dense.embed_query(REFUND_ZH)
    question = dense.embed_query(chunk.question)  # the question side is embedded as a query
    content = dense.embed_batch([chunk.content_for_embedding], is_query=False)[0]  # the content side as a passage
    assert top.route_scores["question_dense"] == pytest.approx(float(query @ question), abs=1e-4)
    assert top.route_scores["content_dense"] == pytest.approx(float(query @ content), abs=1e-4)


def test_route_lists_keep_item_id_and_doc(refund):
    for scored in refund.routes.values():
        for hit in scored:
            assert set(hit.payload) == {"item_id", "doc"}


def test_filter_by_product_metadata(engine):
    hits = engine.retrieve("battery", filters={"product": "nimbus-pen"}, top_k=10).hits
    assert {h.item_id for h in hits} == {"faq-zh-pen-battery", "faq-en-pen-pair"}
    assert all(h.payload["metadata"]["product"] == "nimbus-pen" for h in hits)
    both = engine.retrieve("battery", filters={"product": ["nimbus-pen", "nimbus-note"]}, top_k=10).hits
    assert {h.item_id for h in both} == {row[0] for row in kb.FAQ_ROWS}  # documents have no product
    assert engine.retrieve("battery", filters={"product": "nimbus-car"}).hits == []


def test_a_product_scope_keeps_documents_without_a_product(engine):
    hits = engine.retrieve("battery", filters={"product": OrMissing("nimbus-note")}, top_k=20).hits
    products = {h.item_id: h.payload["metadata"].get("product") for h in hits}
    notes = {row[0] for row in kb.FAQ_ROWS if row[3] == "nimbus-note"}
    assert notes <= set(products) and set(products.values()) == {"nimbus-note", None}
    assert None in products.values()  # the guide and the shipping text name no product


def test_filter_by_language(engine):
    zh = engine.retrieve("battery life", filters={"language": "zh"}, top_k=10).hits
    en = engine.retrieve("电池能用多久", filters={"language": "en"}, top_k=10).hits
    assert zh and all(h.payload["language"] == "zh" for h in zh)
    assert en and all(h.payload["language"] == "en" for h in en)
    assert {h.id for h in zh}.isdisjoint(h.id for h in en)


def test_a_stop_word_only_query_uses_the_dense_routes(engine):
    query = "的 吗 怎么 the how"
    _, sparse = engine.encoders
    assert not sparse.encode_query(query)  # nothing left for the lexical routes
    retrieval = engine.retrieve(query)
    assert set(retrieval.routes) == set(DENSE_ROUTES)
    assert retrieval.hits and all(set(h.route_scores) <= set(DENSE_ROUTES) for h in retrieval.hits)
    assert retrieval.best_dense is not None


def test_run_time_weights_override_the_settings(engine):
    lexical_off = engine.retrieve(REFUND_ZH, weights={"question_sparse": 0, "content_sparse": 0})
    assert set(lexical_off.routes) == set(DENSE_ROUTES)
    assert all(set(h.route_scores) <= set(DENSE_ROUTES) for h in lexical_off.hits)
    no_content_dense = engine.retrieve(REFUND_ZH, weights={"content_dense": 0.0})
    assert set(no_content_dense.routes) == set(ROUTES) - {"content_dense"}
    assert no_content_dense.hits[0].item_id == "faq-zh-refund"
    assert set(engine.retrieve(REFUND_ZH).routes) == set(ROUTES)  # the settings are untouched
    assert engine.settings.retrieval.weights == DEFAULT_WEIGHTS


def test_dbsf_fusion(engine, refund):
    dbsf = engine.retrieve(REFUND_ZH, fusion="dbsf")
    assert dbsf.hits[0].item_id == "faq-zh-refund"
    assert [h.rank for h in dbsf.hits] == list(range(1, len(dbsf.hits) + 1))
    assert dbsf.hits[0].fused_score != pytest.approx(refund.hits[0].fused_score)
    assert dbsf.hits[0].fused_score > 1.0 / 60  # not a reciprocal rank: normalized scores summed over routes


def test_top_k_limits_the_hits(engine):
    assert len(engine.retrieve(PASSWORD_EN, top_k=2).hits) == 2
    assert len(engine.retrieve(PASSWORD_EN, top_k=10).hits) == 10  # the whole collection


# ---------------------------------------------------------------- decision


def around(score: float, level: Level) -> DecisionSettings:
    """Thresholds that put ``score`` at ``level``."""
    d = 0.01
    cuts = {
        Level.ANSWER: (score - d, score - 2 * d, score - 3 * d),
        Level.CAUTIOUS: (score + d, score - d, score - 2 * d),
        Level.SOURCES_ONLY: (score + 2 * d, score + d, score - d),
        Level.REFUSE: (score + 3 * d, score + 2 * d, score + d),
    }[level]
    return DecisionSettings(dense=Thresholds(answer=cuts[0], caution=cuts[1], sources=cuts[2]))


@pytest.mark.parametrize("level", list(Level))
def test_decide_gives_each_level_around_the_observed_score(refund, level):
    decision = decide(refund, around(refund.best_dense, level))
    assert decision.level is level
    assert decision.signal == "dense" and decision.score == refund.best_dense
    assert decision.as_dict()["level"] == level.value
    assert level.answers is (level in (Level.ANSWER, Level.CAUTIOUS))


def test_a_nonsense_query_scores_lower_than_a_matching_one(engine, refund):
    nonsense = engine.retrieve(NONSENSE)
    assert nonsense.best_dense < refund.best_dense - 0.1
    assert engine.decide(refund).level is Level.ANSWER  # with the default thresholds in bot.yml
    assert engine.decide(nonsense).level is Level.REFUSE


def test_level_boundaries_are_inclusive():
    t = Thresholds(answer=0.9, caution=0.8, sources=0.7)
    assert level_for(0.9, t) is Level.ANSWER
    assert level_for(0.8999, t) is Level.CAUTIOUS
    assert level_for(0.8, t) is Level.CAUTIOUS
    assert level_for(0.7, t) is Level.SOURCES_ONLY
    assert level_for(0.6999, t) is Level.REFUSE
    assert level_for(None, t) is Level.REFUSE


def hit(rank: int, rerank_score: float | None) -> Hit:
    return Hit(id=f"id-{rank}", rank=rank, fused_score=1 / (60 + rank), route_scores={"content_dense": 0.5},
               payload={"item_id": f"item-{rank}"}, rerank_score=rerank_score)


def test_relevance_uses_the_rerank_score_when_hits_have_one():
    routes = {"content_dense": [ScoredId("id-1", 0.5)], "content_sparse": [ScoredId("id-1", 12.0)]}
    settings = DecisionSettings(
        dense=Thresholds(answer=0.95, caution=0.9, sources=0.85),
        rerank=Thresholds(answer=0.8, caution=0.5, sources=0.2),
    )
    reranked = Retrieval("q", [hit(1, 0.91), hit(2, 0.3)], routes)
    assert relevance(reranked) == ("rerank", 0.91)
    decision = decide(reranked, settings)
    assert decision.level is Level.ANSWER and decision.signal == "rerank"
    assert decision.thresholds == settings.rerank
    assert decide(Retrieval("q", [hit(1, 0.3)], routes), settings).level is Level.SOURCES_ONLY

    plain = Retrieval("q", [hit(1, None)], routes)
    assert relevance(plain) == ("dense", 0.5)  # the best dense similarity, never the sparse score
    assert decide(plain, settings).level is Level.REFUSE
    assert decide(plain, settings).thresholds == settings.dense


def test_no_hits_means_refuse():
    empty = Retrieval("q", [], {})
    assert relevance(empty) == ("dense", None)
    assert decide(empty, DecisionSettings()).level is Level.REFUSE


# ---------------------------------------------------------------- choose_thresholds


@pytest.fixture(scope="module")
def distributions():
    rng = np.random.default_rng(0)
    return rng.normal(0.90, 0.02, 400).tolist(), rng.normal(0.83, 0.02, 200).tolist()


@pytest.mark.parametrize("answer_rate", [0.8, 0.9, 0.95, 0.99])
def test_choose_thresholds_honours_the_answer_rate(distributions, answer_rate):
    answerable, refuse = distributions
    t = choose_thresholds(answerable, refuse, answer_rate=answer_rate)
    answered = np.mean(np.array(answerable) >= t.caution)
    assert answered >= answer_rate
    cut = sorted(answerable)[int(np.floor((1 - answer_rate) * len(answerable)))]
    # lowering the threshold below the plain cut never lets a must-refuse question through
    assert np.sum(np.array(refuse) < t.caution) == np.sum(np.array(refuse) < cut)
    assert np.mean(np.array(refuse) >= t.answer) <= 0.01  # answer is above 99% of must-refuse scores
    assert np.mean(np.array(answerable) >= t.sources) >= 0.99
    assert t.answer >= t.caution >= t.sources
    assert all(round(v, 4) == v for v in (t.caution, t.sources))


def test_choose_thresholds_answer_never_below_caution():
    answerable = [0.9 + i / 1000 for i in range(100)]
    refuse = [0.5 + i / 1000 for i in range(100)]  # far below: full confidence from caution up
    t = choose_thresholds(answerable, refuse)
    assert t.answer == pytest.approx(t.caution, abs=1e-4) and t.caution <= answerable[5]
    alone = choose_thresholds(answerable, [])
    assert alone.answer == pytest.approx(alone.caution, abs=1e-4)


def test_choose_thresholds_when_refuse_scores_overlap():
    answerable = [0.80 + i / 1000 for i in range(100)]
    refuse = [0.85 + i / 1000 for i in range(100)]  # a weak encoder: must-refuse scores higher
    t = choose_thresholds(answerable, refuse)
    assert t.answer > 0.85 + 98 / 1000 and t.answer >= t.caution >= t.sources
    assert sum(s >= t.answer for s in refuse) <= 1


def test_choose_thresholds_needs_answerable_scores():
    with pytest.raises(ConfigError, match="answerable"):
        choose_thresholds([], [0.5])


@pytest.mark.parametrize("answer_rate", [0.0, 1.5, -0.1])
def test_choose_thresholds_rejects_an_answer_rate_outside_0_1(distributions, answer_rate):
    """``bot calibrate --answer-rate 0`` crashes with IndexError; 1.5 silently picks a wrong score."""
    answerable, refuse = distributions
    with pytest.raises(ConfigError, match="answer.rate"):
        choose_thresholds(answerable, refuse, answer_rate=answer_rate)


# ---------------------------------------------------------------- calibration output


def test_write_thresholds_keeps_comments_and_is_read_back(tmp_path):
    shutil.copy(REPO / "bot.yml", tmp_path / "bot.yml")
    before = load_settings(tmp_path)
    comments = [line.strip() for line in (REPO / "bot.yml").read_text("utf-8").splitlines() if "#" in line]
    assert len(comments) >= 5
    write_thresholds(tmp_path / "bot.yml", "dense", Thresholds(answer=0.9123, caution=0.8765, sources=0.8))
    text = (tmp_path / "bot.yml").read_text("utf-8")
    for comment in comments:
        assert comment.split("#", 1)[1].strip() in text
    after = load_settings(tmp_path)
    assert after.decision.dense == Thresholds(answer=0.9123, caution=0.8765, sources=0.8)
    assert after.decision.rerank == before.decision.rerank
    assert (after.retrieval, after.ingest, after.embedding) == (before.retrieval, before.ingest, before.embedding)

    write_thresholds(tmp_path / "bot.yml", "rerank", Thresholds(answer=0.6, caution=0.3, sources=0.1))
    again = load_settings(tmp_path)
    assert again.decision.rerank == Thresholds(answer=0.6, caution=0.3, sources=0.1)
    assert again.decision.dense == after.decision.dense


def test_write_thresholds_creates_a_missing_file(tmp_path):
    write_thresholds(tmp_path / "bot.yml", "dense", Thresholds(answer=0.5, caution=0.4, sources=0.3))
    assert load_settings(tmp_path).decision.dense == Thresholds(answer=0.5, caution=0.4, sources=0.3)


@pytest.mark.parametrize(
    "answerable, refuse",
    [([0.8, 0.85, 0.9, 0.92, 0.95], [0.7, 0.75, 0.82]), ([0.9, 0.9, 0.9], [])],
    ids=["two-distributions", "one-value-no-refuse"],
)
def test_plot_scores_writes_a_png(tmp_path, answerable, refuse):
    path = tmp_path / "plots" / "calibration.png"
    written = plot_scores(answerable, refuse, Thresholds(answer=0.9, caution=0.85, sources=0.8), path, signal="dense")
    assert written == path
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


# ---------------------------------------------------------------- config


def write(root: Path, bot: str = "", endpoints: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "bot.yml").write_text(bot, "utf-8")
    (root / "endpoints.yml").write_text(endpoints, "utf-8")
    return root


def test_defaults_without_files(tmp_path):
    settings = load_settings(tmp_path)
    assert settings.root == tmp_path.resolve()
    assert settings.retrieval.top_k == 5 and settings.retrieval.fusion == "learned"
    assert settings.store.path == tmp_path.resolve() / ".bot" / "qdrant"
    assert settings.ingest.paths == (tmp_path.resolve() / "knowledge",)
    assert settings.lexicon.stopwords == tmp_path.resolve() / "knowledge/lexicon/stopwords.txt"


def test_env_substitution_with_defaults(tmp_path, monkeypatch):
    for name in ("KB_TEST_TOP_K", "KB_TEST_STORE", "KB_TEST_NOT_SET"):
        monkeypatch.delenv(name, raising=False)
    root = write(
        tmp_path,
        "retrieval:\n  top_k: ${KB_TEST_TOP_K:-7}\n",
        "knowledge_store:\n"
        "  path: ${KB_TEST_STORE:-.bot/store}\n"
        "  # url: ${KB_TEST_NOT_SET}\n"  # a commented placeholder is not substituted
        "sql:\n  url: ${KB_TEST_NOT_SET:-sqlite:///data/x.db}\n",
    )
    settings = load_settings(root)
    assert settings.retrieval.top_k == 7
    assert settings.store.path == root.resolve() / ".bot/store" and settings.store.url is None
    assert settings.sql.url == "sqlite:///data/x.db"
    monkeypatch.setenv("KB_TEST_TOP_K", "3")
    monkeypatch.setenv("KB_TEST_STORE", str(tmp_path / "elsewhere"))
    settings = load_settings(root)
    assert settings.retrieval.top_k == 3
    assert settings.store.path == tmp_path / "elsewhere"


def test_a_missing_env_var_without_default_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("KB_TEST_SQL_URL", raising=False)
    root = write(tmp_path, "", "sql:\n  url: ${KB_TEST_SQL_URL}\n")
    with pytest.raises(ConfigError, match="KB_TEST_SQL_URL") as error:
        load_settings(root)
    assert "endpoints.yml" in str(error.value)


@pytest.mark.parametrize("secret", ["s3cr3t #1", "key: value", "*star", "0123"])
def test_an_env_value_is_taken_verbatim(tmp_path, monkeypatch, secret):
    """A Qdrant API key or password is any string: substituting it must not re-parse it as YAML."""
    monkeypatch.setenv("KB_TEST_API_KEY", secret)
    root = write(tmp_path, "", "knowledge_store:\n  url: http://qdrant:6333\n  api_key: ${KB_TEST_API_KEY}\n")
    assert load_settings(root).store.api_key == secret


@pytest.mark.parametrize(
    "bot, endpoints, name",
    [
        ("retrieval:\n  topk: 5\n", "", "topk"),
        ("ingest:\n  max_mb: 5\n", "", "max_mb"),
        ("retrieval:\n  weights:\n    title_dense: 1.0\n", "", "title_dense"),
        ("decision:\n  thresholds:\n    bm25: {answer: 1, caution: 1, sources: 1}\n", "", "bm25"),
        ("decision:\n  thresholds:\n    dense: {answr: 0.9}\n", "", "answr"),
        ("", "knowledge_store:\n  colection: x\n", "colection"),
    ],
)
def test_an_unknown_key_is_a_config_error(tmp_path, bot, endpoints, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(write(tmp_path, bot, endpoints))


@pytest.mark.parametrize(
    "bot",
    [
        "decision:\n  thresholds:\n    dense: {answer: 0.5, caution: 0.6, sources: 0.4}\n",
        "decision:\n  thresholds:\n    rerank: {answer: 0.7, caution: 0.4, sources: 0.5}\n",
        "decision:\n  thresholds:\n    dense: {answer: 0.5}\n",  # below the default caution 0.85
    ],
)
def test_thresholds_out_of_order_are_a_config_error(tmp_path, bot):
    with pytest.raises(ConfigError, match="answer >= caution >= sources"):
        load_settings(write(tmp_path, bot))


def test_invalid_choices_are_config_errors(tmp_path):
    for bot, name in (
        ("retrieval:\n  fusion: max\n", "fusion"),
        ("embedding:\n  dense_backend: word2vec\n", "dense_backend"),
        ("embedding:\n  sparse_backend: bge-m3\n", "bge-m3"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings(write(tmp_path, bot))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "retrieval: [unclosed\n"))
    assert math.isclose(load_settings(write(tmp_path, "retrieval:\n  weights:\n    content_sparse: 2\n"))
                        .retrieval.weights["content_sparse"], 2.0)


def test_choose_thresholds_are_rounded_to_four_decimals():
    """Thresholds are written to bot.yml and shown to people: never 0.9045666456222534."""
    answerable = [0.9045666456222534, 0.93, 0.95, 0.97] * 25
    refuse = [0.81 + i / 7919 for i in range(100)]
    t = choose_thresholds(answerable, refuse)
    for value in (t.answer, t.caution, t.sources):
        assert value == round(value, 4)
    assert t.caution <= 0.9045666456222534  # rounding down keeps that answerable score answered


def test_choose_thresholds_uses_a_gap_to_answer_more():
    """When the distributions are apart, refusing every must-refuse question costs no answerable one."""
    answerable = [0.915 + i / 1000 for i in range(80)]
    refuse = [0.82 + i / 1000 for i in range(80)]  # highest 0.899, below every answerable score
    t = choose_thresholds(answerable, refuse)
    assert all(s >= t.caution for s in answerable)  # all answered, not just 95 %
    assert all(s < t.caution for s in refuse)  # and still every must-refuse refused
    assert t.caution == pytest.approx((0.899 + 0.915) / 2, abs=1e-4)  # the middle of the gap


# ---------------------------------------------------------------- declared docs

CARD_DOC = [  # three records of one declared doc (one FAQ page), and two other entries
    {"id": "card-0", "doc": "card-page", "question": "金融卡遗失后如何补发？", "answer": "请本人携带身分证到分行办理补发。"},
    {"id": "card-1", "doc": "card-page", "question": "补发金融卡需要哪些文件？", "answer": "身分证、第二证件及印鉴。"},
    {"id": "card-2", "doc": "card-page", "question": "补发金融卡的手续费是多少？", "answer": "新台币100元。"},
    {"id": "card-limit", "doc": "limit-page", "question": "金融卡每天能转账多少钱？", "answer": "每日转账上限为新台币3万元。"},
    {"id": "card-abroad", "question": "金融卡可以在国外提款吗？", "answer": "开通跨国提款后可以在国外提款。"},
]


def jsonl_project(root: Path, records: list[dict]) -> Path:
    """A project whose knowledge is ``records`` in one JSONL file, ingested."""
    kb.write_project(root, knowledge=False)
    lines = "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    (root / "knowledge" / "cards.jsonl").write_text(lines + "\n", "utf-8")
    with kb.engine_for(root) as engine:
        engine.ingest(progress=False)
    return root


def with_retrieval_setting(project: Path, root: Path, **values) -> Path:
    """A copy of ``project`` at ``root`` with ``values`` set under ``retrieval`` in its bot.yml."""
    kb.copy_project(project, root)
    settings = yaml.safe_load((root / "bot.yml").read_text("utf-8"))
    settings["retrieval"] = {**settings.get("retrieval", {}), **values}
    (root / "bot.yml").write_text(yaml.safe_dump(settings, allow_unicode=True), "utf-8")
    return root


@pytest.fixture(scope="module")
def card_project(tmp_path_factory):
    return jsonl_project(tmp_path_factory.mktemp("declared-docs"), CARD_DOC)


def test_records_of_one_declared_doc_give_one_hit(card_project):
    with kb.engine_for(card_project) as engine:
        hits = engine.retrieve("金融卡不见了怎么补发", top_k=5).hits
    docs = [hit.doc for hit in hits if hit.doc == "card-page"]
    assert docs == ["card-page"]
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert {"card-limit", "card-abroad"} <= {hit.item_id for hit in hits}


def test_siblings_stay_when_one_per_doc_is_off(card_project, tmp_path):
    root = with_retrieval_setting(card_project, tmp_path / "project", one_per_doc=False)
    with kb.engine_for(root) as engine:
        hits = engine.retrieve("金融卡不见了怎么补发", top_k=5).hits
    assert sum(hit.doc == "card-page" for hit in hits) == 3


def test_chunks_of_a_file_are_not_collapsed(engine):
    hits = engine.retrieve("Nimbus Pen Guide: charging and battery life", top_k=10).hits
    guide = [hit for hit in hits if hit.source == kb.GUIDE]
    assert len(guide) >= 2  # a file's chunks are not siblings of a declared doc
    assert all(hit.declared_doc == "" for hit in guide)


def test_best_per_declared_doc_keeps_the_first_of_each_doc():
    def hit(id_, doc, source="kb.jsonl"):
        return Hit(id=id_, rank=0, fused_score=1.0, route_scores={}, payload={"doc": doc, "source": source, "item_id": id_})

    hits = [hit("a0", "a"), hit("f1", "kb.jsonl"), hit("a1", "a"), hit("b0", "b"), hit("f2", "kb.jsonl")]
    kept = best_per_declared_doc(hits)
    assert [h.id for h in kept] == ["a0", "f1", "b0", "f2"]
    assert [h.rank for h in kept] == [1, 2, 3, 4]


# ---------------------------------------------------------------- identical records

ABROAD = {"question": "金融卡可以在国外提款吗？", "answer": "开通跨国提款后可以在国外提款。"}
DUPLICATES = [  # one answer stored under two ids (two pages), and a neighbour that differs
    {"id": "abroad-a", "doc": "page-a", **ABROAD},
    {"id": "abroad-b", "doc": "page-b", **ABROAD},
    {"id": "abroad-fee", "question": "金融卡在国外提款要手续费吗？", "answer": "每笔收取新台币75元。"},
    {"id": "card-limit", "question": "金融卡每天能转账多少钱？", "answer": "每日转账上限为新台币3万元。"},
]


@pytest.fixture(scope="module")
def duplicates_project(tmp_path_factory):
    return jsonl_project(tmp_path_factory.mktemp("identical"), DUPLICATES)


def test_identical_records_are_one_hit_with_the_other_as_alias(duplicates_project):
    with kb.engine_for(duplicates_project) as engine:
        hits = engine.retrieve("在国外能用金融卡提款吗", top_k=4).hits
    [abroad] = [hit for hit in hits if hit.text == ABROAD["answer"]]
    assert abroad.ids == {"abroad-a", "page-a", "abroad-b", "page-b"}
    assert len(abroad.aliases) == 2 and abroad.item_id not in abroad.aliases
    assert abroad.as_dict()["aliases"] == list(abroad.aliases)
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert {"abroad-fee", "card-limit"} <= {hit.item_id for hit in hits}  # the freed place is filled


ABROAD_QUERIES = [LabelledQuery("在国外能用金融卡提款吗", (record,)) for record in ("abroad-a", "abroad-b", "page-b")]


def test_evaluation_credits_an_alias(duplicates_project):
    with kb.engine_for(duplicates_project) as engine:
        report = evaluate(engine, ABROAD_QUERIES, progress=False)
    assert report.as_dict()["hit_at_1"] == 1.0  # whichever copy the store ranks first


def test_identical_records_are_credited_in_every_route(duplicates_project):
    with kb.engine_for(duplicates_project) as engine:
        identical = identical_records(chunk for chunks in engine.iter_chunks() for chunk in chunks)
        asked = [LabelledQuery(ABROAD["question"], query.expected) for query in ABROAD_QUERIES]
        report = evaluate(engine, asked, progress=False, identical=identical).as_dict()
    group = frozenset({"abroad-a", "page-a", "abroad-b", "page-b"})
    assert identical == {"abroad-a": group, "abroad-b": group}  # the neighbours differ: not there
    assert report["hit_at_1"] == 1.0
    for route in ROUTES:  # both copies tie at the top of every route: either one counts
        assert report["routes"][route]["hit_at_1"] == 1.0, route


def test_identical_records_stay_apart_when_merging_is_off(duplicates_project, tmp_path):
    root = with_retrieval_setting(duplicates_project, tmp_path / "project", merge_identical=False)
    with kb.engine_for(root) as engine:
        hits = engine.retrieve("在国外能用金融卡提款吗", top_k=4).hits
    assert sorted(hit.item_id for hit in hits if hit.text == ABROAD["answer"]) == ["abroad-a", "abroad-b"]
    assert all(hit.aliases == () for hit in hits)


def test_merge_identical_needs_the_same_question_and_text():
    def hit(id_, question, text, doc="", source="kb.jsonl"):
        payload = {"item_id": id_, "question": question, "text": text, "doc": doc or source, "source": source}
        return Hit(id=id_, rank=0, fused_score=1.0, route_scores={}, payload=payload)

    hits = [
        hit("q1", "Q", "A", doc="d1"),
        hit("q2", "Q", "B"),  # same question, other answer: another entry
        hit("q3", "Q", "A", doc="d3"),  # the same as q1
        hit("p1", "", "A"),  # the same text as a passage without the question
        hit("q4", "Q", "A"),  # the same as q1, no declared doc
    ]
    kept = merge_identical(hits)
    assert [h.id for h in kept] == ["q1", "q2", "p1"]
    assert [h.rank for h in kept] == [1, 2, 3]
    assert kept[0].aliases == ("q3", "d3", "q4")
    assert kept[1].aliases == () and kept[2].aliases == ()


# ---------------------------------------------------------------- prepared queries


class CountingEncoder:
    """Spy: the real dense encoder, counting the queries it embeds."""

    def __init__(self, encoder):
        self.encoder, self.queries = encoder, []

    def embed_query(self, text):
        self.queries.append(text)
        return self.encoder.embed_query(text)

    def __getattr__(self, name):
        return getattr(self.encoder, name)


def test_a_prepared_query_is_retrieved_without_embedding_it_again(engine, monkeypatch):
    spy = CountingEncoder(engine.retriever.dense)
    monkeypatch.setattr(engine.retriever, "dense", spy)
    expected = [hit.id for hit in engine.retrieve(REFUND_ZH).hits]
    engine.prepare(REFUND_ZH)
    assert spy.queries == [REFUND_ZH, REFUND_ZH]
    assert [hit.id for hit in engine.retrieve(REFUND_ZH).hits] == expected
    assert spy.queries == [REFUND_ZH, REFUND_ZH]  # the prepared vector was used
    engine.retrieve(REFUND_ZH)
    assert len(spy.queries) == 3  # used once: the next retrieval embeds again


def test_prepared_queries_are_bounded(engine, monkeypatch):
    from bot.retrieve import PREPARED_QUERIES

    for number in range(PREPARED_QUERIES + 5):
        engine.prepare(f"question {number}")
    assert len(engine.retriever._prepared) == PREPARED_QUERIES
    assert "question 0" not in engine.retriever._prepared
    engine.retriever._prepared.clear()
