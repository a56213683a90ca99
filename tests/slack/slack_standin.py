"""A local STAND-IN for Slack's Web API, and Slack's side of the Events API (signed requests).

Slack itself cannot be reached from here (no internet), so the tests point the bot's Slack
clients (Rasa's channel: ``slack_api_url``; the action server's sink: ``SLACK_API_URL``) at
:class:`SlackApiStandIn`: an HTTP server on 127.0.0.1 that answers ``chat.postMessage`` and
``chat.update`` as Slack's Web API does (``{"ok": true, "channel", "ts", "message"}``; an update
of an unknown message is ``message_not_found``; a wrong token is ``invalid_auth``), keeps the
messages as a Slack channel would show them, and records every call. Failures (a rate limit, an
error) can be queued for the next calls of a method.

(A module name of its own: every folder of tests/ has a ``conftest``, so tests must not import
helpers from one.)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl

import httpx

__all__ = ["Call", "SlackApiStandIn", "sign", "post_signed", "message_event", "BOT_USER", "TEST_TOKEN"]

#: The bot token the tests give the bot, and the one the stand-in accepts.
TEST_TOKEN = "xoxb-test-token"
#: The bot's own Slack user id in the events the tests send (``authorizations``).
BOT_USER = "UBOT0001"


@dataclass
class Call:
    """One Web API call the stand-in received."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)
    ok: bool = True
    response: dict[str, Any] = field(default_factory=dict)  # what the stand-in answered

    @property
    def channel(self) -> str | None:
        return self.params.get("channel")

    @property
    def text(self) -> str:
        return self.params.get("text") or ""


class SlackApiStandIn:
    """A STAND-IN for Slack's Web API (``https://slack.com/api/``) on 127.0.0.1.

        with SlackApiStandIn(token="xoxb-test") as api:
            client = AsyncWebClient("xoxb-test", base_url=api.url)
            ...
            api.calls  # [Call(method="chat.postMessage", params={...}), ...]
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self._failures: dict[str, list[tuple[int, str, float | None]]] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-api-stand-in", daemon=True)

    @property
    def url(self) -> str:
        """The Web API base URL (slack_sdk's ``base_url``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def start(self) -> "SlackApiStandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "SlackApiStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, method: str, error: str, *, status: int = 200, retry_after: float | None = None) -> None:
        """Make the next call of ``method`` fail with ``error`` (``ratelimited`` with status 429
        and ``retry_after`` is Slack's rate limit)."""
        with self._lock:
            self._failures.setdefault(method, []).append((status, error, retry_after))

    def calls_to(self, channel: str, method: str | None = None) -> list[Call]:
        """The successful calls about ``channel`` (of ``method``), in order."""
        with self._lock:
            return [c for c in self.calls if c.ok and c.channel == channel and (method is None or c.method == method)]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message as the channel shows it now."""
        with self._lock:
            return self.messages.get((channel, ts))

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str = "the condition") -> Any:
        """Poll ``condition`` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                with self._lock:
                    seen = [(c.method, c.channel, c.text[:80]) for c in self.calls]
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; calls so far: {seen}")
            time.sleep(0.2)

    # --- the Web API ------------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any], dict]:
        """(HTTP status, JSON body, headers) for one call."""
        with self._lock:
            call = Call(method, params, token)
            self.calls.append(call)
            status, body, headers = self._answer(call)
            call.ok, call.response = bool(body.get("ok")), body
            return status, body, headers

    def _answer(self, call: Call) -> tuple[int, dict[str, Any], dict]:
        method, params = call.method, call.params
        failures = self._failures.get(method)
        if failures:
            status, error, retry_after = failures.pop(0)
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            return status, {"ok": False, "error": error}, headers
        if self.token is not None and call.token != self.token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        channel = params.get("channel")
        if method == "chat.postMessage":
            if not channel:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            ts = f"{int(time.time())}.{next(self._counter):06d}"
            message = {"type": "message", "text": params.get("text") or "", "ts": ts, "bot_id": "BSTANDIN"}
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            self.messages[(channel, ts)] = message
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}, {}
        if method == "chat.update":
            message = self.messages.get((channel, params.get("ts")))
            if message is None:
                return 200, {"ok": False, "error": "message_not_found"}, {}
            message["text"] = params.get("text") or ""
            return 200, {"ok": True, "channel": channel, "ts": message["ts"], "text": message["text"]}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}


def _handler(api: SlackApiStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            method = self.path.split("?")[0].rsplit("/", 1)[-1]
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                params = json.loads(raw or "{}")
            else:
                params = dict(parse_qsl(raw))
            authorization = self.headers.get("Authorization") or ""
            token = authorization.removeprefix("Bearer ").strip() or params.pop("token", None)
            status, body, headers = api.answer(method, params, token)
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    return Handler


# --- Slack's side of the Events API -------------------------------------------------------------


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """Slack's request signature: ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    digest = hmac.new(secret.encode("utf-8"), f"v0:{timestamp}:".encode("utf-8") + body, hashlib.sha256)
    return "v0=" + digest.hexdigest()


def post_signed(
    url: str,
    payload: dict[str, Any],
    secret: str,
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST ``payload`` to a Slack events URL the way Slack does: JSON, signed with ``secret``
    (``signature`` replaces the right one, to test rejections)."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    timestamp = int(time.time()) if timestamp is None else timestamp
    sent = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature if signature is not None else sign(secret, timestamp, body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **(headers or {}),
    }
    return httpx.post(url, content=body, headers=sent, timeout=30)


def message_event(
    event_id: str,
    *,
    channel: str,
    user: str,
    text: str,
    ts: str,
    kind: str = "message",
    channel_type: str = "im",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """An Events API ``event_callback`` envelope holding a user's message (``kind``:
    ``message`` or ``app_mention``), as Slack sends it."""
    event: dict[str, Any] = {
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "client_msg_id": f"msg-{channel}-{ts}",
    }
    if kind == "message":
        event["channel_type"] = channel_type
    if thread_ts:
        event["thread_ts"] = thread_ts
    return {
        "token": "legacy-verification-token",
        "team_id": "T0TEST",
        "api_app_id": "A0TEST",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(float(ts)),
        "authorizations": [{"team_id": "T0TEST", "user_id": BOT_USER, "is_bot": True}],
    }
