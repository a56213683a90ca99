"""The review page's overview: the last days of traffic as charts and tables (``bot traces
stats`` on the page). Charts are inline SVG drawn here (:mod:`bot.review.charts`).

    html, errors = overview_page(sql, {"days": ["7"]})
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from sqlalchemy.engine import Engine as SqlEngine

from bot.review.charts import bar_chart
from bot.review.forms import Args
from bot.review.pages import ROOT, _render
from bot.traces.stats import GUARDS, LEVELS, trace_stats

__all__ = ["overview_page", "DEFAULT_DAYS", "MAX_DAYS"]

DEFAULT_DAYS = 7
MAX_DAYS = 366


def overview_page(sql: SqlEngine, args: Args) -> tuple[str, list[str]]:
    """The overview of the last ``days`` days (query ``days``, default 7) and what was ignored."""
    days, errors = _days(args)
    now = datetime.now(timezone.utc)
    stats = trace_stats(sql, since=now - timedelta(days=days))
    labels = [day[5:] for day in stats.days]  # MM-DD
    levels = [level for level in LEVELS if stats.level_totals()[level]] or ["answer"]
    guards = [guard for guard in GUARDS if stats.guard_totals()[guard]] or ["passed"]
    charts = [
        bar_chart(labels, {level: [stats.by_day.get(d, {}).get(level, 0) for d in stats.days] for level in levels},
                  title="Turns per day by level"),
        bar_chart(labels, {g: [stats.guard_by_day.get(d, {}).get(g, 0) for d in stats.days] for g in guards},
                  title="Turns per day by guard decision"),
        bar_chart(labels, {k: [stats.feedback_by_day.get(d, {}).get(k, 0) for d in stats.days] for k in ("up", "down")},
                  title="Thumbs up and down per day", stacked=False),
        bar_chart(list(stats.latency), {p: [v[p] for v in stats.latency.values()] for p in ("p50", "p95")},
                  title="Latency per stage (ms)", stacked=False),
    ]  # fmt: skip
    refused = [
        (question, times, f"{ROOT}?{urlencode({'text': question})}") for question, times in stats.refused
    ]
    html = _render(
        "overview.html", title="Overview", days=days, stats=stats, charts=charts, refused=refused,
        levels=stats.level_totals(), guards=stats.guard_totals(), errors=errors,
    )  # fmt: skip
    return html, errors


def _days(args: Args) -> tuple[int, list[str]]:
    value = args.get("days") or []
    value = value if isinstance(value, str) else (value[0] if value else "")
    if not value:
        return DEFAULT_DAYS, []
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_DAYS:
        return int(value), []
    return DEFAULT_DAYS, [f"days must be a whole number from 1 to {MAX_DAYS}; showing {DEFAULT_DAYS}"]
