"""A seeded fuzzer against every route of the running assistant (``rasa run`` and the action
server): wrong types, broken JSON, random bytes, deep nesting, huge and odd Unicode, odd paths
and query strings, wrong methods. No answer may be a 5xx, a refusal never echoes the request
or a filesystem path, and both servers keep answering a normal question throughout."""

from __future__ import annotations

import json
import random
import string
from collections import Counter

import httpx

SEED = 14
REQUESTS = 1200
#: A normal question is asked every this many fuzzed requests.
CHECK_EVERY = 100

#: (server, method, path template) of every route the assistant serves.
ROUTES = [
    ("rasa", "POST", "/webhooks/rest/webhook"),
    ("rasa", "GET", "/webhooks/rest/"),
    ("rasa", "GET", "/webhooks/rest/webhook"),
    ("rasa", "GET", "/socket.io/"),
    ("rasa", "POST", "/socket.io/"),
    ("rasa", "GET", "/"),
    ("actions", "POST", "/webhook"),
    ("actions", "GET", "/webhook"),
    ("actions", "GET", "/health"),
    ("actions", "GET", "/actions"),
    ("actions", "GET", "/knowledge/ready"),
    ("actions", "POST", "/knowledge/session"),
    ("actions", "POST", "/knowledge/prepare"),
    ("actions", "POST", "/knowledge/feedback"),
    ("actions", "GET", "/knowledge/stream/{id}"),
    ("actions", "GET", "/review"),
    ("actions", "GET", "/review/turns/{id}"),
    ("actions", "POST", "/review/turns/{id}/label"),
    ("actions", "GET", "/review/export.jsonl"),
    ("actions", "GET", "/review/login"),
    ("actions", "POST", "/review/login"),
    ("actions", "POST", "/review/logout"),
    ("actions", "GET", "/widget/{file}"),
    ("actions", "POST", "/widget/{file}"),
]
#: Field names the routes read, so generated objects reach the code behind the parsing.
FIELDS = [
    "sender", "message", "text", "metadata", "input_channel", "conversation_id", "turn_id", "rating",
    "comment", "key", "next_action", "sender_id", "tracker", "domain", "version", "latest_message",
    "events", "slots", "label", "note", "token", "page", "session_id", "intent",
]  # fmt: skip
ODD_TEXTS = [
    "\ud800", "\udfff\ud800", "\x00" * 50, "\u202e" + "abc", "\u200d" * 5000, "e\u0301" * 20000, "😀" * 3000,
    "问" * 30000, "A" * 100_000, "@" * 70_000, "a@b." * 20_000, "../../../etc/passwd", "%00%ff", "${BOT_ACTION_TOKEN}",
    "{{ 7 * 7 }}", "<script>alert(1)</script>", "' OR 1=1 --", "\r\n\r\nHTTP/1.1 200 OK", "",
]  # fmt: skip
ODD_NUMBERS = [0, -1, 1, 2, 10**21, -(10**21), 1.5, float("1e308"), 2**63, True, False]
ODD_FILES = [
    "widget.js", "index.html", "nonexistent.js", "..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/bot.yml", "a" * 3000,
    "%00", "%ff%fe", "问.js", "widget.js/", ".", "..", "dir/../../x",
]  # fmt: skip
ODD_QUERIES = [
    "", "page=10" + "0" * 21, "page=-1", "page=abc", "page=1e999", "limit=99999999999", "key=" + "k" * 5000,
    "EIO=4&transport=polling", "EIO=4&transport=polling&sid=nope", "EIO=999&transport=xx", "token=wrong",
    "%zz=%zz", "a=" + "%ff" * 100, "level=%00&q=\u4e00",
]  # fmt: skip


def test_a_thousand_malformed_requests_get_no_5xx_and_the_servers_keep_answering(stack, figures):
    rng = random.Random(SEED)
    token = stack.actions.env.get("BOT_ACTION_TOKEN", "")
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    with httpx.Client(timeout=30.0) as client:
        for index in range(REQUESTS):
            server, method, template = rng.choice(ROUTES)
            method = method if rng.random() < 0.85 else rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
            base = stack.rasa_url if server == "rasa" else stack.actions_url
            path = template.replace("{id}", _odd_id(rng)).replace("{file}", rng.choice(ODD_FILES))
            query = rng.choice(ODD_QUERIES)
            if server == "actions" and path == "/webhook" and rng.random() < 0.7:
                query = f"token={token}"  # past the token check: the body's validation is what is fuzzed
            body, content_type, marker = _body(rng)
            headers = {"Content-Type": content_type} if content_type else {}
            if path.startswith("/review") and rng.random() < 0.7:
                headers["Authorization"] = f"Bearer {stack.review_token}"
            url = f"{base}{path}" + (f"?{query}" if query else "")
            try:
                request = client.build_request(method, url, content=body if method != "GET" else None, headers=headers)
                response = client.send(request, stream=True)
                try:
                    text = _read_some(response)
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                failures.append(f"#{index} {method} {path}: {type(exc).__name__} {exc}")
                continue
            statuses[f"{response.status_code // 100}xx"] += 1
            if response.status_code >= 500:
                failures.append(f"#{index} {method} {url[:120]} -> {response.status_code}: {text[:200]!r}")
            elif 400 <= response.status_code < 500:
                if marker and marker in text:
                    failures.append(f"#{index} {method} {path}: the refusal echoes the request body")
                if str(stack.root) in text or "/site-packages/" in text:
                    failures.append(f"#{index} {method} {path}: the refusal shows a filesystem path")
            if (index + 1) % CHECK_EVERY == 0:
                failures.extend(_normal_question_answered(client, stack, index))
    figures["fuzz"] = f"{REQUESTS} malformed requests (seed {SEED}): " + ", ".join(
        f"{kind} {count}" for kind, count in sorted(statuses.items())
    )
    assert not failures, "\n".join(failures[:30])
    assert sum(statuses.values()) == REQUESTS


