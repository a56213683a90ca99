"""Load tests: drive a running assistant's REST channel, or an LLM endpoint alone, and measure.

Chat load (``bot loadtest``): every simulated user holds a conversation of its own (a fresh
sender id per script) and sends a script's turns one after another, each waiting for its reply.
Closed loop (``concurrency`` users, each starting its next conversation as soon as one ends) or
open loop (``rate`` conversations started per second, whatever the replies' speed). A
messages file holds one message a line (a one-turn script), or JSONL: ``{"turns": [...]}`` for a
multi-turn script, or ``{"query": ...}`` / ``{"message": ...}`` (the evaluation format).

    scripts = read_scripts(Path("bench/demo_queries.jsonl"))
    report = asyncio.run(chat_load("http://127.0.0.1:5005", scripts, concurrency=8, duration=20))
    print(report.summary())

LLM load (``bot loadtest --llm``): streamed chat completions against an OpenAI-compatible server,
``concurrency`` requests in flight; requests/s, time to first token and tokens/s per concurrency,
the way GPU deployments of an LLM are usually sized.

Both are bounded (``MAX_SECONDS``, ``MAX_CONCURRENCY``) and refuse a non-local target unless told
otherwise: a load test is pointed at a deployment on purpose.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlparse

import httpx

from bot.errors import ConfigError
from bot.percentile import nearest_rank

__all__ = [
    "Script",
    "TurnResult",
    "LoadReport",
    "LLMCall",
    "LLMLoadReport",
    "read_scripts",
    "check_target",
    "reply_kind",
    "chat_load",
    "llm_load",
    "plot_sweep",
    "format_llm_point",
    "DEFAULT_LLM_PROMPTS",
    "MAX_SECONDS",
    "MAX_CONCURRENCY",
]

#: Longest run of one point, in seconds.
MAX_SECONDS = 600
#: Most users (or requests) in flight at once.
MAX_CONCURRENCY = 256
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
#: What ``--llm`` asks when no messages file is given: short questions, in both languages.
DEFAULT_LLM_PROMPTS = (
    "用两句话解释什么是向量数据库。",
    "Explain in two sentences what a vector database is.",
    "退款一般多久到账？请简短回答。",
    "How do I reset a forgotten password? Answer briefly.",
)


@dataclass(frozen=True)
class Script:
    """One conversation: its messages, in order."""

    turns: tuple[str, ...]


@dataclass(frozen=True)
class TurnResult:
    """One message sent and what came back."""

    started: float
    latency: float
    kind: str  # a reply kind (see :func:`reply_kind`) or "error"
    error: str = ""  # why it failed: "http 429", "timeout", "connect", ...


@dataclass
class LoadReport:
    """The turns of one load point and the figures drawn from them."""

    mode: str  # "closed" or "open"
    load: float  # users (closed) or conversations per second (open)
    elapsed: float = 0.0
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def answered(self) -> list[TurnResult]:
        return [t for t in self.turns if t.kind != "error"]

    def percentile(self, percent: int) -> float | None:
        """Latency (s) under which ``percent`` % of the answered turns fall (nearest rank)."""
        return nearest_rank([t.latency for t in self.answered], percent)

    def as_dict(self) -> dict:
        """The figures as plain data (latencies in milliseconds)."""
        answered = self.answered
        return {
            "mode": self.mode,
            "load": self.load,
            "elapsed_s": round(self.elapsed, 2),
            "turns": len(self.turns),
            "turns_per_s": round(len(answered) / self.elapsed, 2) if self.elapsed else 0.0,
            "p50_ms": _ms(self.percentile(50)),
            "p95_ms": _ms(self.percentile(95)),
            "p99_ms": _ms(self.percentile(99)),
            "errors": dict(Counter(t.error for t in self.turns if t.kind == "error")),
            "kinds": dict(Counter(t.kind for t in answered)),
        }

    def summary(self) -> str:
        """One line of figures, then the errors and reply kinds."""
        d = self.as_dict()
        unit = "users" if self.mode == "closed" else "conversations/s"
        lines = [
            f"{self.load:g} {unit}: {d['turns_per_s']:.1f} turns/s over {d['elapsed_s']:.1f} s, "
            f"latency p50 {d['p50_ms']} / p95 {d['p95_ms']} / p99 {d['p99_ms']} ms, "
            f"{len(self.answered)} answered, {sum(d['errors'].values())} errors"
        ]
        if d["errors"]:
            lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(d["errors"].items())))
        lines.append("  replies: " + ", ".join(f"{k} {v}" for k, v in sorted(d["kinds"].items())))
        return "\n".join(lines)


def read_scripts(path: Path) -> list[Script]:
    """The scripts of a messages file: text lines, or JSONL with ``turns`` / ``query`` / ``message``."""
    try:
        lines = [line.strip() for line in Path(path).read_text("utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the messages file {path}: {exc}") from exc
    scripts = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        if not line.startswith("{"):
            scripts.append(Script((line,)))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        turns = record.get("turns") or [record.get("query") or record.get("message")]
        if not all(isinstance(turn, str) and turn.strip() for turn in turns):
            raise ConfigError(f'{path}:{number}: expected "turns": [texts], "query" or "message"')
        scripts.append(Script(tuple(turns)))
    if not scripts:
        raise ConfigError(f"{path} holds no message")
    return scripts


def check_target(url: str, *, allow_remote: bool) -> None:
    """Refuse a URL that is not on this machine unless ``allow_remote``."""
    host = urlparse(url).hostname or ""
    if host not in LOCAL_HOSTS and not allow_remote:
        raise ConfigError(f"{url} is not on this machine: pass --allow-remote to load-test another host")


def reply_kind(messages: object) -> str:
    """What an assistant's REST reply is: ``knowledge:<level>``, ``guard``, ``canned`` or ``empty``."""
    if not isinstance(messages, list) or not messages:
        return "empty"
    for message in messages:
        custom = message.get("custom") if isinstance(message, dict) else None
        if isinstance(custom, dict) and custom.get("type") == "knowledge_answer":
            return f"knowledge:{custom.get('level', '?')}"
        if isinstance(custom, dict) and "guard" in str(custom.get("type", "")):
            return "guard"
    return "canned"


