"""A cross-encoder reranker behind an OpenAI-compatible server: vLLM's ``/rerank`` (Jina / Cohere shape).

Scores are on the local :class:`~bot.rerank.Reranker`'s scale: the client asks for the raw
logit (``use_activation: false``) and applies the sigmoid itself, as FlagReranker does with
``normalize=True``, whatever activation the model's config would make vLLM apply. So the
``decision.thresholds.rerank`` calibrated with one apply to the other for the same model.

A server that fails (unreachable, timeout, error status, malformed reply) raises
:class:`~bot.errors.RerankError`, which the retriever turns into "no rerank" for that query;
one warning is logged when a failure burst starts and one line when the server is back.
While it is down it is asked again only every ``retry_after`` seconds (the calls in between
fail at once), so a hung server costs one read timeout per window, not one per turn.

    reranker = ServedReranker(url="http://127.0.0.1:8020/v1", model="bge-reranker-v2-m3")
    reranker.score("如何重置密码", ["点击登录页的忘记密码……", "退款七个工作日到账"])   # [0.97, 0.01]
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any, Sequence

import httpx

from bot.config import RerankServerSettings
from bot.errors import RerankError

__all__ = ["ServedReranker"]

log = logging.getLogger(__name__)


class ServedReranker:
    """Scores (query, passage) pairs on a reranker server; same interface as :class:`bot.rerank.Reranker`."""

    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        retry_after: float = 10.0,
    ):
        self.url, self.model = url.rstrip("/"), model
        self.name = f"served-reranker/{model}"
        self.retry_after = retry_after
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout), headers=headers, trust_env=False
        )
        self._lock = threading.Lock()
        self._failing: str | None = None  # the reason of the current failure burst
        self._failures = 0
        self._retry_at = 0.0

    @classmethod
    def from_settings(cls, settings: RerankServerSettings) -> "ServedReranker":
        """The server ``endpoints.yml``'s ``rerank`` section names (its ``url`` must be set)."""
        return cls(
            url=settings.url or "",
            model=settings.model,
            api_key=settings.api_key,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retry_after=settings.retry_after,
        )

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query``, in 0..1, in the order given.

        Raises :class:`RerankError` (with a short reason) when the server gives no usable scores.
        """
        if not passages:
            return []
        with self._lock:
            if self._failing is not None and time.monotonic() < self._retry_at:
                self._failures += 1
                raise RerankError(f"{self._failing} (not retried for {self.retry_after:g} s)")
        try:
            scores = self._request(query, passages)
        except RerankError as exc:
            self._failed(str(exc))
            raise
        self._recovered()
        return scores

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _request(self, query: str, passages: Sequence[str]) -> list[float]:
        body = {
            "model": self.model,
            "query": query,
            "documents": list(passages),
            "use_activation": False,  # the raw logit: the sigmoid is applied here (module docstring)
            "truncate_prompt_tokens": -1,  # long passages are cut to the model's length, not refused
        }
        try:
            response = self._http.post(f"{self.url}/rerank", json=body)
        except httpx.TimeoutException as exc:
            raise RerankError(f"reranker at {self.url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise RerankError(f"reranker at {self.url} is unreachable ({type(exc).__name__})") from exc
        if response.status_code == 404 and "model" in response.text.lower():
            raise RerankError(f"reranker at {self.url} does not serve the model {self.model!r} (HTTP 404)")
        if response.status_code != 200:
            raise RerankError(f"reranker at {self.url} answered HTTP {response.status_code}")
        try:
            return _scores(response.json(), len(passages))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise RerankError(f"reranker at {self.url} sent a malformed reply ({_short(exc)})") from exc

    def _failed(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            self._retry_at = time.monotonic() + self.retry_after
            if self._failing is None:
                log.warning(
                    "%s; retrieval goes on without rerank, the reranker is asked again every %g s",
                    reason,
                    self.retry_after,
                )
            self._failing = reason

    def _recovered(self) -> None:
        with self._lock:
            if self._failing is not None:
                log.warning("reranker at %s answers again after %d failed queries", self.url, self._failures)
            self._failing, self._failures = None, 0


def _scores(data: Any, count: int) -> list[float]:
    """The sigmoid of each document's logit, in the order sent, from a ``/rerank`` reply."""
    results = data["results"]
    if not isinstance(results, list) or len(results) != count:
        raise ValueError(f"{count} scores expected")
    logits: list[float | None] = [None] * count
    for result in results:
        index, logit = result["index"], result["relevance_score"]
        if not isinstance(index, int) or not 0 <= index < count or logits[index] is not None:
            raise ValueError("bad document index")
        if isinstance(logit, bool) or not isinstance(logit, (int, float)) or not math.isfinite(logit):
            raise ValueError("a score is not a finite number")
        logits[index] = float(logit)
    return [_sigmoid(logit) for logit in logits]  # type: ignore[arg-type]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _short(exc: Exception) -> str:
    """A parse error's name and message, cut: never the reply's body."""
    if isinstance(exc, json.JSONDecodeError):
        return "not JSON"
    return f"{type(exc).__name__}: {str(exc)[:80]}"
