"""Language detection, token estimates and display helpers for Chinese and English text."""

from __future__ import annotations

import re

__all__ = ["detect_language", "estimate_tokens", "is_cjk", "shorten"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")


def is_cjk(char: str) -> bool:
    """True for a Chinese (CJK unified ideograph) character."""
    return bool(_CJK.match(char))


def detect_language(text: str) -> str:
    """``"zh"`` when Chinese characters make up at least a fifth of the letters, else ``"en"``."""
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text))
    if cjk == 0:
        return "en"
    return "zh" if cjk >= 0.2 * (cjk + words) else "en"


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per CJK character, 1.3 per other word."""
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(_CJK.sub(" ", text)))
    return cjk + int(words * 1.3 + 0.999)


def shorten(text: str, width: int) -> str:
    """``text`` on one line (runs of whitespace as one space), cut to ``width`` characters with "…"."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
