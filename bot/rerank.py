"""The optional cross-encoder reranker (FlagEmbedding ``FlagReranker``), from a local folder,
or served (``bot.rerank_client``) when ``endpoints.yml`` names a reranker server.

Its scores are relevance on 0..1 (sigmoid of the logit), the signal the
decision policy thresholds when a reranker is configured.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from bot.config import Settings
from bot.embed.flag import ModelSource, load_flag_model

if TYPE_CHECKING:
    from bot.rerank_client import ServedReranker

__all__ = ["Reranker", "build_reranker"]

T = TypeVar("T")


class Reranker:
    """Scores (query, passage) pairs with a cross-encoder such as bge-reranker-base.

    >>> reranker = Reranker("/models/bge-reranker-base")
    >>> best_hit, best_score = reranker.rerank("如何重置密码", hits, text_of=lambda hit: hit.text)[0]
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        batch_size: int = 32,
        max_length: int = 512,
        setting: str = "rerank.model_path",
    ):
        source = ModelSource(
            "Reranker model",
            setting,
            "BAAI/bge-reranker-base",
            f"or leave `{setting}` unset to run without a reranker",
        )
        path = source.check(model_path)
        self._model = load_flag_model(
            "FlagReranker", path, source, batch_size=batch_size, max_length=max_length, normalize=True
        )
        self.name = f"flag-reranker/{path.name}"

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query``, in 0..1, in the order given."""
        if not passages:
            return []
        return [float(s) for s in self._model.compute_score([(query, p) for p in passages])]

    def rerank(self, query: str, items: Sequence[T], text_of: Callable[[T], str]) -> list[tuple[T, float]]:
        """``items`` paired with their scores, best first (ties keep the given order)."""
        scores = self.score(query, [text_of(item) for item in items])
        return sorted(zip(items, scores), key=lambda pair: pair[1], reverse=True)


def build_reranker(settings: Settings) -> "Reranker | ServedReranker | None":
    """The configured reranker: None unless ``rerank.enabled``; the server ``endpoints.yml``'s
    ``rerank.url`` names when set, else the local model in ``rerank.model_path``."""
    if not settings.rerank.enabled:
        return None
    if settings.rerank_server.url:
        from bot.rerank_client import ServedReranker

        return ServedReranker.from_settings(settings.rerank_server)
    return Reranker(settings.rerank.model_path)
