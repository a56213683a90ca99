"""The load test's pieces that need no running server: messages files, targets, reply kinds,
bounds and percentiles (``tests/hardening/test_loadtest.py`` drives a real assistant)."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import ConfigError
from bot.loadtest import LoadReport, TurnResult, chat_load, check_target, read_scripts, reply_kind


def test_messages_files_hold_lines_turn_scripts_and_evaluation_queries(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('hello\n\n{"turns": ["a", "b"]}\n{"query": "q", "expected": []}\n{"message": "m"}\n', "utf-8")
    assert [s.turns for s in read_scripts(path)] == [("hello",), ("a", "b"), ("q",), ("m",)]


@pytest.mark.parametrize(
    "text, message",
    [("", "holds no message"), ("{broken\n", "not JSON"), ('{"turns": [1]}\n', "expected")],
)
def test_a_bad_messages_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "m.jsonl"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError, match=message):
        read_scripts(path)


def test_only_local_targets_unless_allowed():
    check_target("http://127.0.0.1:5005", allow_remote=False)
    check_target("http://localhost:5005", allow_remote=False)
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_target("https://bot.example.com", allow_remote=False)
    check_target("https://bot.example.com", allow_remote=True)


def test_reply_kinds():
    answer = {"custom": {"type": "knowledge_answer", "level": "sources_only"}}
    assert reply_kind([{"text": "hi"}, answer]) == "knowledge:sources_only"
    assert reply_kind([{"text": "退款请联系客服"}]) == "canned"
    assert reply_kind([]) == "empty" and reply_kind({"error": "x"}) == "empty"


@pytest.mark.parametrize(
    "options, message",
    [({"concurrency": 0}, "concurrency"), ({"concurrency": 1, "duration": 601}, "duration"),
     ({"rate": 0.0}, "rate"), ({}, "either"), ({"concurrency": 1, "rate": 1.0}, "either")],
)  # fmt: skip
def test_loads_are_bounded(options, message):
    options.setdefault("duration", 1)
    with pytest.raises(ConfigError, match=message):
        asyncio.run(chat_load("http://127.0.0.1:1", [], **options))


def test_percentiles_are_nearest_rank_over_answered_turns():
    report = LoadReport("closed", 1, elapsed=2.0)
    report.turns = [TurnResult(0, latency / 1000, "canned") for latency in range(1, 101)]
    report.turns.append(TurnResult(0, 9.0, "error", "timeout"))
    figures = report.as_dict()
    assert (figures["p50_ms"], figures["p95_ms"], figures["p99_ms"]) == (50.0, 95.0, 99.0)
    assert figures["turns_per_s"] == 50.0 and figures["errors"] == {"timeout": 1}