def _normal_question_answered(client: httpx.Client, stack, index: int) -> list[str]:
    reply = client.post(
        f"{stack.rasa_url}/webhooks/rest/webhook",
        json={"sender": f"fuzz-check-{index}", "message": "云序智能笔充一次电能用多久？"},
    )
    texts = [message.get("text", "") for message in reply.json()] if reply.status_code == 200 else []
    problems = [] if any(texts) else [f"after #{index}: the normal question got {reply.status_code} {texts}"]
    health = client.get(f"{stack.actions_url}/health")
    if health.status_code != 200:
        problems.append(f"after #{index}: the action server's /health answered {health.status_code}")
    return problems


def _body(rng: random.Random) -> tuple[bytes | None, str | None, str | None]:
    """A malformed body, its content type, and a marker that must not be echoed in a refusal."""
    marker = "ECHO" + "".join(rng.choices(string.ascii_uppercase, k=12))
    kind = rng.randrange(9)
    if kind == 0:
        return None, rng.choice([None, "application/json"]), None
    if kind == 1:  # broken JSON
        text = json.dumps({rng.choice(FIELDS): marker, rng.choice(FIELDS): _value(rng, 2)})
        return text[: rng.randrange(1, len(text))].encode() + rng.choice([b"", b"\xff", b"}}", b"\x00"]), "application/json", None
    if kind == 2:  # random bytes
        return rng.randbytes(rng.randrange(1, 4000)), rng.choice(["application/json", "text/plain", None]), None
    if kind == 3:  # deep nesting
        depth = rng.choice([1000, 100_000])
        return (b"[" * depth + b"]" * depth) if rng.random() < 0.5 else (b'{"a":' * depth + b"1" + b"}" * depth), "application/json", None
    if kind == 4:  # over any size limit
        size = rng.choice([70_000, 300_000, 2_000_000])
        text = json.dumps({"sender": "fuzz", "message": marker + "x" * size, "text": marker})
        return text.encode(), "application/json", marker
    if kind == 5:  # a JSON scalar or list instead of an object
        return json.dumps(rng.choice([None, [], [marker], 42, marker, 1.5, True])).encode(), "application/json", marker
    if kind == 6:  # form or multipart garbage
        return f"sender={marker}&message=%ff%00&rating=x".encode(), rng.choice(
            ["application/x-www-form-urlencoded", "multipart/form-data; boundary=zz"]
        ), None
    # An object with the routes' field names and values of the wrong type or odd Unicode.
    obj = {rng.choice(FIELDS): _value(rng, 3) for _ in range(rng.randrange(1, 6))}
    obj.setdefault(rng.choice(["sender", "conversation_id", "turn_id"]), marker)
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    return text.encode("utf-8", errors="surrogatepass"), rng.choice(["application/json", "text/plain"]), None


def _value(rng: random.Random, depth: int):
    kind = rng.randrange(6 if depth > 0 else 4)
    if kind == 0:
        return rng.choice(ODD_TEXTS)
    if kind == 1:
        return rng.choice(ODD_NUMBERS)
    if kind == 2:
        return None
    if kind == 3:
        return "".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(rng.randrange(1, 40))).encode(
            "utf-8", errors="surrogatepass"
        ).decode("utf-8", errors="replace")
    if kind == 4:
        return [_value(rng, depth - 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(FIELDS): _value(rng, depth - 1) for _ in range(rng.randrange(0, 4))}


def _odd_id(rng: random.Random) -> str:
    return rng.choice(["x", "0", "-1", "a" * 3000, "%00", "%ff", "问题", "..%2f..", "nope", "1e999"])


def _read_some(response: httpx.Response, limit: int = 65536) -> str:
    """At most ``limit`` bytes of the body (an event stream never ends on its own)."""
    received = b""
    content_type = response.headers.get("content-type", "")
    for chunk in response.iter_bytes():
        received += chunk
        if len(received) >= limit or "event-stream" in content_type:
            break
    return received.decode("utf-8", errors="replace")
