"""Groundedness: what an answer asserts must be in the passages it cites.

The output guard's own check (:class:`bot.guard.output.OutputGuard`, with the lexicon the
package ships) finds the numbers, amounts, e-mail addresses, links and product names of an
answer that no cited passage holds; an answer is grounded when there are none.

    unsupported_claims("Plus costs US$4.99 [1]", [Evidence("Plus costs US$3.99 per month")])  # ['us$4.99']
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from bot.guard.lexicon import DEFAULT_DIR
from bot.guard.output import Evidence, OutputGuard

__all__ = ["Evidence", "unsupported_claims"]


@lru_cache(maxsize=1)
def _guard() -> OutputGuard:
    return OutputGuard.from_file(DEFAULT_DIR / "output.yml")


def unsupported_claims(answer: str, evidence: Sequence[Evidence]) -> list[str]:
    """The claims of ``answer`` that none of ``evidence`` (the cited passages) supports."""
    return _guard().unsupported(answer, evidence)
