"""What a guard decided about a turn: which layer stopped it, why, and the canned reply it gets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GuardVerdict", "ATTACK_RESPONSE", "LAYERS", "DECISIONS"]

#: The canned response (domain.yml) an attack on the assistant gets.
ATTACK_RESPONSE = "utter_prompt_attack"

#: Where a verdict comes from: the input lexicon, the moderation model, Rasa's NLU, the retrieved
#: items' topic metadata, or the check of the answer against its passages.
LAYERS = ("patterns", "moderation", "nlu", "topic", "output")

#: A turn's guard decision as traced (``turns.guard``): an attack, a sensitive message, or an
#: answer downgraded to its sources. A turn no guard stopped has none.
DECISIONS = ("attack", "sensitive", "downgraded")


@dataclass(frozen=True)
class GuardVerdict:
    """One guard's decision: ``decision`` (``DECISIONS``), the ``layer`` that took it, the
    ``category`` (injection, refund, number, ...), ``reason`` (what matched, for the trace)
    and the canned ``response`` the user gets (None for a downgraded answer)."""

    decision: str
    layer: str
    category: str
    reason: str
    response: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
