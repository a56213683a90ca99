"""Token counts for prompt budgets: the model's own tokenizer when available, else an estimate.

The tokenizer is read from ``tokenizer.json`` in ``generation.tokenizer_path`` (the local
model's folder by default). For a remote model without a local tokenizer the count is a
deliberately high estimate (:func:`bot.lang.estimate_tokens` plus a margin), so prompts stay
inside the context.
"""

from __future__ import annotations

from pathlib import Path

from bot.lang import estimate_tokens

__all__ = ["TokenCounter"]

_ESTIMATE_MARGIN = 1.25


class TokenCounter:
    """Counts and trims text in the LLM's tokens."""

    def __init__(self, tokenizer_path: Path | None = None):
        self._tokenizer = None
        file = tokenizer_path / "tokenizer.json" if tokenizer_path and tokenizer_path.is_dir() else tokenizer_path
        if file is not None and file.is_file():
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(file))

    @property
    def exact(self) -> bool:
        """True when counts come from the model's tokenizer."""
        return self._tokenizer is not None

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return int(estimate_tokens(text) * _ESTIMATE_MARGIN) + 1

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` within ``max_tokens`` (with "…" when cut)."""
        if max_tokens <= 0:
            return ""
        if self.count(text) <= max_tokens:
            return text
        if self._tokenizer is not None:
            if max_tokens == 1:
                return "…"
            offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
            return text[: offsets[max_tokens - 2][1]].rstrip() + "…"  # one token left for "…"
        low, high = 0, len(text)
        while low < high:  # the longest prefix whose estimate fits
            middle = (low + high + 1) // 2
            if self.count(text[:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        return text[:low].rstrip() + "…"
