"""``bot enhance`` against the real vLLM server: several chunks asked at a time, resumable."""

from __future__ import annotations

import json

from bot.enhance import enhance


def test_chunks_are_asked_about_concurrently_and_a_second_run_resumes(llm_server, engine_on, tmp_path):
    engine = engine_on(llm_server.url)
    output = tmp_path / "enhanced.jsonl"
    total = sum(len(file) for file in engine.iter_chunks(None, on_failure=lambda *_: None))
    assert total > 8, "the test project should have more chunks than two runs take"

    first = enhance(engine, output=output, per_item=2, limit=4, workers=4, progress=False)
    assert first.written + len(first.failed) == 4 and first.written >= 3
    assert first.remaining == total - 4
    entries = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
    assert len(entries) == first.written and len({e["chunk_id"] for e in entries}) == first.written
    assert all(1 <= len(e["questions"]) <= 2 and e["approved"] is False for e in entries)

    second = enhance(engine, output=output, per_item=2, limit=4, workers=2, progress=False)
    assert second.skipped == first.written  # chunks already in the file are not asked again
    entries = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
    assert len({e["chunk_id"] for e in entries}) == len(entries) == first.written + second.written
