"""Encoder interfaces: each backend implements one small method, the rest is derived."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["DenseEncoder", "SparseEncoder", "SparseVector"]


@dataclass(frozen=True)
class SparseVector:
    """Term weights: parallel lists of non-negative term ids and float weights."""

    indices: list[int]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.indices)


class DenseEncoder(ABC):
    """Turns texts into L2-normalized float32 vectors of size ``dim``.

    Implement :meth:`embed_batch`; queries and passages may be embedded
    differently (prefixes, instructions), which ``is_query`` selects.
    """

    name: str
    dim: int

    @abstractmethod
    def embed_batch(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """Return an array of shape ``(len(texts), dim)``, float32, rows L2-normalized."""

    def embed_query(self, text: str) -> np.ndarray:
        """One query vector, shape ``(dim,)``."""
        return self.embed_batch([text], is_query=True)[0]

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for ``text``; used to bound chunks.

        The default is an estimate (one token per CJK character, 1.3 per word
        otherwise); backends with a tokenizer override it.
        """
        from bot.lang import estimate_tokens

        return estimate_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` that the model sees as at most ``max_tokens`` tokens."""
        if self.count_tokens(text) <= max_tokens:
            return text
        fits, too_long = 0, len(text)  # binary search on the prefix length, in characters
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            if self.count_tokens(text[:middle]) <= max_tokens:
                fits = middle
            else:
                too_long = middle
        return text[:fits]


class SparseEncoder(ABC):
    """Turns texts into sparse term-weight vectors.

    ``uses_idf`` tells the store to apply Qdrant's IDF modifier to this
    vector (term-count encoders); learned weights (BGE-M3) do not need it.
    """

    name: str
    uses_idf: bool

    @abstractmethod
    def encode_batch(self, texts: Sequence[str], *, is_query: bool) -> list[SparseVector]:
        """Return one :class:`SparseVector` per text (empty when no term scores)."""

    def encode_query(self, text: str) -> SparseVector:
        """One query vector."""
        return self.encode_batch([text], is_query=True)[0]
