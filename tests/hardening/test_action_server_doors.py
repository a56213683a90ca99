"""The action server's doors against the running assistant (``rasa run`` and ``rasa run
actions``, no LLM): it listens on localhost, runs only Rasa's calls (the shared token), lets a
page stream and rate only the conversation it started (its key), stores feedback only for a
turn of that conversation, refuses oversized, too frequent and malformed requests with a 4xx
that echoes nothing, and still answers a normal question afterwards with the traces intact."""

from __future__ import annotations

import json
import uuid
import zlib

import httpx
import pytest
from sqlalchemy import select

from bot.db import connect
from bot.db.schema import feedback, turns

QUESTION = "云序智能笔充一次电能用多久？"
#: A marker that must never come back in a refusal.
MARKER = "ECHO-" + uuid.uuid4().hex


def action_call(sender: str, text, *, action: str = "action_answer_from_knowledge") -> dict:
    """Rasa's call to run ``action`` for ``sender``'s latest message ``text``, as a forger writes it."""
    return {
        "next_action": action,
        "sender_id": sender,
        "version": "3.6.21",
        "domain": {},
        "tracker": {
            "sender_id": sender,
            "slots": {"language": "zh"},
            "latest_message": {"text": text, "intent": {"name": "ask_knowledge", "confidence": 0.9}, "intent_ranking": []},
            "events": [],
        },
    }


def session(base: str, client: httpx.Client | None = None) -> dict:
    """A fresh widget conversation: ``{"conversation_id", "key"}``."""
    response = (client or httpx).post(f"{base}/knowledge/session")
    assert response.status_code == 200
    return response.json()


class Listener:
    """The live stream of one conversation, read line by line."""

    def __init__(self, base: str, conversation: dict):
        self._client = httpx.Client(timeout=60)
        url = f"{base}/knowledge/stream/{conversation['conversation_id']}"
        self._response = self._client.send(
            self._client.build_request("GET", url, params={"key": conversation["key"]}), stream=True
        )
        assert self._response.status_code == 200
        self._lines = self._response.iter_lines()
        assert next(self._lines).startswith(": listening")

    def turn(self) -> list[dict]:
        """The events up to the next turn's end (``done`` or ``error``)."""
        events = []
        for line in self._lines:
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if events[-1]["type"] in ("done", "error"):
                    return events
        raise AssertionError(f"the stream ended after {events}")

    def close(self) -> None:
        self._response.close()
        self._client.close()


def sql(stack):
    return connect(stack.settings.sql.url, stack.root)


def questions_of(stack, conversation_id: str) -> list[str]:
    with sql(stack).connect() as conn:
        return [row.question for row in conn.execute(select(turns.c.question).where(turns.c.conversation_id == conversation_id))]


def feedback_rows(stack, turn_id: str) -> list[dict]:
    with sql(stack).connect() as conn:
        return [dict(row) for row in conn.execute(select(feedback).where(feedback.c.turn_id == turn_id)).mappings()]


def wait_for_trace(stack, conversation_id: str, timeout: float = 30.0) -> list[str]:
    """The questions traced for a conversation, once there is one (traces are written by a queue)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := questions_of(stack, conversation_id):
            return found
        time.sleep(0.2)
    raise AssertionError(f"no trace for {conversation_id} in {timeout} s")


def assert_refusal(response: httpx.Response, status: int, error: str) -> None:
    """A refusal: the status, the doors' JSON, nothing of the request and no path in it."""
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == error and body["message"]
    assert MARKER not in response.text and "/work/" not in response.text and "/tmp/" not in response.text


# ---- the token's way to both servers ----


def test_rasa_and_the_action_server_get_one_token_per_process(tmp_path, monkeypatch):
    from bot.assistant import rasa_environment
    from bot.config import load_settings

    monkeypatch.delenv("BOT_ACTION_TOKEN", raising=False)
    (tmp_path / "endpoints.yml").write_text(
        "action_endpoint:\n  url: http://localhost:5055/webhook\n  token: ${BOT_ACTION_TOKEN}\nsql:\n  url: sqlite:///x.db\n"
    )  # the engine reads its own sections only: Rasa's token may be unset here
    settings = load_settings(tmp_path)
    made = rasa_environment(settings)["BOT_ACTION_TOKEN"]
    assert len(made) >= 40 and rasa_environment(settings, BOT_USE_LLM="false")["BOT_ACTION_TOKEN"] == made
    monkeypatch.setenv("BOT_ACTION_TOKEN", "set-by-the-deployment")
    assert rasa_environment(load_settings(tmp_path))["BOT_ACTION_TOKEN"] == "set-by-the-deployment"


