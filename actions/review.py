"""The bad-case review page on the action server's sanic app (``bot.review`` renders it).

    GET  /review                          the turn list (filters in the query)
    GET  /review/turns/<turn_id>          one turn's whole trace and the label form
    POST /review/turns/<turn_id>/label    record a label, then back to the turn (303)
    GET  /review/export.jsonl             labelled questions as JSON lines
    GET  /review/overview                 the last days as charts (query: days)
    GET  /review/login, POST /review/login, POST /review/logout

Only the holder of ``traces.review_token`` (bot.yml, ``BOT_REVIEW_TOKEN``) gets in, with
``Authorization: Bearer <token>`` or the session cookie the login form sets. Without a
configured token every route answers 503. Database work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from urllib.parse import quote

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse, html, redirect, text

from actions import runtime
from bot.config import load_settings
from bot.review import (
    COOKIE,
    ROOT,
    Access,
    LabelError,
    check_access,
    export_jsonl,
    login_page,
    message_page,
    overview_page,
    parse_filter,
    session_value,
    submit_label,
    token_matches,
    turn_page,
    turns_page,
)

__all__ = ["attach"]

logger = logging.getLogger(__name__)

#: The longest turn id looked up (the traces' column holds 64 characters).
_MAX_TURN_ID = 64
_CLOSED = (
    "The review page is closed: set BOT_REVIEW_TOKEN (traces.review_token in bot.yml) and restart the action server."
)
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def attach(app: Sanic) -> None:
    """Register the review routes on ``app``."""
    app.add_route(_list, ROOT, methods=["GET"], name="review_list")
    app.add_route(_turn, f"{ROOT}/turns/<turn_id>", methods=["GET"], name="review_turn", unquote=True)
    app.add_route(_label, f"{ROOT}/turns/<turn_id>/label", methods=["POST"], name="review_label", unquote=True)
    app.add_route(_export, f"{ROOT}/export.jsonl", methods=["GET"], name="review_export")
    app.add_route(_overview, f"{ROOT}/overview", methods=["GET"], name="review_overview")
    app.add_route(_login_form, f"{ROOT}/login", methods=["GET"], name="review_login_form")
    app.add_route(_login, f"{ROOT}/login", methods=["POST"], name="review_login")
    app.add_route(_logout, f"{ROOT}/logout", methods=["POST"], name="review_logout")


@functools.lru_cache(maxsize=1)
def _token() -> str | None:
    """The configured review token (read once per process; None or empty: the page is closed)."""
    token = load_settings().traces.review_token
    return str(token) if token else None


def _access(request: Request) -> Access:
    authorization, cookie = request.headers.get("authorization"), request.cookies.get(COOKIE)
    return check_access(_token(), authorization=authorization, cookie=cookie)


def _page(body: str, status: int = 200) -> HTTPResponse:
    return html(body, status=status, headers=dict(_HEADERS))


def _closed() -> HTTPResponse:
    return _page(message_page("Review page closed", _CLOSED), 503)


def _refused_page(request: Request, back: str | None = None) -> HTTPResponse | None:
    """The answer to an HTML request that may not see the page (None: it may): the login
    page, which then leads ``back`` (default: the page asked for)."""
    access = _access(request)
    if access is Access.CLOSED:
        return _closed()
    if access is Access.DENIED:
        back = back or request.path + (f"?{request.query_string}" if request.query_string else "")
        return redirect(f"{ROOT}/login?next={quote(back, safe='')}", status=303, headers=dict(_HEADERS))
    return None


def _values(params) -> dict[str, list[str]]:
    """Sanic's query or form parameters as ``{name: [values]}`` (its ``get`` gives only the first)."""
    return {name: params.getlist(name) for name in params}


async def _sql():
    """The engine's SQL database (the engine is built at start-up; see actions.server)."""
    return (await runtime.get_engine()).sql


async def _with_sql(work, *args, **kwargs):
    """``work(sql, ...)`` in a worker thread; raises :class:`_Unavailable` when the engine cannot be built."""
    try:
        sql = await _sql()
    except Exception as exc:
        logger.error("review page: the knowledge engine is not available: %s", exc)
        raise _Unavailable(str(exc)) from exc
    return await asyncio.to_thread(work, sql, *args, **kwargs)


class _Unavailable(Exception):
    """The engine (and so the database) could not be built."""


def _unavailable(exc: _Unavailable) -> HTTPResponse:
    return _page(message_page("Review page unavailable", f"The knowledge engine could not be built: {exc}"), 503)


