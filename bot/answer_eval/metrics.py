"""How close an answer is to its references: containment, token-level F1, required facts,
and whether what it asserts is in the passages it cites.

Text is compared normalised: NFKC (full-width letters and digits as half-width), lower case,
punctuation and spaces dropped, citation markers ``[n]`` removed. Tokens are characters for
Chinese and words for English (a mixed text yields both), as CMRC2018 and SQuAD score them.

    contains("退款7天内全额退还", ["7天内"])          # True
    token_f1("Refunds take 5-10 days", ["5–10 business days"])   # 0.667
    facts_found("Hold the button for 3 seconds [1]", ["3 seconds", ["blue", "蓝"]])   # [True, False]
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Sequence, Union

__all__ = ["normalize", "tokens", "contains", "token_f1", "facts_found", "Fact"]

#: A fact an answer must state: one text, or a list of acceptable alternatives.
Fact = Union[str, Sequence[str]]

_CITATION = re.compile(r"\[\d{1,3}\]")
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")
_ENGLISH_ARTICLES = frozenset({"a", "an", "the"})


def normalize(text: str) -> str:
    """``text`` without citation markers, punctuation, symbols and spaces; lower case, half-width."""
    text = _CITATION.sub("", unicodedata.normalize("NFKC", text or "")).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def tokens(text: str) -> list[str]:
    """Chinese characters one by one and English words (articles left out), normalised."""
    text = _CITATION.sub(" ", unicodedata.normalize("NFKC", text or "")).lower()
    return [token for token in _TOKEN.findall(text) if token not in _ENGLISH_ARTICLES]


def contains(answer: str, references: Sequence[str]) -> bool:
    """Whether the answer holds one of ``references`` whole (after normalisation)."""
    squeezed = normalize(answer)
    return any(ref and ref in squeezed for ref in map(normalize, references))


def token_f1(answer: str, references: Sequence[str]) -> float:
    """The best token-level F1 of the answer against any one reference (0.0 without any)."""
    predicted = Counter(tokens(answer))
    best = 0.0
    for reference in references:
        gold = Counter(tokens(reference))
        common = sum((predicted & gold).values())
        if common:
            precision, recall = common / sum(predicted.values()), common / sum(gold.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def facts_found(answer: str, facts: Sequence[Fact]) -> list[bool]:
    """For each fact, whether the answer states it (any one of its alternatives, normalised)."""
    squeezed = normalize(answer)
    found = []
    for fact in facts:
        alternatives = [fact] if isinstance(fact, str) else list(fact)
        found.append(any(normalize(alt) and normalize(alt) in squeezed for alt in alternatives))
    return found