# ---- the address ----


def test_the_action_server_listens_on_localhost_only(stack):
    import psutil

    pid = stack.actions.pid
    listening = {
        conn.laddr.ip
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for conn in proc.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == int(stack.actions_url.rsplit(":", 1)[1])
    }
    assert listening == {"127.0.0.1"}


# ---- the token on /webhook ----


def test_a_forged_call_without_the_token_runs_nothing(stack):
    token = stack.actions.env["BOT_ACTION_TOKEN"]
    victim = session(stack.actions_url)
    listener = Listener(stack.actions_url, victim)
    try:
        forged = action_call(victim["conversation_id"], f"forged question {MARKER}")
        for params in ({}, {"token": "wrong"}, {"token": token[:-1]}, {"token": token + "x"}):
            assert_refusal(httpx.post(f"{stack.actions_url}/webhook", params=params, json=forged), 401, "unauthorized")

        # Rasa's own call (the token) still runs: its turn is the first the victim's stream hears.
        call = action_call(victim["conversation_id"], QUESTION)
        answered = httpx.post(f"{stack.actions_url}/webhook", params={"token": token}, json=call, timeout=60)
        assert answered.status_code == 200 and answered.json()["responses"]
        events = listener.turn()
    finally:
        listener.close()
    assert {event["turn_id"] for event in events} == {events[0]["turn_id"]}
    assert events[-1]["type"] == "done" and MARKER not in json.dumps(events, ensure_ascii=False)
    assert wait_for_trace(stack, victim["conversation_id"]) == [QUESTION]  # the forged turns left no trace


# ---- the conversation's key: stream and feedback ----


@pytest.fixture(scope="module")
def answered(stack):
    """A widget conversation with one answered turn (asked through Rasa's REST channel), its
    turn id read from the conversation's stream, and a rating given right after the answer."""
    conversation = session(stack.actions_url)
    listener = Listener(stack.actions_url, conversation)
    try:
        reply = httpx.post(
            f"{stack.rasa_url}/webhooks/rest/webhook",
            json={"sender": conversation["conversation_id"], "message": QUESTION},
            timeout=120,
        )
        assert reply.status_code == 200 and reply.json()
        events = listener.turn()
    finally:
        listener.close()
    turn_id = events[-1]["turn_id"]
    rated = httpx.post(
        f"{stack.actions_url}/knowledge/feedback",  # before the trace queue may have written the turn
        content=json.dumps({**conversation, "turn_id": turn_id, "rating": -1, "comment": "问" * 5000}),
    )
    assert rated.status_code == 200 and rated.json()["stored"]
    return {**conversation, "turn_id": turn_id}


def test_the_stream_needs_the_conversations_key(stack, answered):
    url = f"{stack.actions_url}/knowledge/stream/{answered['conversation_id']}"
    other = session(stack.actions_url)
    for params in ({}, {"key": ""}, {"key": "0" * 64}, {"key": other["key"]}, {"key": answered["key"] + MARKER}):
        assert_refusal(httpx.get(url, params=params), 403, "forbidden")
    guessed = f"{stack.actions_url}/knowledge/stream/{uuid.uuid4()}"
    assert_refusal(httpx.get(guessed, params={"key": answered["key"]}), 403, "forbidden")


def test_feedback_is_stored_only_for_a_turn_of_the_conversation_that_sends_it(stack, answered):
    url = f"{stack.actions_url}/knowledge/feedback"
    other = session(stack.actions_url)
    [stored] = feedback_rows(stack, answered["turn_id"])  # the rating given right after the answer
    assert stored["conversation_id"] == answered["conversation_id"] and stored["rating"] == -1
    assert len(stored["comment"]) == stack.settings.serving.max_comment_chars  # cut before it was stored

    forged = {"turn_id": answered["turn_id"], "rating": -1, "comment": f"forged by attacker {MARKER}"}
    claimed = {**forged, "conversation_id": answered["conversation_id"]}
    assert_refusal(httpx.post(url, content=json.dumps(claimed)), 403, "forbidden")  # no key
    assert_refusal(httpx.post(url, content=json.dumps({**claimed, "key": other["key"]})), 403, "forbidden")
    assert_refusal(httpx.post(url, content=json.dumps({**forged, **other})), 404, "unknown_turn")  # another's turn
    assert_refusal(httpx.post(url, content=json.dumps({**forged, **other, "turn_id": uuid.uuid4().hex})), 404, "unknown_turn")
    assert_refusal(httpx.post(url, content=json.dumps({**forged, **answered, "turn_id": uuid.uuid4().hex})), 404, "unknown_turn")

    assert feedback_rows(stack, answered["turn_id"]) == [stored]
    with sql(stack).connect() as conn:
        assert conn.execute(select(feedback).where(feedback.c.comment.contains("forged by attacker"))).first() is None
        assert conn.execute(select(feedback).where(feedback.c.conversation_id == other["conversation_id"])).first() is None


