"""The OpenAI-compatible client against a real vLLM server, and its named errors."""

from __future__ import annotations

import asyncio
import http.server
import threading
import urllib.request

import pytest

from bot.errors import (
    LLMContextTooLongError,
    LLMModelNotFoundError,
    LLMTimeoutError,
    LLMUnreachableError,
)
from bot.llm.client import LLMClient, StreamStats
from assistant_project import free_port
from vllm_server import SERVED_NAME

ASK = [{"role": "user", "content": "Reply with the single word: yes"}]


def client(url: str, **options) -> LLMClient:
    return LLMClient(base_url=url, model=options.pop("model", SERVED_NAME), **options)


def test_complete_returns_text_and_usage(llm_server):
    reply = client(llm_server.url).complete(ASK, max_tokens=5)
    assert "yes" in reply.text.lower()
    assert reply.prompt_tokens > 5 and 1 <= reply.completion_tokens <= 5
    assert reply.model == SERVED_NAME


def test_stream_yields_deltas_and_measures_first_token(llm_server):
    stats = StreamStats()

    async def collect():
        llm = client(llm_server.url)
        prompt = [{"role": "user", "content": "Count from 1 to 10, separated by spaces."}]
        return [delta async for delta in llm.stream(prompt, max_tokens=40, stats=stats)]

    deltas = asyncio.run(collect())
    assert len(deltas) > 3  # token by token, not one block
    assert "1 2 3" in "".join(deltas)
    assert 0 < stats.first_token < 30
    assert stats.completion_tokens == pytest.approx(len(deltas), abs=3)
    assert stats.finish_reason in ("stop", "length")


def test_unknown_model_is_named(llm_server):
    with pytest.raises(LLMModelNotFoundError, match="no-such-model"):
        client(llm_server.url, model="no-such-model").complete(ASK, max_tokens=5)


def test_nothing_listening_is_unreachable():
    with pytest.raises(LLMUnreachableError, match="cannot reach"):
        client(f"http://127.0.0.1:{free_port()}/v1", max_retries=0).complete(ASK, max_tokens=5)


def test_prompt_over_the_context_is_named(llm_server):
    long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(LLMContextTooLongError, match="max_context_tokens"):
        client(llm_server.url).complete(long, max_tokens=5)


def test_slow_answer_times_out(llm_server):
    prompt = [{"role": "user", "content": "Write a long story about a lighthouse."}]
    with pytest.raises(LLMTimeoutError):
        client(llm_server.url, read_timeout=0.05, max_retries=0).complete(prompt, max_tokens=300)


class FlakyProxy(http.server.ThreadingHTTPServer):
    """FAULT INJECTOR (a stand-in, not a model server): answers 503 to the first ``failures``
    requests, then forwards every request to the real vLLM server."""

    def __init__(self, target: str, failures: int):
        self.target, self.failures, self.requests = target, failures, 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        proxy: FlakyProxy = self.server
        proxy.requests += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if proxy.requests <= proxy.failures:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "injected 503"}}')
            return
        request = urllib.request.Request(
            proxy.target + self.path.removeprefix("/v1"), data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as upstream:
            payload = upstream.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_5xx_is_retried_with_backoff(llm_server):
    proxy = FlakyProxy(llm_server.url, failures=2)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        reply = client(proxy.url, max_retries=2).complete(ASK, max_tokens=5)
        assert "yes" in reply.text.lower()
        assert proxy.requests == 3  # two injected failures, then the real answer
    finally:
        proxy.shutdown()


def test_retries_are_bounded(llm_server):
    from bot.errors import LLMResponseError

    proxy = FlakyProxy(llm_server.url, failures=10)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with pytest.raises(LLMResponseError, match="503"):
            client(proxy.url, max_retries=1).complete(ASK, max_tokens=5)
        assert proxy.requests == 2
    finally:
        proxy.shutdown()
