"""Monitoring from traces: what the bot did over a period, day by day.

Turns per day by level (canned turns apart) and by guard decision, thumbs up and down, the
share of LLM answers that declined, p50 / p95 latency per stage, and the questions most often
left unanswered (refused or declined: candidates for new FAQ items).

    stats = trace_stats(sql, since=parse_moment("7d"))
    print(stats_tables(stats))          # bot traces stats
    stats.as_dict()                     # --json, the review page's overview
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine as SqlEngine

from bot.db.schema import feedback, turns
from bot.percentile import nearest_rank
from bot.traces.timespec import local_time

__all__ = ["TraceStats", "trace_stats", "stats_tables", "LEVELS", "GUARDS", "STAGES"]

#: What a knowledge turn's user got (bot.decide.Level), then canned responses, in chart order.
LEVELS = ("answer", "cautious", "sources_only", "refuse", "canned")
#: The guard's decisions (bot/guard), and "passed" for turns no guard stopped.
GUARDS = ("passed", "downgraded", "sensitive", "attack")
#: The order stages are reported in (trace timings, seconds); others follow by name, "total" last.
STAGES = ("rewrite", "embed", "search", "fusion", "rerank", "llm_first_token", "generate")
_TOP_REFUSED = 10
_SPACE = re.compile(r"\s+")
#: Closing punctuation stripped from a question (str.rstrip: a "[...]+$" pattern is quadratic).
_TRAILING = " ?？!！。.,，~～"


@dataclass
class TraceStats:
    """Counts and latencies over ``[since, until)``; days are local dates ("YYYY-MM-DD")."""

    since: datetime | None
    until: datetime | None
    turns: int = 0
    by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> level -> turns
    guard_by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> decision -> turns
    feedback_by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> up/down -> ratings
    llm_turns: int = 0  # knowledge turns the LLM answered or declined (answer, cautious)
    declined: int = 0
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> p50, p95 (ms), n
    refused: list[tuple[str, int]] = field(default_factory=list)  # (question, times), most frequent first

    @property
    def days(self) -> list[str]:
        return sorted(set(self.by_day) | set(self.feedback_by_day))

    @property
    def thumbs(self) -> dict[str, int]:
        return {kind: sum(day.get(kind, 0) for day in self.feedback_by_day.values()) for kind in ("up", "down")}

    @property
    def declined_rate(self) -> float | None:
        return round(self.declined / self.llm_turns, 4) if self.llm_turns else None

    def level_totals(self) -> dict[str, int]:
        return {level: sum(day.get(level, 0) for day in self.by_day.values()) for level in LEVELS}

    def guard_totals(self) -> dict[str, int]:
        return {guard: sum(day.get(guard, 0) for day in self.guard_by_day.values()) for guard in GUARDS}

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "turns": self.turns,
            "levels": self.level_totals(),
            "guard": self.guard_totals(),
            "thumbs": self.thumbs,
            "declined_rate": self.declined_rate,
            "latency_ms": self.latency,
            "by_day": {
                day: {
                    "levels": self.by_day.get(day, {}),
                    "guard": self.guard_by_day.get(day, {}),
                    "thumbs": self.feedback_by_day.get(day, {}),
                }
                for day in self.days
            },
            "refused_questions": [{"question": q, "times": n} for q, n in self.refused],
        }


def trace_stats(
    sql: SqlEngine, *, since: datetime | None = None, until: datetime | None = None, top: int = _TOP_REFUSED
) -> TraceStats:
    """Aggregate the turns and feedback created in ``[since, until)`` (None: unbounded)."""
    stats = TraceStats(since, until)
    columns = (turns.c.created_at, turns.c.kind, turns.c.level, turns.c.guard, turns.c.declined,
               turns.c.timings, turns.c.total_ms, turns.c.question)  # fmt: skip
    timings: dict[str, list[float]] = {}
    unanswered: Counter[str] = Counter()
    shown: dict[str, str] = {}
    with sql.connect() as conn:
        for row in conn.execute(_window(select(*columns), turns.c.created_at, since, until)):
            stats.turns += 1
            day = local_time(row.created_at, "%Y-%m-%d")
            level = "canned" if row.kind == "canned" else (row.level or "refuse")
            _count(stats.by_day, day, level)
            _count(stats.guard_by_day, day, row.guard or "passed")
            if row.kind != "knowledge":
                continue
            if level in ("answer", "cautious"):
                stats.llm_turns += 1
                stats.declined += bool(row.declined)
            for stage, seconds in (row.timings or {}).items():
                if stage != "total" and isinstance(seconds, (int, float)):
                    timings.setdefault(stage, []).append(seconds * 1000)
            if row.total_ms is not None:
                timings.setdefault("total", []).append(row.total_ms)
            if row.question and (level == "refuse" or row.declined):
                key = _question_key(row.question)
                unanswered[key] += 1
                shown.setdefault(key, " ".join(row.question.split()))
        ratings = select(feedback.c.created_at, feedback.c.rating)
        for row in conn.execute(_window(ratings, feedback.c.created_at, since, until)):
            _count(stats.feedback_by_day, local_time(row.created_at, "%Y-%m-%d"), "up" if row.rating > 0 else "down")
    stats.latency = {
        stage: {"p50": _percentile(values, 50), "p95": _percentile(values, 95), "n": len(values)}
        for stage, values in sorted(timings.items(), key=lambda item: _stage_order(item[0]))
    }
    stats.refused = [(shown[key], times) for key, times in unanswered.most_common(top)]
    return stats


def stats_tables(stats: TraceStats) -> str:
    """The statistics as text tables: per day by level and by guard, thumbs, latency, refused questions."""
    lines = [f"{stats.turns} turns from {_moment(stats.since, 'the start')} to {_moment(stats.until, 'now')}"]
    if not stats.turns and not stats.feedback_by_day:
        return lines[0]
    levels = [level for level in LEVELS if stats.level_totals()[level]]
    guards = [guard for guard in GUARDS if stats.guard_totals()[guard]]
    header = ["day", *levels, "|", *guards, "|", "up", "down"]
    rows = [
        [day, *(stats.by_day.get(day, {}).get(level, 0) for level in levels), "|",
         *(stats.guard_by_day.get(day, {}).get(g, 0) for g in guards), "|",
         stats.feedback_by_day.get(day, {}).get("up", 0), stats.feedback_by_day.get(day, {}).get("down", 0)]
        for day in stats.days
    ]  # fmt: skip
    totals = stats.level_totals(), stats.guard_totals(), stats.thumbs
    rows.append(["total", *(totals[0][level] for level in levels), "|", *(totals[1][g] for g in guards), "|",
                 totals[2]["up"], totals[2]["down"]])  # fmt: skip
    lines += ["", _table(header, rows)]
    rate = "-" if stats.declined_rate is None else f"{stats.declined_rate:.1%}"
    lines.append(f"\nLLM declined: {stats.declined} of {stats.llm_turns} answered turns ({rate})")
    if stats.latency:
        latency = [[stage, f"{v['p50']:.0f}", f"{v['p95']:.0f}", v["n"]] for stage, v in stats.latency.items()]
        lines += ["", _table(["stage", "p50 ms", "p95 ms", "turns"], latency)]
    if stats.refused:
        lines += ["", "most frequent unanswered questions (refused or declined):"]
        lines += [f"  {times:>4}  {question}" for question, times in stats.refused]
    return "\n".join(lines)


def _stage_order(stage: str) -> tuple[int, str]:
    if stage == "total":
        return (len(STAGES) + 1, stage)
    return (STAGES.index(stage), stage) if stage in STAGES else (len(STAGES), stage)


def _window(query, column, since: datetime | None, until: datetime | None):
    if since is not None:
        query = query.where(column >= _naive_utc(since))
    if until is not None:
        query = query.where(column < _naive_utc(until))
    return query


def _count(table: dict[str, dict[str, int]], day: str, key: str) -> None:
    counts = table.setdefault(day, {})
    counts[key] = counts.get(key, 0) + 1


def _question_key(question: str) -> str:
    """Questions that differ only in case, spacing or closing punctuation count as one."""
    return _SPACE.sub(" ", question.strip().lower()).rstrip(_TRAILING)


def _percentile(values: list[float], percent: int) -> float:
    return round(nearest_rank(values, percent), 1)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _moment(moment: datetime | None, default: str) -> str:
    return default if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _table(header: list, rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in cells
    )