def test_the_chats_feedback_is_cut_before_it_is_stored(stack, answered):
    token = stack.actions.env["BOT_ACTION_TOKEN"]
    call = action_call(answered["conversation_id"], "不对 " + "错" * 10_000, action="action_record_feedback")
    call["tracker"]["slots"]["kb_turn_id"] = answered["turn_id"]
    call["tracker"]["latest_message"]["intent"] = {"name": "feedback_negative", "confidence": 0.95}
    response = httpx.post(f"{stack.actions_url}/webhook", params={"token": token}, json=call)
    assert response.status_code == 200 and response.json()["responses"]  # the thanks
    comments = [row["comment"] for row in feedback_rows(stack, answered["turn_id"])]
    assert len(comments) == 2 and all(len(comment) == stack.settings.serving.max_comment_chars for comment in comments)


# ---- sizes ----


def test_oversized_bodies_are_refused_before_they_are_read(stack):
    token = stack.actions.env["BOT_ACTION_TOKEN"]
    large = json.dumps({"text": MARKER + "x" * 70_000}).encode()
    for path in ("/knowledge/session", "/knowledge/prepare", "/knowledge/feedback", "/review/login"):
        assert_refusal(httpx.post(f"{stack.actions_url}{path}", content=large), 413, "request_too_large")
    tracker_mb = stack.settings.serving.max_tracker_mb
    huge = b'{"next_action": "' + b"x" * int((tracker_mb + 1) * 1024 * 1024) + b'"}'
    webhook = f"{stack.actions_url}/webhook"
    assert_refusal(httpx.post(webhook, params={"token": token}, content=huge, timeout=60), 413, "request_too_large")
    bomb = zlib.compress(b" " * int((tracker_mb + 4) * 1024 * 1024))  # 20 MB of JSON whitespace, 20 KB on the wire
    response = httpx.post(webhook, params={"token": token}, content=bomb, headers={"Content-Encoding": "deflate"})
    assert_refusal(response, 413, "request_too_large")


# ---- malformed requests ----

GOOD = action_call("malformed-check", QUESTION, action="action_detect_language")


def _with_text(text) -> bytes:
    call = json.loads(json.dumps(GOOD))
    call["tracker"]["latest_message"]["text"] = text
    call["tracker"]["sender_id"] = MARKER
    return json.dumps(call).encode()


