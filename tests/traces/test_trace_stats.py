"""Monitoring from traces (bot/traces/stats.py, `bot traces stats`): 240 scripted turns written
through the real trace writer into SQLite (tests/traffic.py), then every figure recomputed
here from what was written and compared."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import load_settings
from bot.db import connect
from bot.traces.stats import trace_stats
from bot.traces.timespec import local_time
from kb_project import write_project
from traffic import TOP_REFUSED, TOP_REFUSED_TIMES, write_traffic


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = write_project(tmp_path_factory.mktemp("stats"), knowledge=False)
    sql = connect(load_settings(root).sql.url, root)
    return root, sql, write_traffic(sql)


def nearest_rank(values, percent):
    ordered = sorted(values)
    return ordered[max(0, -(-percent * len(ordered) // 100) - 1)]


def test_stats_recount_what_was_written(project):
    _, sql, written = project
    since = datetime.now(timezone.utc) - timedelta(days=7)
    turns = written.within(since.replace(tzinfo=None))
    assert 150 < len(turns) < len(written.turns), "the window leaves the older turns out"
    stats = trace_stats(sql, since=since)
    assert stats.turns == len(turns)

    levels = Counter("canned" if t["kind"] == "canned" else t["level"] for t in turns)
    assert stats.level_totals() == {name: levels.get(name, 0) for name in stats.level_totals()}
    guards = Counter(t["guard"] or "passed" for t in turns)
    assert stats.guard_totals() == {name: guards.get(name, 0) for name in stats.guard_totals()}
    assert min(guards["attack"], guards["sensitive"], guards["downgraded"]) > 0
    by_day = Counter(local_time(t["created_at"], "%Y-%m-%d") for t in turns)
    assert {day: sum(counts.values()) for day, counts in stats.by_day.items()} == by_day
    assert len(stats.days) >= 7

    ratings = [rating for created, rating in written.ratings if created >= since.replace(tzinfo=None)]
    assert stats.thumbs == {"up": ratings.count(1), "down": ratings.count(-1)}
    llm = [t for t in turns if t["level"] in ("answer", "cautious")]
    assert stats.llm_turns == len(llm) and stats.declined == sum(t["declined"] for t in llm)

    generate = [t["timings"]["generate"] * 1000 for t in llm]
    assert stats.latency["generate"]["p50"] == pytest.approx(nearest_rank(generate, 50), abs=0.1)
    assert stats.latency["generate"]["p95"] == pytest.approx(nearest_rank(generate, 95), abs=0.1)
    totals = [t["timings"]["total"] * 1000 for t in turns if t["kind"] == "knowledge"]
    assert stats.latency["total"]["p95"] == pytest.approx(nearest_rank(totals, 95), abs=0.1)
    assert list(stats.latency)[-1] == "total" and list(stats.latency)[:2] == ["embed", "search"]

    question, times = stats.refused[0]
    assert question.lower().startswith(TOP_REFUSED.lower().rstrip("?"))
    assert times == sum(1 for t in turns if t["level"] == "refuse" and "bitcoin" in t["question"].lower())
    assert times <= TOP_REFUSED_TIMES and times > stats.refused[1][1]


def test_traces_stats_command(project):
    root, _, written = project
    runner = CliRunner()
    result = runner.invoke(cli, ["--root", str(root), "traces", "stats", "--since", "7d"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    total = next(line for line in lines if line.startswith("total"))
    since = (datetime.now(timezone.utc) - timedelta(days=7)).replace(tzinfo=None)
    assert int(total.split()[1]) == sum(1 for t in written.within(since) if t["level"] == "answer")
    assert "LLM declined:" in result.output and "p95 ms" in result.output
    assert "most frequent unanswered questions" in result.output and "Bitcoin" in result.output

    as_json = runner.invoke(cli, ["--root", str(root), "traces", "stats", "--since", "30d", "--json"])
    data = json.loads(as_json.output)
    assert data["turns"] == len(written.turns) and sum(data["levels"].values()) == len(written.turns)
    bad = runner.invoke(cli, ["--root", str(root), "traces", "stats", "--since", "last week"])
    assert bad.exit_code == 2 and "is not a date" in bad.output
