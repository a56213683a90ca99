"""Rasa's doors against the running assistant (``rasa run``, no LLM): the REST channel
(``channels/rest.py``) and the socket.io channel (``channels/socketio.py``) refuse oversized,
malformed and too frequent messages with the one refusal body (413 / 400 / 429, or a
``bot_uttered`` on socket.io) in the sender's language, never echo the request, never answer
500, and answer a normal question right after each abuse.

Tests that exhaust a rate budget run on ``strict_stack``, each from a loopback address of its own
(127.0.14.x): a client's budget is per address, so they do not starve one another."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid

import httpx
import pytest
import requests
import socketio
from requests.adapters import HTTPAdapter

from bot.lang import detect_language

QUESTION = "云序智能笔充一次电能用多久？"
GREETING = "你好"
#: A string the refusals must not echo back.
MARKER = "ECHOMARKERQZX"


def webhook(stack) -> str:
    return f"{stack.rasa_url}/webhooks/rest/webhook"


def sender() -> str:
    return f"doors-{uuid.uuid4().hex[:12]}"


def assert_answered(stack, client: httpx.Client | None = None, conversation: str | None = None) -> None:
    """A knowledge question gets the bot's answer (without an LLM: its sources)."""
    reply = (client or httpx).post(
        webhook(stack), json={"sender": conversation or sender(), "message": QUESTION}, timeout=120
    )
    assert reply.status_code == 200, reply.text
    assert any(is_answer(message.get("custom")) for message in reply.json()), reply.json()


def is_answer(message: object) -> bool:
    """The structured knowledge answer, with at least one source."""
    return isinstance(message, dict) and message.get("type") == "knowledge_answer" and bool(message.get("sources"))


def assert_refused(response: httpx.Response, status: int, error: str, language: str) -> dict:
    """The one refusal body: ``{"error", "message"}``, the sentence in ``language``, no echo."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == error, body
    assert detect_language(body["message"]) == language, body["message"]
    assert MARKER not in response.text and "/" not in body["message"], body
    return body


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def rasa_pid(stack) -> int:
    """The ``rasa run`` process: the process group leader started by the fixture, which is the
    Python interpreter itself (the ``rasa`` script's shebang), not a shell around it."""
    pid = stack.rasa.pid
    assert "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe")), os.readlink(f"/proc/{pid}/exe")
    assert b"rasa" in open(f"/proc/{pid}/cmdline", "rb").read()
    return pid