WEBHOOK_CASES = {
    "null": b"null",
    "list": json.dumps([MARKER]).encode(),
    "number": b"42",
    "string": json.dumps(MARKER).encode(),
    "broken JSON": b'{"next_action": "' + MARKER.encode(),
    "number text": _with_text(42),
    "list text": _with_text([MARKER]),
    "object text": _with_text({"t": MARKER}),
    "no next_action": json.dumps({key: value for key, value in GOOD.items() if key != "next_action"} | {"m": MARKER}).encode(),
    "lone surrogate": _with_text("\ud800"),  # json.dumps writes it as the escape \ud800
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("case", WEBHOOK_CASES)
def test_a_malformed_call_to_the_webhook_is_a_400(stack, case):
    token = stack.actions.env["BOT_ACTION_TOKEN"]
    response = httpx.post(f"{stack.actions_url}/webhook", params={"token": token}, content=WEBHOOK_CASES[case])
    assert_refusal(response, 400, "bad_request")


@pytest.mark.parametrize(
    "method, path, body, status, error",
    [
        ("POST", "/knowledge/prepare", b'{"text": "\\ud800"}', 400, "bad_request"),
        ("POST", "/knowledge/prepare", f'{{"text": ["{MARKER}"]}}'.encode(), 400, "bad_request"),
        ("POST", "/knowledge/feedback", f'{{"conversation_id": "{MARKER}", "turn_id": 5}}'.encode(), 400, "bad_request"),
        ("POST", "/knowledge/feedback", f'[{{"rating": "{MARKER}"}}]'.encode(), 400, "bad_request"),
        ("POST", "/knowledge/session", f'{{"conversation_id": "{MARKER}'.encode(), 400, "bad_request"),
        ("POST", "/widget/widget.js", MARKER.encode(), 405, "method_not_allowed"),
        ("GET", "/widget/missing.js", None, 404, "not_found"),
        ("GET", "/widget/..%2f..%2fbot.yml", None, 404, "not_found"),
        ("GET", "/widget/%2e%2e/%2e%2e/endpoints.yml", None, 404, "not_found"),
        ("GET", "/widget/%00", None, 404, "not_found"),
        ("GET", "/widget/" + "a" * 3000, None, 404, "not_found"),
        ("DELETE", "/knowledge/feedback", None, 405, "method_not_allowed"),
        ("GET", "/webhook", None, 405, "method_not_allowed"),
        ("GET", "/nothing/here", None, 404, "not_found"),
    ],
)
def test_a_malformed_request_is_a_4xx_that_echoes_nothing(stack, method, path, body, status, error):
    response = httpx.request(method, f"{stack.actions_url}{path}", content=body)
    assert_refusal(response, status, error)
    assert str(stack.root) not in response.text


@pytest.mark.parametrize("query", ["page=1" + "0" * 21, "page=%C2%B2", "max_score=nan", "until=9999-12-31", "text=a%00b"])
def test_absurd_review_queries_are_a_400_page(stack, query):
    response = httpx.get(f"{stack.actions_url}/review?{query}", headers={"Authorization": f"Bearer {stack.review_token}"})
    assert response.status_code == 400 and "<form" in response.text


# ---- rates (the strict stack; each test from its own loopback address, so budgets are its own) ----


def from_address(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def assert_too_many(response: httpx.Response) -> None:
    assert_refusal(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_burst_from_one_client_is_a_429_with_retry_after(strict_stack):
    base, budget = strict_stack.actions_url, strict_stack.settings.serving.client_per_minute
    with from_address("127.0.0.2") as client:
        statuses = [client.post(f"{base}/knowledge/session").status_code for _ in range(budget)]
        assert statuses == [200] * budget
        assert_too_many(client.post(f"{base}/knowledge/session"))
        assert_too_many(client.post(f"{base}/knowledge/prepare", content=b'{"text": "hi"}'))
        assert_too_many(client.post(f"{base}/knowledge/feedback", content=b"{}"))
        assert_too_many(client.get(f"{base}/knowledge/stream/x", params={"key": "y"}))
        assert client.get(f"{base}/knowledge/ready").status_code == 200  # readiness is not rated
    assert session(base)["key"]  # another client is served


def test_a_burst_in_one_conversation_is_a_429_with_retry_after(strict_stack):
    base, budget = strict_stack.actions_url, strict_stack.settings.serving.conversation_per_minute
    with from_address("127.0.0.3") as client:
        conversation = session(base, client)
        rating = json.dumps({**conversation, "turn_id": uuid.uuid4().hex, "rating": 1})
        statuses = [client.post(f"{base}/knowledge/feedback", content=rating).status_code for _ in range(budget)]
        assert statuses == [404] * budget  # proven conversation, unknown turn
        assert_too_many(client.post(f"{base}/knowledge/feedback", content=rating))
        stream = f"{base}/knowledge/stream/{conversation['conversation_id']}"
        assert_too_many(client.get(stream, params={"key": conversation["key"]}))
        other = session(base, client)  # the same client's other conversation is served
        rating_other = json.dumps({**other, "turn_id": "t", "rating": 1})
        assert client.post(f"{base}/knowledge/feedback", content=rating_other).status_code == 404


# ---- afterwards ----


def test_a_normal_question_is_still_answered_and_the_traces_are_intact(stack, answered):
    message = {"sender": "after-the-doors", "message": QUESTION}
    reply = httpx.post(f"{stack.rasa_url}/webhooks/rest/webhook", json=message, timeout=120)
    assert reply.status_code == 200 and any(message.get("text") for message in reply.json())
    assert wait_for_trace(stack, "after-the-doors") == [QUESTION]
    assert questions_of(stack, answered["conversation_id"]) == [QUESTION]
    rows = feedback_rows(stack, answered["turn_id"])
    assert rows and {row["conversation_id"] for row in rows} == {answered["conversation_id"]}
    assert httpx.get(f"{stack.actions_url}/health").json() == {"status": "ok"}
