"""The bad-case review page, without the web server: HTML from the traces in SQL, the label
form, the JSON-lines export and the token check. ``actions/review.py`` serves it from the
action server; everything here takes plain values (the SQL engine, request arguments as
``{name: [values]}``, header and cookie strings), so it is testable without sanic.

    html = turns_page(sql, {"level": ["refuse"]})             # the filterable list
    html = turn_page(sql, turn_id)                            # one turn's full trace (None: unknown)
    submit_label(sql, turn_id, {"verdict": ["refuse"]})       # the label form's POST
    check_access(token, authorization="Bearer ...", cookie=None)   # Access.GRANTED
"""

from bot.review.auth import COOKIE, Access, check_access, session_value, token_matches
from bot.review.forms import PAGE_SIZE, LabelError, parse_filter, submit_label
from bot.review.overview import overview_page
from bot.review.pages import ROOT, export_jsonl, login_page, message_page, turn_page, turns_page

__all__ = [
    "ROOT",
    "COOKIE",
    "PAGE_SIZE",
    "Access",
    "LabelError",
    "check_access",
    "session_value",
    "token_matches",
    "parse_filter",
    "submit_label",
    "turns_page",
    "turn_page",
    "login_page",
    "message_page",
    "export_jsonl",
    "overview_page",
]