async def chat_load(
    url: str,
    scripts: Sequence[Script],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    duration: float = 20.0,
    max_turns: int | None = None,
    timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> LoadReport:
    """Drive ``url``'s REST channel (``/webhooks/rest/webhook``) for ``duration`` seconds or
    ``max_turns`` turns: ``concurrency`` users in a closed loop, or ``rate`` conversations/s."""
    if (concurrency is None) == (rate is None):
        raise ConfigError("give either a concurrency (closed loop) or a rate (open loop)")
    _check_bounds(duration, 1 if concurrency is None else concurrency, rate)
    webhook = url.rstrip("/") + "/webhooks/rest/webhook"
    report = LoadReport("closed" if concurrency else "open", float(concurrency or rate))
    state = _Run(time.perf_counter() + duration, max_turns, report)
    limits = httpx.Limits(max_connections=MAX_CONCURRENCY, max_keepalive_connections=MAX_CONCURRENCY)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        ticker = asyncio.create_task(_report_progress(state, progress)) if progress else None
        started = time.perf_counter()
        if concurrency:
            users = [_user(client, webhook, scripts, index, state) for index in range(concurrency)]
            await asyncio.gather(*users)
        else:
            await _arrivals(client, webhook, scripts, rate, state)
        report.elapsed = time.perf_counter() - started
        if ticker:
            ticker.cancel()
    return report


@dataclass
class _Run:
    deadline: float
    max_turns: int | None
    report: LoadReport

    def more(self) -> bool:
        full = self.max_turns is not None and len(self.report.turns) >= self.max_turns
        return not full and time.perf_counter() < self.deadline


async def _user(client: httpx.AsyncClient, webhook: str, scripts: Sequence[Script], index: int, state: _Run) -> None:
    number = index  # users start from different scripts, then each walks them in order
    while state.more():
        await _conversation(client, webhook, scripts[number % len(scripts)], state)
        number += 1


async def _arrivals(client: httpx.AsyncClient, webhook: str, scripts: Sequence[Script], rate: float, state: _Run) -> None:
    running: set[asyncio.Task] = set()
    start, number = time.perf_counter(), 0
    while state.more() and len(running) < MAX_CONCURRENCY * 4:
        task = asyncio.create_task(_conversation(client, webhook, scripts[number % len(scripts)], state))
        running.add(task)
        task.add_done_callback(running.discard)
        number += 1
        await asyncio.sleep(max(0.0, start + number / rate - time.perf_counter()))
    if running:
        await asyncio.gather(*running)


async def _conversation(client: httpx.AsyncClient, webhook: str, script: Script, state: _Run) -> None:
    sender = f"loadtest-{uuid.uuid4().hex[:12]}"
    for text in script.turns:
        if not state.more():
            return
        started = time.perf_counter()
        try:
            reply = await client.post(webhook, json={"sender": sender, "message": text})
            latency = time.perf_counter() - started
            if reply.status_code != 200:
                state.report.turns.append(TurnResult(started, latency, "error", f"http {reply.status_code}"))
                return  # the rest of the script depends on this turn
            state.report.turns.append(TurnResult(started, latency, reply_kind(reply.json())))
        except (httpx.HTTPError, ValueError) as exc:
            kind = _error_kind(exc)
            state.report.turns.append(TurnResult(started, time.perf_counter() - started, "error", kind))
            return


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, ValueError):
        return "not json"
    return type(exc).__name__