def from_address(address: str) -> httpx.Client:
    """A client whose requests come from ``address`` (a loopback address: its own budget)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=120)


# --- REST: malformed requests --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"[]",
        b"42",
        b'"text ' + MARKER.encode() + b'"',
        b"{}",
        b'{"sender": "' + MARKER.encode() + b'", "message": ',  # broken JSON
        b"\xff\xfe" + MARKER.encode(),  # not UTF-8
        b"[" * 30_000 + b"]" * 30_000,  # deeper than Python's recursion limit
        b"",
        json.dumps({"sender": MARKER, "message": 5}).encode(),
        json.dumps({"sender": MARKER, "message": ["hi"]}).encode(),
        json.dumps({"sender": MARKER, "message": None}).encode(),
        json.dumps({"sender": MARKER}).encode(),
        json.dumps({"message": "hi " + MARKER}).encode(),
        json.dumps({"sender": 42, "message": "hi " + MARKER}).encode(),
        json.dumps({"sender": {"id": MARKER}, "message": "hi"}).encode(),
        json.dumps({"sender": "", "message": "hi"}).encode(),
        json.dumps({"sender": MARKER * 30, "message": "hi"}).encode(),
        json.dumps({"sender": MARKER, "message": "hi \ud800"}).encode(),  # a lone surrogate
        json.dumps({"sender": MARKER, "message": "hi", "metadata": "not an object"}).encode(),
    ],
    ids=lambda body: body[:40].decode("utf-8", "replace"),
)
def test_a_malformed_request_is_a_400_in_english_without_echo(stack, body):
    response = httpx.post(webhook(stack), content=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert_refused(response, 400, "bad_request", "en")


def test_a_malformed_request_is_refused_in_the_senders_language(stack):
    chinese_text = httpx.post(webhook(stack), json={"sender": 7, "message": "你好，我的笔坏了"}, timeout=60)
    assert_refused(chinese_text, 400, "bad_request", "zh")
    chinese_client = httpx.post(
        webhook(stack), content=b"null", headers={"Accept-Language": "zh-CN,zh;q=0.9"}, timeout=60
    )
    body = assert_refused(chinese_client, 400, "bad_request", "zh")
    assert "JSON" in body["message"]
    assert_answered(stack)


def test_the_message_is_always_the_rest_channels(stack):
    """A REST client cannot pass its message off as Slack's (whose answers the action server
    would post to the Slack channel named in the metadata): the turn's channel is ``rest``."""
    from bot.db.engine import connect
    from bot.traces.queries import TurnFilter, list_turns

    conversation = sender()
    reply = httpx.post(
        webhook(stack),
        json={"sender": conversation, "message": QUESTION, "input_channel": "slack", "metadata": {"out_channel": "C1"}},
        timeout=120,
    )
    assert reply.status_code == 200 and any(is_answer(message.get("custom")) for message in reply.json())
    sql = connect(stack.settings.sql.url, stack.settings.root)
    deadline = time.monotonic() + 30
    while not (turns := list_turns(sql, TurnFilter(conversation_id=conversation))) and time.monotonic() < deadline:
        time.sleep(0.5)  # the action server writes traces in the background
    assert [turn["channel"] for turn in turns] == ["rest"]


def test_other_methods_and_the_health_route_are_no_500(stack):
    assert httpx.get(f"{stack.rasa_url}/webhooks/rest/", timeout=30).json() == {"status": "ok"}
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, webhook(stack), content=MARKER.encode(), timeout=30)
        assert response.status_code == 405 and MARKER not in response.text
    assert_answered(stack)


# --- REST: sizes ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_in_the_clients_language(stack):
    limit_kb = stack.settings.serving.max_body_kb
    message = MARKER + "问" * int(limit_kb * 1024 / 3 + 10)  # 3 bytes each in UTF-8
    body = json.dumps({"sender": sender(), "message": message}, ensure_ascii=False)
    english = httpx.post(webhook(stack), content=body.encode(), timeout=60)
    assert_refused(english, 413, "request_too_large", "en")
    chinese = httpx.post(webhook(stack), content=body.encode(), headers={"Accept-Language": "zh-CN"}, timeout=60)
    assert f"{limit_kb:g} KB" in assert_refused(chinese, 413, "request_too_large", "zh")["message"]
    assert_answered(stack)


def test_a_chunked_body_over_the_limit_is_a_413(stack):
    """No Content-Length: the body is counted as it arrives, and refused past the limit."""
    pieces = [b'{"sender": "chunked", "message": "' + MARKER.encode()] + [b"x" * 8192] * 64 + [b'"}']
    response = httpx.post(webhook(stack), content=iter(pieces), timeout=60)
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "request_too_large", "en")
    assert_answered(stack)


def test_a_message_over_max_question_chars_is_a_413_in_its_language(stack):
    limit = stack.settings.generation.max_question_chars
    response = httpx.post(webhook(stack), json={"sender": sender(), "message": "问" * (limit + 1)}, timeout=60)
    body = assert_refused(response, 413, "question_too_long", "zh")
    assert str(limit) in body["message"] and str(limit + 1) in body["message"]
    english = httpx.post(webhook(stack), json={"sender": sender(), "message": MARKER + "a" * limit}, timeout=60)
    assert_refused(english, 413, "question_too_long", "en")
    at_limit = httpx.post(webhook(stack), json={"sender": sender(), "message": "问" * limit}, timeout=120)
    assert at_limit.status_code == 200
    assert_answered(stack)


