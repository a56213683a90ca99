"""Masking personal data (phone numbers, e-mail addresses, ID and card numbers) before storage.

    redactor = Redactor({"email": r"[\\w.+-]+@[\\w-]+\\.\\w+"})
    redactor.text("write to ann@example.com")        # 'write to [email]'
    redactor.value({"question": "...", "hits": [...]})  # every string inside, masked
    redactor.value(row, keep={"turn_id"})               # ... but the turn's id

The patterns we ship (``DEFAULT_REDACTIONS``) run in linear time on any text. A pattern of the
user's own may not: on a text longer than ``WINDOW + OVERLAP`` characters it runs on
overlapping windows, so one that backtracks badly costs time in proportion to the text, not to
its square. A match up to ``OVERLAP`` characters long is masked wherever it lies.
"""

from __future__ import annotations

import re
from typing import Any, Collection, Mapping

from bot.config import DEFAULT_REDACTIONS

__all__ = ["Redactor", "WINDOW", "OVERLAP"]

#: Characters a user's pattern is applied to at a time on a long text (each window's start).
WINDOW = 1000
#: How far each window reaches into the next one: the longest match a window edge cannot cut.
OVERLAP = 256

_LINEAR = frozenset(DEFAULT_REDACTIONS.values())


class Redactor:
    """Replaces each match of a labelled pattern with ``[label]``; patterns apply in order."""

    def __init__(self, patterns: Mapping[str, str]):
        self._patterns = [
            (re.compile(pattern), f"[{label}]", pattern in _LINEAR) for label, pattern in patterns.items()
        ]

    def text(self, text: str) -> str:
        """``text`` with every match masked."""
        for pattern, mask, linear in self._patterns:
            if linear or len(text) <= WINDOW + OVERLAP:
                text = pattern.sub(mask, text)
            else:
                text = _mask_windowed(pattern, mask, text)
        return text

    def value(self, value: Any, *, keep: Collection[str] = ()) -> Any:
        """A copy of ``value`` (str, list, dict or scalar) with every string in it masked, except
        the values of the mapping keys in ``keep`` (identifiers), at any depth."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: item if key in keep else self.value(item, keep=keep) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item, keep=keep) for item in value]
        return value


def _mask_windowed(pattern: re.Pattern[str], mask: str, text: str) -> str:
    """``text`` with the matches ``pattern`` finds in its overlapping windows masked; matches
    that overlap or touch become one mask."""
    spans: list[tuple[int, int]] = []
    for start in range(0, len(text), WINDOW):
        window = text[start : start + WINDOW + OVERLAP]
        spans += [(start + m.start(), start + m.end()) for m in pattern.finditer(window) if m.end() > m.start()]
    merged: list[list[int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    parts, position = [], 0
    for begin, end in merged:
        parts += [text[position:begin], mask]
        position = end
    return "".join(parts) + text[position:]
