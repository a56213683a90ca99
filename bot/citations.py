"""Citation markers in generated answers: keep those that name a passage, drop the rest.

The LLM cites passages as ``[1]``, ``[2][3]``, ``[1, 2]`` or ``【1】``. Markers are rewritten
as ``[n]`` for passages that were in the prompt and removed otherwise, also while streaming
(a marker split over two deltas is held back until it is complete). ``[1](url)`` is a
markdown link, not a citation, and is left alone.

    cleaner = CitationFilter(valid={1, 2, 3})
    cleaner.feed("Refunds take 7 days [2") + cleaner.feed("][9].") + cleaner.finish()
    # "Refunds take 7 days [2]."       cleaner.cited == [2]

An answer without any marker is attributed to the passages it repeats (:func:`attribute`),
and the markers are appended, so every grounded answer names its sources.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

__all__ = ["CitationFilter", "clean_citations", "attribute"]

_NUMBERS = r"\d{1,3}(?:\s*[,，、]\s*\d{1,3})*"
_MARKER = re.compile(rf"\[({_NUMBERS})\](?!\()|【({_NUMBERS})】")
# An unfinished marker at the end of a delta, or a finished one that a "(" could still follow.
_OPEN_TAIL = re.compile(r"(?:\[[\d,，、\s]*|【[\d,，、\s]*|\[[\d,，、\s]+\])$")
_MAX_HELD = 24  # characters; anything longer is not a citation marker
_NUMBER = re.compile(r"\d+")


class CitationFilter:
    """Streams text through, rewriting citation markers; ``cited`` lists valid numbers in order."""

    def __init__(self, valid: Iterable[int]):
        self.valid = set(valid)
        self.cited: list[int] = []
        self._held = ""

    def feed(self, delta: str) -> str:
        """The part of the text so far that is safe to show."""
        text = self._held + delta
        tail = _OPEN_TAIL.search(text)
        if tail and len(text) - tail.start() <= _MAX_HELD:
            text, self._held = text[: tail.start()], text[tail.start() :]
        else:
            self._held = ""
        return self._clean(text)

    def finish(self) -> str:
        """Whatever was held back, cleaned."""
        text, self._held = self._held, ""
        return self._clean(text)

    def _clean(self, text: str) -> str:
        return _MARKER.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        numbers = [int(n) for n in _NUMBER.findall(match.group(1) or match.group(2))]
        kept = [n for n in numbers if n in self.valid]
        for number in kept:
            if number not in self.cited:
                self.cited.append(number)
        return "".join(f"[{n}]" for n in kept)


def clean_citations(text: str, valid: Iterable[int]) -> tuple[str, list[int]]:
    """``text`` with invalid markers removed, and the valid numbers cited, in order."""
    cleaner = CitationFilter(valid)
    cleaned = cleaner.feed(text) + cleaner.finish()
    return cleaned, cleaner.cited


def attribute(text: str, passages: Mapping[int, str], min_overlap: float = 0.3) -> list[int]:
    """Passages an uncited answer demonstrably draws on, best first.

    Small models often answer without markers. A passage counts when at least ``min_overlap``
    of the answer's character bigrams occur in it; only the best such passage (and any within
    0.1 of it) is returned, so nothing is attributed to a passage the answer does not repeat.
    """
    answer = _bigrams(text)
    if not answer:
        return []
    overlap = {n: len(answer & _bigrams(p)) / len(answer) for n, p in passages.items()}
    best = max(overlap.values(), default=0.0)
    if best < min_overlap:
        return []
    return sorted((n for n, v in overlap.items() if v >= best - 0.1), key=lambda n: -overlap[n])


def _bigrams(text: str) -> set[str]:
    chars = [c for c in _MARKER.sub("", text.lower()) if c.isalnum()]
    return {a + b for a, b in zip(chars, chars[1:])}
