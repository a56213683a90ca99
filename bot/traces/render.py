"""Traces as text for a terminal (``bot traces list`` and ``show``) and as JSON.

    print(turn_table(list_turns(sql)))      # one line per turn
    print(render_turn(get_turn(sql, turn_id)))
    print(to_json(turn))                     # datetimes as ISO UTC ("...Z")
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from typing import Any, Mapping, Sequence

from bot.config import ROUTES
from bot.lang import shorten
from bot.traces.timespec import local_time

__all__ = ["turn_table", "render_turn", "to_json", "label_id", "SHORT_ID"]

#: Characters of a turn id shown in the list (``show`` and ``label`` take any unique prefix).
SHORT_ID = 12
_QUESTION_WIDTH = 60
_ROUTE_LABELS = {"question_dense": "q_dense", "question_sparse": "q_sparse", "content_dense": "c_dense", "content_sparse": "c_sparse"}


def to_json(value: Any) -> str:
    """``value`` as indented JSON; stored times (naive UTC) become ISO strings ending in Z."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    return str(value)


# ---------------------------------------------------------------- the list


def turn_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per turn: local time, short id, kind, level, score, net feedback, verdict, question."""
    headers = ("time", "turn", "kind", "level", "score", "feedback", "verdict", "question")
    cells = [
        (
            local_time(row["created_at"]),
            row["turn_id"][:SHORT_ID],
            f"{row['kind']}/{row['guard']}" if row.get("guard") else row["kind"],
            row["level"] or "-",
            _number(row["score"], 3),
            _feedback(row.get("rating"), row.get("ratings")),
            row.get("verdict") or "-",
            _question(row),
        )
        for row in rows
    ]
    widths = [max([_width(header)] + [_width(line[i]) for line in cells]) for i, header in enumerate(headers)]
    widths[-1] = 0  # the last column is not padded

    def line(values: Sequence[str]) -> str:
        return "  ".join(_pad(value, width) for value, width in zip(values, widths)).rstrip()

    return "\n".join([line(headers), *(line(values) for values in cells)])


def _question(row: Mapping[str, Any]) -> str:
    if row.get("question"):
        return shorten(row["question"], _QUESTION_WIDTH)
    return f"({row['response']})" if row.get("response") else "-"


def _feedback(rating: int | None, ratings: int | None) -> str:
    if not ratings:
        return "-"
    net = f"{int(rating):+d}" if rating else "0"
    return net if ratings == 1 else f"{net} ({ratings})"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- one turn


def render_turn(turn: Mapping[str, Any]) -> str:
    """The whole trace of one turn, section by section."""
    out: list[str] = []
    add = out.append
    add(f"turn {turn['turn_id']}  ({turn['kind']})")
    add(f"  time:         {local_time(turn['created_at'], '%Y-%m-%d %H:%M:%S %Z')}")
    who = [f"conversation {turn['conversation_id']}"]
    if turn.get("message_id"):
        who.append(f"message {turn['message_id']}")
    if turn.get("channel"):
        who.append(f"channel {turn['channel']}")
    add(f"  from:         {', '.join(who)}")
    if turn.get("intent"):
        confidence = turn.get("intent_confidence")
        add(f"  intent:       {turn['intent']}" + (f" ({confidence:.3f})" if confidence is not None else ""))
    if turn.get("language"):
        add(f"  language:     {turn['language']}")
    add(f"  question:     {turn.get('question') or '-'}")
    if turn.get("query") and turn["query"] != turn.get("question"):
        add(f"  searched:     {turn['query']}")
    guard = turn.get("guard_reason") or {}
    if turn.get("guard"):
        add(f"  guard:        {turn['guard']} by the {guard.get('layer', '?')} layer ({guard.get('category', '?')}): {guard.get('reason', '')}")
    if turn["kind"] != "knowledge":
        add(f"  response:     {turn.get('response') or '-'}")
    else:
        _knowledge(turn, add)
    _reviews(turn, add)
    return "\n".join(out)


def _knowledge(turn: Mapping[str, Any], add) -> None:
    if turn.get("filters"):
        add(f"  filters:      {', '.join(f'{k}={_filter(v)}' for k, v in turn['filters'].items())}")
    decision = turn.get("decision") or {}
    thresholds = decision.get("thresholds") or {}
    add(
        f"  decision:     {decision.get('level', '-')} on {decision.get('signal', '?')} "
        f"{_number(decision.get('score'), 4)}  (thresholds: answer >= {thresholds.get('answer', '?')}, "
        f"caution >= {thresholds.get('caution', '?')}, sources >= {thresholds.get('sources', '?')})"
    )
    if decision.get("rerank_skipped"):
        add(f"  rerank:       skipped: {decision['rerank_skipped']}")
    if turn.get("level") and turn["level"] != decision.get("level"):
        add(f"  delivered:    {turn['level']} (not the decision's level: no LLM in use, or it failed)")
    flags = [name for name in ("widened", "declined") if turn.get(name)]
    if flags:
        add(f"  flags:        {', '.join(flags)}  (widened: the scope was dropped; declined: the LLM said the passages do not answer)")
    for name in ("notice", "error"):
        if turn.get(name):
            add(f"  {name + ':':<14}{turn[name]}")

    hits = turn.get("hits") or []
    add("")
    add(f"fused hits ({len(hits)})")
    if hits:
        add(_hits_table(hits))
    routes = turn.get("routes") or {}
    if routes:
        add("")
        add("each route's own ranking (best 5)")
        for route in [*[r for r in ROUTES if r in routes], *[r for r in routes if r not in ROUTES]]:
            ranked = routes[route][:5]
            listed = ", ".join(f"{label_id(hit)} {hit.get('score', 0):.3f}" for hit in ranked)
            add(f"  {route:<16} {listed or '(nothing)'}")

    prompt = turn.get("prompt")
    add("")
    if prompt:
        add(f"prompt ({prompt.get('template') or 'no template'})")
        for message in prompt.get("messages") or []:
            add(f"  [{message.get('role', '?')}]")
            add(_indent(str(message.get("content", "")), 4))
    else:
        add("prompt: none (no LLM call)")

    add("")
    add("answer")
    add(_indent(turn.get("answer") or "-", 2))
    citations = turn.get("citations") or []
    if citations:
        add("citations")
        for citation in citations:
            add(
                f"  [{citation.get('number')}] {citation.get('title') or '-'} — {citation.get('link') or citation.get('source') or '-'}"
                f"  ({citation.get('item_id')})"
            )
    add("")
    timings = turn.get("timings") or {}
    stages = "  ".join(f"{stage} {seconds * 1000:.1f}" for stage, seconds in timings.items() if stage != "total")
    add(f"timings (ms):   {stages or '-'}  | total {_number(turn.get('total_ms'), 1)}")
    if turn.get("model"):
        add(
            f"model:          {turn['model']}  (prompt {turn.get('prompt_tokens') or '-'} tokens, "
            f"answer {turn.get('completion_tokens') or '-'} tokens)"
        )


def _hits_table(hits: Sequence[Mapping[str, Any]]) -> str:
    routes = [r for r in ROUTES if any(r in (hit.get("route_scores") or {}) for hit in hits)]
    reranked = any(hit.get("rerank_score") is not None for hit in hits)
    headers = ["#", "fused", *(_ROUTE_LABELS.get(r, r) for r in routes), *(["rerank"] if reranked else []), "item", "title", "source"]
    rows = []
    for hit in hits:
        scores = hit.get("route_scores") or {}
        rows.append(
            [
                str(hit.get("rank", "")),
                _number(hit.get("fused_score"), 4),
                *(_number(scores.get(route), 3) for route in routes),
                *([_number(hit.get("rerank_score"), 3)] if reranked else []),
                label_id(hit),
                shorten(hit.get("title") or "-", 40),
                hit.get("source") or "-",
            ]
        )
    numeric = 2 + len(routes) + reranked
    widths = [max([_width(headers[i])] + [_width(row[i]) for row in rows]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  " + "  ".join(
            _pad(value, width, right=i < numeric) for i, (value, width) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _reviews(turn: Mapping[str, Any], add) -> None:
    add("")
    ratings = turn.get("feedback") or []
    if ratings:
        add("feedback")
        for rating in ratings:
            comment = f"  \"{rating['comment']}\"" if rating.get("comment") else ""
            add(f"  {local_time(rating.get('created_at'))}  {int(rating['rating']):+d}{comment}")
    else:
        add("feedback: none")
    labels = turn.get("labels") or []
    if labels:
        add("labels (latest last)")
        for label in labels:
            expected = f" {', '.join(label.get('expected') or [])}" if label.get("expected") else ""
            note = f"  \"{label['note']}\"" if label.get("note") else ""
            add(f"  {local_time(label.get('created_at'))}  {label['verdict']}{expected}{note}")
    else:
        add("labels: none (bot traces label TURN_ID --answer ITEM_ID | --refuse)")


def _filter(value: Any) -> str:
    if isinstance(value, dict) and "or_missing" in value:
        return f"{_filter(value['or_missing'])} (or missing)"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def label_id(hit: Mapping[str, Any]) -> str:
    """The id a label should name for a hit: its item id, or its document for a passage that
    has no id of its own (its item id is then the chunk's point id, which edits change)."""
    item = hit.get("item_id") or ""
    if (not item or item == hit.get("id")) and hit.get("doc"):
        return str(hit["doc"])
    return str(item or hit.get("id") or "-")


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, *, right: bool = False) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines() or [""])