def test_ten_megabytes_leave_rasa_small_and_answering(stack, figures):
    """The issue's case: one 10 MB message grew ``rasa run`` to 23.8 GB until it was killed."""
    pid = rasa_pid(stack)
    before = rss_mb(pid)
    message = json.dumps({"sender": sender(), "message": MARKER + "x" * 10_000_000}).encode()
    response = httpx.post(webhook(stack), content=message, timeout=60)
    assert_refused(response, 413, "request_too_large", "en")
    pieces = (message[i : i + 65536] for i in range(0, len(message), 65536))
    chunked = httpx.post(webhook(stack), content=pieces, timeout=60)
    assert_refused(chunked, 413, "request_too_large", "en")
    polling_url = f"{stack.rasa_url}/socket.io/?EIO=4&transport=polling&sid={_polling_sid(stack)}"
    polling = httpx.post(polling_url, content=message, timeout=60)
    assert polling.status_code == 413 and MARKER not in polling.text
    time.sleep(1)
    grown = rss_mb(pid) - before
    figures["rasa_10mb"] = f"three 10 MB bodies refused (413); rasa run's RSS {before:.0f} MB, grew {grown:+.1f} MB"
    assert grown < 200, f"rasa run grew by {grown:.0f} MB"
    assert_answered(stack)


@pytest.mark.parametrize("method, path", [("POST", "/webhooks/rest/webhook"), ("PUT", "/webhooks/rest/"), ("POST", "/nowhere")])
def test_a_kept_connection_is_not_reset_after_a_body_left_unread(stack, method, path):
    """Sanic closes the connection after a response to a body it does not read: the response
    says so (``Connection: close``), so a keep-alive client opens a new one for its next request
    instead of being reset on the old one (the fuzzer's one failure)."""
    big = json.dumps({"sender": sender(), "message": MARKER + "x" * 2_000_000}).encode()
    with httpx.Client(timeout=120) as client:
        refused = client.request(method, f"{stack.rasa_url}{path}", content=big)
        assert refused.status_code in (404, 405, 413) and MARKER not in refused.text
        assert refused.headers["connection"] == "close"
        assert_answered(stack, client)


# --- socket.io -----------------------------------------------------------------------------


def _polling_sid(stack) -> str:
    """An engine.io session opened by hand (long-polling handshake)."""
    response = httpx.get(f"{stack.rasa_url}/socket.io/?EIO=4&transport=polling", timeout=30)
    assert response.status_code == 200
    return json.loads(response.text[1:])["sid"]


@pytest.mark.parametrize(
    "method, query, body",
    [
        ("GET", "EIO=999&transport=xx", None),
        ("GET", "EIO=4&transport=polling&sid=nope", None),
        ("GET", "EIO=4&transport=websocket", None),
        ("GET", "%zz=%zz&EIO=%ff", None),
        ("GET", "", None),
        ("POST", "EIO=4&transport=polling", MARKER.encode()),
        ("POST", "EIO=4&transport=polling&sid=nope", b"4" + MARKER.encode()),
        ("POST", "EIO=4&transport=polling&sid={sid}", b"\xff\xfe" + MARKER.encode()),
        ("POST", "EIO=4&transport=polling&sid={sid}", b'42["user_uttered", ' + MARKER.encode()),
        ("POST", "EIO=4&transport=polling&sid={sid}", b"9" * 5000),
        ("PUT", "EIO=4&transport=polling", MARKER.encode()),
        ("DELETE", "EIO=4&transport=polling&sid={sid}", None),
        ("PATCH", "", MARKER.encode()),
    ],
)
def test_odd_polling_requests_are_no_500(stack, method, query, body):
    query = query.replace("{sid}", _polling_sid(stack)) if "{sid}" in query else query
    response = httpx.request(method, f"{stack.rasa_url}/socket.io/?{query}", content=body, timeout=30)
    assert response.status_code < 500 and MARKER not in response.text, (response.status_code, response.text[:200])
    assert_answered(stack)


