"""The sensitive guard beyond NLU: topic phrases and patterns (order numbers included) in the
message, and the ``topic`` metadata of the items retrieval found for it.

    guard = SensitiveGuard.from_file(DEFAULT_DIR / "sensitive.yml", topics=("refund", "billing"))
    guard.check("can you process a refund for order NN-20241103")      # refund, before retrieval
    guard.check_hits(retrieval.hits)                                 # after retrieval, before the LLM
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bot.errors import ConfigError
from bot.guard.lexicon import Rules, categories, load_yaml, normalize
from bot.guard.verdict import GuardVerdict

__all__ = ["SensitiveGuard"]


class SensitiveGuard:
    """Message topics (``lexicon/sensitive.yml``) and the sensitive item topics of ``bot.yml``."""

    def __init__(
        self,
        rules: dict[str, Rules],
        responses: dict[str, str],
        item_responses: dict[str, str],
        *,
        topics: Sequence[str] = (),
        topic_hits: int = 2,
    ):
        self.rules, self.responses, self.item_responses = rules, responses, item_responses
        self.topics, self.topic_hits = tuple(topics), topic_hits
        unknown = [topic for topic in self.topics if topic not in item_responses]
        if unknown:
            raise ConfigError(
                f"bot.yml: guard.sensitive_topics {unknown} have no canned response in the sensitive "
                f"lexicon's item_topics (known: {sorted(item_responses)})"
            )

    @classmethod
    def from_file(cls, path: Path, *, topics: Sequence[str] = (), topic_hits: int = 2) -> "SensitiveGuard":
        data = load_yaml(path)
        item_responses = {str(k): str(v) for k, v in (data.get("item_topics") or {}).items()}
        sections = {name: section for name, section in data.items() if name != "item_topics"}
        responses = {}
        for name, section in sections.items():
            if not isinstance(section, dict) or not section.get("response"):
                raise ConfigError(f"{Path(path).name}: topic {name!r} needs a 'response' (a domain.yml response)")
            responses[str(name)] = str(section["response"])
        return cls(
            categories(sections, Path(path)), responses, item_responses, topics=topics, topic_hits=topic_hits
        )

    def check(self, text: str) -> GuardVerdict | None:
        """The verdict on a sensitive topic named in ``text``, or None."""
        normalized = normalize(text)
        for topic, rules in self.rules.items():
            matched = rules.match(normalized)
            if matched:
                return GuardVerdict("sensitive", "patterns", topic, matched, self.responses[topic])
        return None

    def check_hits(self, hits: Sequence) -> GuardVerdict | None:
        """Sensitive when each of the best ``topic_hits`` hits is an item of a sensitive topic;
        the best hit's topic picks the canned response."""
        best = list(hits[: self.topic_hits])
        if not self.topics or not best:
            return None
        item_topics = [str(((hit.payload or {}).get("metadata") or {}).get("topic") or "") for hit in best]
        if not all(topic in self.topics for topic in item_topics):
            return None
        ids = ", ".join(f"{hit.item_id} ({topic})" for hit, topic in zip(best, item_topics))
        return GuardVerdict("sensitive", "topic", item_topics[0], ids, self.item_responses[item_topics[0]])
