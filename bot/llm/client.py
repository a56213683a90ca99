"""The OpenAI-compatible chat client (vLLM), with the engine's own errors.

Built on the official ``openai`` library: connect and read timeouts, bounded retries with
exponential backoff on connection errors, 408/429 and 5xx (the library's retry policy).
Its exceptions are translated here into :mod:`bot.errors` classes named for what went wrong.

    client = LLMClient(base_url="http://127.0.0.1:8010/v1", model="qwen2.5-coder-0.5b")
    reply = client.complete([{"role": "user", "content": "Hi"}], max_tokens=20)
    async for delta in client.stream(messages, max_tokens=200, stats=stats): ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping, Sequence

import httpx
import openai

from bot.config import LLMSettings
from bot.errors import (
    LLMContextTooLongError,
    LLMError,
    LLMModelNotFoundError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnreachableError,
)

__all__ = ["LLMClient", "Completion", "StreamStats", "Message"]

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass
class StreamStats:
    """Filled in while a stream runs: the LLM's own time to first token, usage, finish reason."""

    started: float = 0.0  # time.perf_counter() when the request was sent
    first_token: float | None = None  # seconds from sending to the first text delta
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    seconds: float


class LLMClient:
    """Chat completions against one model on one OpenAI-compatible server."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
        max_retries: int = 2,
        extra_body: Mapping[str, Any] | None = None,
    ):
        self.base_url, self.model = base_url.rstrip("/"), model
        #: Server-specific request fields sent with every call, e.g. vLLM's repetition_penalty.
        self.extra_body = dict(extra_body) if extra_body else None
        options = dict(
            base_url=self.base_url,
            api_key=api_key or "EMPTY",  # vLLM without --api-key accepts any key
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            max_retries=max_retries,
        )
        self._sync = openai.OpenAI(**options)
        self._async = openai.AsyncOpenAI(**options)

    @classmethod
    def from_settings(
        cls, settings: LLMSettings, base_url: str | None = None, extra_body: Mapping[str, Any] | None = None
    ) -> "LLMClient":
        """A client for ``settings`` (``base_url`` overrides ``settings.url``, e.g. the local server)."""
        return cls(
            extra_body=extra_body,
            base_url=base_url or settings.url or "",
            model=settings.model,
            api_key=settings.api_key,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_retries=settings.max_retries,
        )

    def complete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Completion:
        """The whole answer to ``messages`` (blocking)."""
        started = time.perf_counter()
        try:
            response = self._sync.chat.completions.create(**self._request(messages, max_tokens, temperature))
        except openai.APIError as exc:
            raise self._translate(exc) from exc
        return self._completion(response, started)

    async def acomplete(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Completion:
        """The whole answer to ``messages``, without blocking the event loop."""
        started = time.perf_counter()
        try:
            response = await self._async.chat.completions.create(**self._request(messages, max_tokens, temperature))
        except openai.APIError as exc:
            raise self._translate(exc) from exc
        return self._completion(response, started)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stats: StreamStats | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas as the model produces them; ``stats`` is filled in on the way."""
        stats = stats if stats is not None else StreamStats()
        stats.started = time.perf_counter()
        try:
            response = await self._async.chat.completions.create(
                **self._request(messages, max_tokens, temperature),
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in response:
                if chunk.usage is not None:
                    stats.prompt_tokens = chunk.usage.prompt_tokens
                    stats.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.finish_reason:
                        stats.finish_reason = choice.finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text:
                        if stats.first_token is None:
                            stats.first_token = time.perf_counter() - stats.started
                        yield text
        except openai.APIError as exc:
            raise self._translate(exc) from exc
        except httpx.HTTPError as exc:  # the connection broke while the stream was being read
            raise self._translate(exc) from exc

    def _request(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> dict[str, Any]:
        """The fields every chat completion request of this client carries."""
        return dict(
            model=self.model,
            messages=list(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            extra_body=self.extra_body,
        )

    async def aclose(self) -> None:
        """Close both HTTP connection pools."""
        self._sync.close()
        await self._async.close()

    def _completion(self, response, started: float) -> Completion:
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            model=response.model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=choice.finish_reason,
            seconds=time.perf_counter() - started,
        )

    def _translate(self, exc: Exception) -> LLMError:
        """Our error for an ``openai`` or ``httpx`` exception, with what to do about it."""
        where = f"the LLM at {self.base_url}"
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            return LLMTimeoutError(f"{where} did not answer in time ({exc.__class__.__name__})")
        if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            return LLMUnreachableError(
                f"cannot reach {where}: start it (`bot serve-llm`) or set llm.url in endpoints.yml"
            )
        if isinstance(exc, openai.APIStatusError):
            message = _error_message(exc)
            lowered = message.lower()
            if exc.status_code == 404 and "model" in lowered:
                return LLMModelNotFoundError(
                    f"{where} does not serve the model {self.model!r} ({message}); "
                    "set llm.model in endpoints.yml to the server's --served-model-name"
                )
            if exc.status_code == 400 and ("context length" in lowered or "maximum context" in lowered
                                           or "too long" in lowered or "max_tokens" in lowered):
                return LLMContextTooLongError(
                    f"the prompt does not fit the model's context ({message}); lower "
                    "generation.max_context_tokens or max_answer_tokens in bot.yml"
                )
            if exc.status_code in (401, 403):
                return LLMResponseError(f"{where} refused the API key ({message}); check llm.api_key")
            return LLMResponseError(f"{where} answered {exc.status_code}: {message}")
        return LLMResponseError(f"{where} failed: {exc}")


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error", {}).get("message") or body)
    return str(exc.message)
