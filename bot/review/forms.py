"""The review page's two forms as plain data: the list's filters (a GET query) and the label
form (a POST). Arguments are ``{name: [values]}`` as sanic's ``request.args`` and
``request.form`` hold them (a bare string is taken as one value).

    query = parse_filter({"level": ["refuse"], "max_score": ["0.8"], "page": ["2"]})
    query.where          # TurnFilter(level='refuse', max_score=0.8)
    submit_label(sql, turn_id, {"verdict": ["answer"], "expected": ["faq-en-refund"], "note": ["..."]})
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy.engine import Engine as SqlEngine

from bot.decide import Level
from bot.traces import VERDICTS, TurnFilter, label_turn

__all__ = ["PAGE_SIZE", "LEVELS", "KINDS", "FEEDBACK", "ListQuery", "LabelError", "parse_filter", "submit_label"]

#: Turns per page of the list.
PAGE_SIZE = 50
#: The last page a query may ask for (5 million turns; a larger offset is refused, not sent to SQL).
MAX_PAGE = 100_000
LEVELS = tuple(level.value for level in Level)
KINDS = ("knowledge", "canned")
FEEDBACK = ("negative", "positive", "any")
GUARDS = ("attack", "sensitive", "downgraded", "any", "none")  # bot/guard's decisions (TurnFilter.guard)
#: The list's filter fields, in the form's order.
FILTER_FIELDS = ("level", "kind", "intent", "guard", "feedback", "labelled", "max_score", "since", "until", "text")
_ID_SEPARATORS = re.compile(r"[,，\s]+")

Args = Mapping[str, Sequence[str] | str]


class LabelError(ValueError):
    """A label form that cannot be recorded (the message says what to fix)."""


@dataclass(frozen=True)
class ListQuery:
    """The list's filter, page (1 = first), the raw values (to refill the form) and what was ignored."""

    where: TurnFilter
    page: int = 1
    values: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


def parse_filter(args: Args) -> ListQuery:
    """The list filter in a GET query; a value that makes no sense is ignored and reported."""
    values = {name: _first(args, name) for name in FILTER_FIELDS}
    errors: list[str] = []
    for name, value in values.items():
        if "\x00" in value:  # no database takes a NUL in a string
            errors.append(f"{name} holds a NUL character")
            values[name] = ""
    chosen: dict[str, Any] = {}
    for name, allowed in (("level", LEVELS), ("kind", KINDS), ("guard", GUARDS), ("feedback", FEEDBACK)):
        if values[name]:
            if values[name] in allowed:
                chosen[name] = values[name]
            else:
                errors.append(f"{name} is one of {', '.join(allowed)}, not {values[name]!r}")
    if values["intent"]:
        chosen["intent"] = values["intent"]
    if values["text"]:
        chosen["text"] = values["text"]
    if values["labelled"] in ("yes", "no"):
        chosen["labelled"] = values["labelled"] == "yes"
    elif values["labelled"]:
        errors.append(f"labelled is yes or no, not {values['labelled']!r}")
    if values["max_score"]:
        try:
            chosen["max_score"] = float(values["max_score"])
            if not math.isfinite(chosen["max_score"]):
                raise ValueError
        except ValueError:
            chosen.pop("max_score", None)
            errors.append(f"max score must be a number, not {values['max_score']!r}")
    for name, shift in (("since", timedelta(0)), ("until", timedelta(days=1))):  # "until" includes its day
        if values[name]:
            try:
                chosen[name] = datetime.combine(date.fromisoformat(values[name]), time()) + shift
            except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
                errors.append(f"{'from' if name == 'since' else 'to'} date must be YYYY-MM-DD, not {values[name]!r}")
    page = _first(args, "page")
    if page and not (re.fullmatch(r"[0-9]{1,6}", page) and 0 < int(page) <= MAX_PAGE):
        errors.append(f"page is a whole number from 1 to {MAX_PAGE}, not {page[:20]!r}")
        page = ""
    return ListQuery(
        TurnFilter(**chosen),
        page=int(page) if page else 1,
        values={name: value for name, value in values.items() if value},
        errors=errors,
    )


def submit_label(sql: SqlEngine, turn_id: str, form: Args) -> int:
    """Record the label form's verdict on ``turn_id``; returns the label's id.

    ``verdict`` is ``answer`` (with item ids: the ``expected`` checkboxes plus the comma-separated
    ``expected_other`` field) or ``refuse``; ``note`` is optional. Raises :class:`LabelError`
    for an incomplete form and ``KeyError`` for an unknown turn.
    """
    verdict = _first(form, "verdict")
    if verdict not in VERDICTS:
        raise LabelError("choose a verdict: should have answered (with item ids) or should have refused")
    expected = [item.strip() for item in _all(form, "expected") if item.strip()]
    expected += [item for item in _ID_SEPARATORS.split(_first(form, "expected_other")) if item]
    if verdict == "answer" and not expected:
        raise LabelError("'should have answered with' needs at least one item id: tick a hit or type an id")
    if verdict == "refuse" and expected:
        raise LabelError("'should have refused' takes no item ids: untick the hits and clear the id field")
    note = _first(form, "note") or None
    return label_turn(sql, turn_id, verdict, expected=list(dict.fromkeys(expected)), note=note)


def _all(args: Args, name: str) -> list[str]:
    value = args.get(name)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]


def _first(args: Args, name: str) -> str:
    values = _all(args, name)
    return values[0].strip() if values else ""
