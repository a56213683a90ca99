"""The review page's HTML: jinja2 templates in ``templates/`` (autoescaped, ``StrictUndefined``)
filled from the traces. Each function takes the SQL engine and plain request values and
returns a page; none needs a web server.

    turns_page(sql, {"level": ["refuse"]})       # the list, filtered, paged
    turn_page(sql, "3f2a...")                    # one turn's whole trace and the label form
    export_jsonl(sql)                            # labelled questions, one JSON object a line
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine as SqlEngine

from bot.config import ROUTES
from bot.review.forms import FEEDBACK, GUARDS, KINDS, LEVELS, PAGE_SIZE, Args, parse_filter
from bot.traces import export_labelled, get_turn, list_turns

__all__ = ["ROOT", "login_page", "message_page", "turns_page", "turn_page", "export_jsonl"]

#: Where the review page is served; every link in the templates starts here.
ROOT = "/review"
TEMPLATES = Path(__file__).parent / "templates"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f}"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"  # stored as naive UTC


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(score=_score, ms=_ms, when=_when, segment=lambda value: quote(str(value), safe=""))
_env.globals.update(root=ROOT)


def _render(template: str, *, nav: bool = True, **values: Any) -> str:
    return _env.get_template(template).render(nav=nav, **values)


def login_page(*, error: str | None = None, next_url: str = ROOT) -> str:
    """The token form; ``error`` says why the last attempt failed."""
    return _render("login.html", nav=False, title="Sign in", error=error, next_url=next_url)


def message_page(title: str, message: str) -> str:
    """A page that only says something (the page is closed, the turn is unknown, ...)."""
    return _render("message.html", nav=False, title=title, message=message)


def turns_page(sql: SqlEngine, args: Args) -> str:
    """The turn list for a GET query (filters as :func:`bot.review.forms.parse_filter` reads them)."""
    query = parse_filter(args)
    rows = list_turns(sql, query.where, limit=PAGE_SIZE + 1, offset=query.offset)

    def page_url(page: int) -> str:
        return f"{ROOT}?{urlencode({**query.values, 'page': page})}"

    return _render(
        "turns.html",
        title="Turns",
        rows=rows[:PAGE_SIZE],
        query=query,
        values=query.values,
        levels=LEVELS,
        kinds=KINDS,
        guards=GUARDS,
        feedback_choices=FEEDBACK,
        previous_url=page_url(query.page - 1) if query.page > 1 else None,
        next_url=page_url(query.page + 1) if len(rows) > PAGE_SIZE else None,
        export_url=f"{ROOT}/export.jsonl",
    )


def turn_page(sql: SqlEngine, turn_id: str, *, error: str | None = None, form: Args | None = None) -> str | None:
    """One turn's whole trace with its labels and the label form; None for an unknown turn.

    ``error`` and ``form`` show a label form that could not be saved, as it was filled in.
    """
    turn = get_turn(sql, turn_id)
    if turn is None:
        return None
    title = turn.get("question") or turn_id
    return _render("turn.html", title=title, **_turn_view(turn), error=error, form=_form(form))


def export_jsonl(sql: SqlEngine) -> str:
    """Every labelled question as ``{"query", "expected", "turn_id"}``, one JSON object a line
    (the evaluation format ``bot calibrate`` reads)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in export_labelled(sql))


def _turn_view(turn: Mapping[str, Any]) -> dict[str, Any]:
    """What the turn template shows, with every optional part made explicit."""
    hits = turn.get("hits") or []
    routes = turn.get("routes") or {}
    route_names = list(ROUTES) + sorted({r for hit in hits for r in hit.get("route_scores") or {}} - set(ROUTES))
    decision = turn.get("decision") or {}
    prompt = turn.get("prompt") or {}
    return {
        "turn": turn,
        "decision": {
            "level": decision.get("level"),
            "signal": decision.get("signal"),
            "score": decision.get("score"),
            "thresholds": decision.get("thresholds") or {},
        },
        "filters": sorted((turn.get("filters") or {}).items()),
        "route_names": route_names,
        "rerank": any(hit.get("rerank_score") is not None for hit in hits),
        "hits": [
            {
                "rank": hit.get("rank"),
                "item_id": hit.get("item_id") or hit.get("id"),
                "title": hit.get("title") or "",
                "source": hit.get("source") or hit.get("doc") or "",
                "fused_score": hit.get("fused_score"),
                "route_scores": hit.get("route_scores") or {},
                "rerank_score": hit.get("rerank_score"),
            }
            for hit in hits
        ],
        "route_hits": [
            (route, [{"id": h.get("id"), "item_id": h.get("item_id") or h.get("id"), "doc": h.get("doc") or "",
                      "score": h.get("score")} for h in routes[route]])
            for route in [r for r in route_names if r in routes] + sorted(set(routes) - set(route_names))
        ],  # fmt: skip
        "prompt_template": prompt.get("template"),
        "messages": [
            {"role": message.get("role", ""), "content": message.get("content", "")}
            for message in prompt.get("messages") or []
        ],
        "citations": [
            {
                "number": c.get("number"),
                "title": c.get("title") or c.get("item_id") or "",
                "item_id": c.get("item_id") or "",
                "link": c.get("link") or c.get("source") or "",
                "href": _safe_href(c.get("link") or ""),
            }
            for c in turn.get("citations") or []
        ],
        "timings": list((turn.get("timings") or {}).items()),
        "item_choices": list({(hit.get("item_id") or hit.get("id")): hit.get("title") or "" for hit in hits}.items()),
        "feedback": turn.get("feedback") or [],
        "labels": turn.get("labels") or [],
    }


def _safe_href(link: str) -> str | None:
    """A citation's link when it is a web address (a file path is shown, not linked)."""
    return link if link.startswith(("http://", "https://")) else None


def _form(form: Args | None) -> dict[str, Any]:
    """The label form's values to show again (nothing checked by default)."""
    form = form or {}

    def values(name: str) -> list[str]:
        value = form.get(name) or []
        return [value] if isinstance(value, str) else list(value)

    return {
        "verdict": (values("verdict") or [""])[0],
        "expected": values("expected"),
        "expected_other": (values("expected_other") or [""])[0],
        "note": (values("note") or [""])[0],
    }
