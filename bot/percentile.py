"""One percentile for the figures the bot reports (latency in load tests, answer evaluation and
trace statistics): the nearest-rank definition, so every reported value is one that was measured.

    nearest_rank([120, 80, 95, 300], 95)   # 300
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["nearest_rank"]


def nearest_rank(values: Iterable[float], percent: int) -> float | None:
    """The smallest value with at least ``percent`` % of ``values`` at or below it (None for none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    index = max(0, min(len(ordered) - 1, -(-percent * len(ordered) // 100) - 1))
    return ordered[index]