async def _report_progress(state: _Run, progress: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(1.0)
        turns = state.report.turns
        errors = sum(t.kind == "error" for t in turns)
        left = max(0.0, state.deadline - time.perf_counter())
        progress(f"{len(turns)} turns, {errors} errors, {left:.0f} s left")


@dataclass(frozen=True)
class LLMCall:
    """One streamed completion: time to first token, whole time, tokens written."""

    ttft: float | None
    latency: float
    tokens: int
    error: str = ""


@dataclass
class LLMLoadReport:
    """The calls of one concurrency against an LLM endpoint."""

    concurrency: int
    elapsed: float = 0.0
    calls: list[LLMCall] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Requests/s, time to first token p50 / p90 (ms), output tokens/s over all and per request."""
        done = [c for c in self.calls if not c.error]
        tokens = sum(c.tokens for c in done)
        per_request = [c.tokens / c.latency for c in done if c.latency > 0]
        return {
            "concurrency": self.concurrency,
            "requests": len(self.calls),
            "errors": dict(Counter(c.error for c in self.calls if c.error)),
            "requests_per_s": round(len(done) / self.elapsed, 3) if self.elapsed else 0.0,
            "ttft_p50_ms": _ms(nearest_rank([c.ttft for c in done if c.ttft is not None], 50)),
            "ttft_p90_ms": _ms(nearest_rank([c.ttft for c in done if c.ttft is not None], 90)),
            "tokens_per_s": round(tokens / self.elapsed, 1) if self.elapsed else 0.0,
            "tokens_per_s_per_request": round(sum(per_request) / len(per_request), 1) if per_request else 0.0,
        }


async def llm_load(
    base_url: str,
    model: str,
    prompts: Sequence[str],
    *,
    concurrency: int,
    requests: int,
    max_tokens: int = 128,
    timeout: float = 120.0,
    api_key: str | None = None,
) -> LLMLoadReport:
    """``requests`` streamed chat completions, ``concurrency`` at a time, against ``base_url``
    (an OpenAI-compatible ``/v1``), each prompt a user message."""
    _check_bounds(1, concurrency, None)
    report = LLMLoadReport(concurrency)
    queue = list(range(requests))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(timeout=timeout, headers=headers, trust_env=False) as client:

        async def worker() -> None:
            while queue:
                number = queue.pop()
                report.calls.append(await _llm_call(client, base_url, model, prompts[number % len(prompts)], max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        report.elapsed = time.perf_counter() - started
    return report


async def _llm_call(client: httpx.AsyncClient, base_url: str, model: str, prompt: str, max_tokens: int) -> LLMCall:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, first, tokens = time.perf_counter(), None, 0
    try:
        async with client.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body) as response:
            if response.status_code != 200:
                return LLMCall(None, time.perf_counter() - started, 0, f"http {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if first is None and any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                    first = time.perf_counter() - started
                if event.get("usage"):
                    tokens = int(event["usage"].get("completion_tokens") or 0)
    except (httpx.HTTPError, ValueError) as exc:
        return LLMCall(first, time.perf_counter() - started, tokens, _error_kind(exc))
    return LLMCall(first, time.perf_counter() - started, tokens)


def format_llm_point(figures: dict) -> str:
    """One line for an :meth:`LLMLoadReport.as_dict`."""
    errors = sum(figures["errors"].values())
    return (
        f"concurrency {figures['concurrency']}: {figures['requests_per_s']:.2f} requests/s, "
        f"TTFT p50 {figures['ttft_p50_ms']} / p90 {figures['ttft_p90_ms']} ms, "
        f"{figures['tokens_per_s']:.1f} tokens/s ({figures['tokens_per_s_per_request']:.1f} per request), "
        f"{figures['requests']} requests, {errors} errors"
    )


def plot_sweep(
    points: Sequence[tuple[float, float | None, float | None]],
    path: Path,
    *,
    title: str,
    throughput: str = "turns/s",
    labels: tuple[str, str] = ("p50", "p95"),
) -> Path:
    """Save a PNG of latency (ms) against throughput, one point per load: ``points`` are
    (throughput, lower percentile in seconds, upper percentile in seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    for index, (label, style) in enumerate(zip(labels, ("o-", "s--")), start=1):
        axes.plot([p[0] for p in points], [(p[index] or 0) * 1000 for p in points], style, label=label)
    axes.set_xlabel(f"throughput ({throughput})")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _check_bounds(duration: float, concurrency: int, rate: float | None) -> None:
    if not 0 < duration <= MAX_SECONDS:
        raise ConfigError(f"the duration must be above 0 and at most {MAX_SECONDS} s, got {duration}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"the concurrency must be 1 to {MAX_CONCURRENCY}, got {concurrency}")
    if rate is not None and not 0 < rate <= 1000:
        raise ConfigError(f"the rate must be above 0 and at most 1000 conversations/s, got {rate}")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
