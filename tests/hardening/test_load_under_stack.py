"""``bot loadtest`` against the hardening session's running assistant (``stack``): it drives
the real REST channel, counts every turn and tells the replies apart, and under that load no
turn fails."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from bot.cli import cli
from bot.loadtest import chat_load, read_scripts

MESSAGES = [
    "你好",  # canned greeting
    "How do I turn on two-factor authentication?",  # account security: the guard's canned answer
    '{"turns": ["免费版有哪些限制？", "那付费版呢？"]}',  # a two-turn conversation
]


def test_a_closed_loop_counts_turns_latencies_and_reply_kinds(stack, tmp_path):
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(MESSAGES) + "\n", "utf-8")
    scripts = read_scripts(path)
    assert [len(s.turns) for s in scripts] == [1, 1, 2]

    report = asyncio.run(chat_load(stack.rasa_url, scripts, concurrency=3, duration=60, max_turns=12))
    figures = report.as_dict()
    assert figures["turns"] >= 12 and not figures["errors"], figures
    assert "canned" in figures["kinds"], figures
    assert any(kind.startswith("knowledge:") for kind in figures["kinds"]), figures
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert figures["turns_per_s"] > 0


def test_the_command_sweeps_prints_json_and_draws_the_plot(stack, tmp_path):
    path = tmp_path / "messages.txt"
    path.write_text("你好\nHow do I pair the smart pen with my phone?\n", "utf-8")
    plot = tmp_path / "sweep.png"
    result = CliRunner().invoke(
        cli,
        ["--root", str(stack.root), "loadtest", stack.rasa_url, "--messages", str(path), "--sweep", "1,2",
         "--count", "6", "--duration", "60", "--plot", str(plot), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    points = json.loads(result.output.strip().splitlines()[-1])
    assert [p["load"] for p in points] == [1.0, 2.0]
    assert all(p["turns"] >= 6 and not p["errors"] for p in points), points
    # one user walks every script, not only its first
    assert all("canned" in p["kinds"] and any(k.startswith("knowledge:") for k in p["kinds"]) for p in points), points
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_closed_port_is_counted_as_connect_errors_not_a_crash(tmp_path):
    from assistant_project import free_port

    scripts = read_scripts(_write(tmp_path, "hello\n"))
    report = asyncio.run(chat_load(f"http://127.0.0.1:{free_port()}", scripts, concurrency=2, duration=5, max_turns=4))
    assert report.as_dict()["errors"] == {"connect": len(report.turns)} and len(report.turns) >= 2


def _write(folder, text):
    path = folder / "messages.txt"
    path.write_text(text, "utf-8")
    return path
