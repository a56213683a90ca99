"""Masking personal data (phone numbers, e-mail addresses, ID and card numbers) before storage.

    redactor = Redactor({"email": r"[\\w.+-]+@[\\w-]+\\.\\w+"})
    redactor.text("write to ann@example.com")        # 'write to [email]'
    redactor.value({"question": "...", "hits": [...]})  # every string inside, masked
    redactor.value(row, keep={"turn_id"})               # ... but the turn's id
"""

from __future__ import annotations

import re
from typing import Any, Collection, Mapping

__all__ = ["Redactor"]


class Redactor:
    """Replaces each match of a labelled pattern with ``[label]``; patterns apply in order."""

    def __init__(self, patterns: Mapping[str, str]):
        self._patterns = [(re.compile(pattern), f"[{label}]") for label, pattern in patterns.items()]

    def text(self, text: str) -> str:
        """``text`` with every match masked."""
        for pattern, mask in self._patterns:
            text = pattern.sub(mask, text)
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