async def _list(request: Request) -> HTTPResponse:
    if (refused := _refused_page(request)) is not None:
        return refused
    args = _values(request.args)
    try:
        body = await _with_sql(turns_page, args)
    except _Unavailable as exc:
        return _unavailable(exc)
    return _page(body, 400 if parse_filter(args).errors else 200)  # the page says what was ignored


async def _turn(request: Request, turn_id: str) -> HTTPResponse:
    if (refused := _refused_page(request)) is not None:
        return refused
    if not _plausible_turn_id(turn_id):
        return _unknown_turn()
    try:
        body = await _with_sql(turn_page, turn_id)
    except _Unavailable as exc:
        return _unavailable(exc)
    return _unknown_turn() if body is None else _page(body)


async def _label(request: Request, turn_id: str) -> HTTPResponse:
    if (refused := _refused_page(request, back=_turn_url(turn_id))) is not None:
        return refused
    if not _plausible_turn_id(turn_id):
        return _unknown_turn()
    form = _values(request.form)
    try:
        await _with_sql(submit_label, turn_id, form)
    except _Unavailable as exc:
        return _unavailable(exc)
    except KeyError:
        return _unknown_turn()
    except LabelError as exc:
        body = await _with_sql(turn_page, turn_id, error=str(exc), form=form)
        return _unknown_turn() if body is None else _page(body, 400)
    return redirect(f"{_turn_url(turn_id)}#labels", status=303, headers=dict(_HEADERS))


async def _overview(request: Request) -> HTTPResponse:
    if (refused := _refused_page(request)) is not None:
        return refused
    try:
        body, errors = await _with_sql(overview_page, _values(request.args))
    except _Unavailable as exc:
        return _unavailable(exc)
    return _page(body, 400 if errors else 200)


def _plausible_turn_id(turn_id: str) -> bool:
    """Whether ``turn_id`` could name a turn (ids are 32 hex digits; no database takes a NUL)."""
    return 0 < len(turn_id) <= _MAX_TURN_ID and "\x00" not in turn_id


def _unknown_turn() -> HTTPResponse:
    return _page(message_page("Unknown turn", "There is no such turn in the traces."), 404)


def _turn_url(turn_id: str) -> str:
    return f"{ROOT}/turns/{quote(turn_id, safe='')}"


async def _export(request: Request) -> HTTPResponse:
    access = _access(request)
    if access is Access.CLOSED:
        return text(_CLOSED, status=503, headers=dict(_HEADERS))
    if access is Access.DENIED:
        return text(
            "Sign in to the review page, or send Authorization: Bearer <BOT_REVIEW_TOKEN>.",
            status=401,
            headers={**_HEADERS, "WWW-Authenticate": 'Bearer realm="review"'},
        )
    try:
        body = await _with_sql(export_jsonl)
    except _Unavailable as exc:
        return text(f"The knowledge engine could not be built: {exc}", status=503, headers=dict(_HEADERS))
    return HTTPResponse(body, headers=dict(_HEADERS), content_type="application/x-ndjson; charset=utf-8")


def _next_url(value: str | None) -> str:
    """Where to go after signing in: a review page only (no open redirect)."""
    if value and value.startswith(ROOT) and not value.startswith("//") and "\\" not in value:
        return value
    return ROOT


async def _login_form(request: Request) -> HTTPResponse:
    if _token() is None:
        return _closed()
    return _page(login_page(next_url=_next_url(request.args.get("next"))))


async def _login(request: Request) -> HTTPResponse:
    token = _token()
    if token is None:
        return _closed()
    next_url = _next_url(request.form.get("next"))
    if not token_matches(token, request.form.get("token")):
        return _page(login_page(error="That is not the review token.", next_url=next_url), 401)
    response = redirect(next_url, status=303, headers=dict(_HEADERS))
    response.cookies[COOKIE] = session_value(token)
    cookie = response.cookies[COOKIE]
    cookie["path"] = ROOT
    cookie["httponly"] = True
    cookie["samesite"] = "Strict"
    cookie["secure"] = request.scheme == "https"
    return response


async def _logout(request: Request) -> HTTPResponse:
    if _token() is None:
        return _closed()
    response = redirect(f"{ROOT}/login", status=303, headers=dict(_HEADERS))
    response.cookies[COOKIE] = ""
    response.cookies[COOKIE]["path"] = ROOT
    response.cookies[COOKIE]["max-age"] = 0
    return response
