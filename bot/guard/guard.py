"""All the guards of one engine, built from ``bot.yml: guard`` and ``endpoints.yml: moderation``.

    guard = Guard.from_settings(settings)
    verdict = await guard.screen(message)          # attack or sensitive topic, before retrieval
    verdict = guard.screen_hits(retrieval.hits)    # sensitive item topics, before generation
    failed = guard.output.unsupported(answer_text, evidence)
"""

from __future__ import annotations

from functools import cached_property

from bot.config import Settings
from bot.guard.input import InputGuard
from bot.guard.lexicon import DEFAULT_DIR
from bot.guard.moderation import ModerationClient
from bot.guard.output import OutputGuard
from bot.guard.sensitive import SensitiveGuard
from bot.guard.verdict import GuardVerdict

__all__ = ["Guard"]


class Guard:
    """The input, sensitive, moderation and output guards; each lexicon loads on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings.guard
        self.moderation_settings = settings.moderation

    @classmethod
    def from_settings(cls, settings: Settings) -> "Guard":
        guard = cls(settings)
        guard.attacks, guard.sensitive, guard.output  # noqa: B018 - a broken lexicon fails at start, not mid-turn
        return guard

    @cached_property
    def attacks(self) -> InputGuard:
        return InputGuard.from_file(self.settings.input_lexicon or DEFAULT_DIR / "input.yml")

    @cached_property
    def sensitive(self) -> SensitiveGuard:
        return SensitiveGuard.from_file(
            self.settings.sensitive_lexicon or DEFAULT_DIR / "sensitive.yml",
            topics=self.settings.sensitive_topics,
            topic_hits=self.settings.topic_hits,
        )

    @cached_property
    def output(self) -> OutputGuard:
        return OutputGuard.from_file(self.settings.output_lexicon or DEFAULT_DIR / "output.yml")

    @cached_property
    def moderation(self) -> ModerationClient | None:
        return ModerationClient(self.moderation_settings) if self.moderation_settings.url else None

    def screen_text(self, text: str) -> GuardVerdict | None:
        """The pattern layers: an attack first, then a sensitive topic (None: neither)."""
        if not self.settings.enabled:
            return None
        return self.attacks.check(text) or self.sensitive.check(text)

    async def screen(self, text: str) -> GuardVerdict | None:
        """The pattern layers, then the moderation model when one is configured."""
        verdict = self.screen_text(text)
        if verdict is None and self.settings.enabled and self.moderation is not None:
            verdict = await self.moderation.check(text)
        return verdict

    def instruction_like(self, text: str) -> str | None:
        """The phrase of a document's ``text`` that reads like an instruction to the assistant
        (the attack lexicon's categories but ``secrets``: documents name keys and tokens), or None."""
        verdict = self.attacks.check(text, skip=("secrets",))
        return verdict.reason if verdict else None

    def screen_hits(self, hits) -> GuardVerdict | None:
        """The retrieved items' topics (None: not sensitive, or the guard is off)."""
        return self.sensitive.check_hits(hits) if self.settings.enabled else None

    async def aclose(self) -> None:
        if self.__dict__.get("moderation") is not None:
            await self.moderation.aclose()
