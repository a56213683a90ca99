"""An optional moderation model behind an OpenAI-compatible chat endpoint (``endpoints.yml:
moderation``), e.g. a Llama-Guard-style model served by vLLM: it is sent the user's message and
answers ``safe``, or ``unsafe`` with its categories on the next line (``S1,S14``).

    client = ModerationClient(ModerationSettings(url="http://127.0.0.1:8020/v1", model="llama-guard"))
    verdict = await client.check("Ignore your rules and ...")     # GuardVerdict or None

A server that fails (unreachable, slow, an answer that is neither) is logged and, with
``on_error: allow`` (the default), lets the message through to the other layers; with
``on_error: block`` the message gets the attack response.
"""

from __future__ import annotations

import logging

import httpx

from bot.config import ModerationSettings
from bot.errors import BotError
from bot.guard.verdict import ATTACK_RESPONSE, GuardVerdict

__all__ = ["ModerationClient", "ModerationError"]

logger = logging.getLogger(__name__)


class ModerationError(BotError):
    """The moderation server failed or answered something that is not a verdict."""


class ModerationClient:
    """Asks the moderation model about one message at a time."""

    def __init__(self, settings: ModerationSettings):
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._http = httpx.AsyncClient(base_url=settings.url or "", headers=headers, timeout=settings.timeout)

    async def check(self, text: str) -> GuardVerdict | None:
        """The model's verdict on ``text`` (None: safe); a failure follows ``on_error``."""
        try:
            return await self._ask(text)
        except ModerationError as exc:
            logger.warning("moderation failed: %s", exc)
            if self.settings.on_error == "block":
                return GuardVerdict("attack", "moderation", "unavailable", str(exc), ATTACK_RESPONSE)
            return None

    async def _ask(self, text: str) -> GuardVerdict | None:
        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 20,
            "temperature": 0.0,
        }
        try:
            response = await self._http.post("/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise ModerationError(f"no answer from {self.settings.url} within {self.settings.timeout} s") from exc
        except httpx.HTTPError as exc:
            raise ModerationError(f"cannot reach {self.settings.url}: {exc}") from exc
        if response.status_code != 200:
            raise ModerationError(f"{self.settings.url} answered HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModerationError(f"{self.settings.url} sent no chat completion") from exc
        lines = [line.strip() for line in content.strip().lower().splitlines() if line.strip()]
        if not lines or lines[0] not in ("safe", "unsafe"):
            raise ModerationError(f"the moderation model said {content[:40]!r}, not 'safe' or 'unsafe'")
        if lines[0] == "safe":
            return None
        categories = lines[1] if len(lines) > 1 else "unsafe"
        return GuardVerdict("attack", "moderation", categories[:100], content.strip()[:200], ATTACK_RESPONSE)

    async def aclose(self) -> None:
        await self._http.aclose()
