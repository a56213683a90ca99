"""The section path: which headings are open at the current point of a document."""

from __future__ import annotations

__all__ = ["Outline"]


class Outline:
    """Tracks the headings above the current position, outermost first.

    A heading of level ``n`` closes every open heading of level ``n`` or deeper.
    """

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []

    def enter(self, level: int, heading: str) -> None:
        """Record a heading of ``level`` (1 is outermost)."""
        self._open = [(lvl, text) for lvl, text in self._open if lvl < level]
        if heading:
            self._open.append((level, heading))

    @property
    def path(self) -> tuple[str, ...]:
        """The open headings, outermost first."""
        return tuple(text for _, text in self._open)