class _FromAddress(HTTPAdapter):
    """A requests adapter whose connections come from one local address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Chat:
    """A socket.io client over long-polling in a session of its own, as the widget is; its
    ``bot_uttered`` events in a queue."""

    def __init__(self, stack, *, address: str | None = None, language: str | None = None):
        http = requests.Session()
        if address:
            http.mount("http://", _FromAddress(address))
        if language:
            http.headers["Accept-Language"] = language
        self.events: queue.Queue = queue.Queue()
        confirmed: queue.Queue = queue.Queue()
        self.sio = socketio.Client(http_session=http, reconnection=False)
        self.sio.on("bot_uttered", self.events.put)
        self.sio.on("session_confirm", confirmed.put)
        self.sio.connect(stack.rasa_url, transports=["polling"], wait_timeout=30)
        self.session_id = uuid.uuid4().hex
        self.sio.emit("session_request", {"session_id": self.session_id})
        assert confirmed.get(timeout=30) == self.session_id

    def send(self, payload) -> None:
        self.sio.emit("user_uttered", payload)

    def say(self, text: str) -> None:
        self.send({"message": text, "session_id": self.session_id})

    def next_event(self, timeout: float = 120) -> dict:
        return self.events.get(timeout=timeout)

    def assert_refused(self, error: str, language: str) -> dict:
        event = self.next_event(timeout=30)
        assert event.get("error") == error and event.get("response") is None, event
        assert detect_language(event["text"]) == language and MARKER not in event["text"], event
        return event

    def assert_answered(self) -> None:
        self.say(QUESTION)
        event = self.next_event()
        assert is_answer(event), event

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def chat(stack):
    chat = Chat(stack)
    yield chat
    chat.close()


def test_a_socketio_question_is_answered(chat):
    chat.assert_answered()


@pytest.mark.parametrize(
    "payload, language",
    [
        ("a plain string " + MARKER, "en"),
        (["a", "list"], "en"),
        (42, "en"),
        (None, "en"),
        ({"message": 5, "session_id": "{session}"}, "en"),
        ({"message": {"text": MARKER}, "session_id": "{session}"}, "en"),
        ({"session_id": "{session}"}, "en"),
        ({"message": "你好，请问笔怎么充电"}, "zh"),  # no session id
        ({"message": "hi " + MARKER, "session_id": 12}, "en"),
        ({"message": "hi", "session_id": "{session}", "metadata": "{not json " + MARKER}, "en"),
        ({"message": "hi", "session_id": "{session}", "metadata": [MARKER]}, "en"),
    ],
)
def test_a_malformed_socketio_message_gets_a_plain_reply(chat, payload, language):
    if isinstance(payload, dict):
        payload = {key: chat.session_id if value == "{session}" else value for key, value in payload.items()}
    chat.send(payload)
    chat.assert_refused("bad_request", language)
    chat.assert_answered()


def test_a_socketio_refusal_follows_the_clients_language(stack):
    chat = Chat(stack, language="zh-CN,zh;q=0.9")
    try:
        chat.send(42)
        chat.assert_refused("bad_request", "zh")
    finally:
        chat.close()


def test_a_socketio_message_over_max_question_chars_is_refused(stack, chat):
    limit = stack.settings.generation.max_question_chars
    chat.say("问" * (limit + 1))
    assert str(limit) in chat.assert_refused("question_too_long", "zh")["text"]
    chat.assert_answered()


def test_a_socketio_payload_over_the_body_limit_is_refused_by_the_transport(stack):
    """Larger than ``serving.max_body_kb``: engine.io (and Sanic before it) refuse the POST; the
    server goes on serving."""
    sid = _polling_sid(stack)
    message = MARKER + "x" * int(stack.settings.serving.max_body_kb * 1024)
    payload = "42" + json.dumps(["user_uttered", {"message": message}])
    url = f"{stack.rasa_url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    response = httpx.post(url, content=payload.encode(), timeout=30)
    assert response.status_code == 413 and MARKER not in response.text
    chat = Chat(stack)
    try:
        chat.assert_answered()
    finally:
        chat.close()


# --- rates (strict_stack: 10 messages a conversation, 40 requests a client, a minute) --------


def test_a_burst_from_one_conversation_is_a_429_while_another_is_answered(strict_stack):
    stack, per_conversation = strict_stack, strict_stack.settings.serving.conversation_per_minute
    with from_address("127.0.14.2") as client:
        conversation, statuses = sender(), []
        while 429 not in statuses and len(statuses) < 3 * per_conversation:
            response = client.post(webhook(stack), json={"sender": conversation, "message": GREETING})
            statuses.append(response.status_code)
        assert statuses[:per_conversation] == [200] * per_conversation and statuses[-1] == 429, statuses
        body = assert_refused(response, 429, "too_many_requests", "zh")
        seconds = int(response.headers["Retry-After"])
        assert 1 <= seconds <= 60 and str(seconds) in body["message"]
        assert_answered(stack, client)  # another conversation, at once
        time.sleep(seconds)
        assert_answered(stack, client, conversation)  # the same conversation, once its wait is over


def test_a_burst_from_one_client_is_a_429_while_another_client_is_answered(strict_stack):
    stack, per_client = strict_stack, strict_stack.settings.serving.client_per_minute
    with from_address("127.0.14.3") as client:
        statuses = []
        while 429 not in statuses and len(statuses) < 3 * per_client:
            response = client.post(webhook(stack), content=b"null", headers={"Accept-Language": "zh"})
            statuses.append(response.status_code)
        assert statuses[:per_client] == [400] * per_client and statuses[-1] == 429, statuses
        assert_refused(response, 429, "too_many_requests", "zh")
        assert int(response.headers["Retry-After"]) >= 1
        valid = client.post(webhook(stack), json={"sender": sender(), "message": QUESTION})
        assert_refused(valid, 429, "too_many_requests", "zh")  # every request of the client counts
    with from_address("127.0.14.4") as other:
        assert_answered(stack, other)


def test_a_socketio_burst_is_refused_in_its_language_while_another_session_is_answered(strict_stack):
    stack, per_conversation = strict_stack, strict_stack.settings.serving.conversation_per_minute
    burst = Chat(stack, address="127.0.14.5")
    try:
        for _ in range(per_conversation + 5):
            burst.say(GREETING)
        events = []
        deadline = time.monotonic() + 60
        while len(events) < per_conversation + 5 and time.monotonic() < deadline:
            try:
                events.append(burst.next_event(timeout=5))
            except queue.Empty:
                break
        refusals = [event for event in events if event.get("error") == "too_many_requests"]
        assert refusals, events
        assert all(detect_language(event["text"]) == "zh" for event in refusals)
    finally:
        burst.close()
    other = Chat(stack, address="127.0.14.5")
    try:
        other.assert_answered()
    finally:
        other.close()


def test_concurrent_abuse_leaves_the_server_answering(stack):
    """Oversized, malformed and normal requests at once, from several threads: no 5xx."""
    statuses: list[int] = []
    big = json.dumps({"sender": "big", "message": "x" * 300_000}).encode()
    bodies = [big, b"null", b"[" * 5000, json.dumps({"sender": 1, "message": 2}).encode()]

    def hammer(body: bytes) -> None:
        for _ in range(10):
            statuses.append(httpx.post(webhook(stack), content=body, timeout=60).status_code)

    threads = [threading.Thread(target=hammer, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [400, 413]
    assert_answered(stack)
