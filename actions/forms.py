"""Validation of the refund form: the order number must look like NN-12345678."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher

__all__ = ["ValidateRefundForm", "find_order_number"]

_ORDER_NUMBER = re.compile(r"(?<![A-Za-z0-9])NN\s*(?:[-－—]\s*)?(\d{8})(?!\d)", re.IGNORECASE)


def find_order_number(text: str) -> str | None:
    """The order number in ``text`` in its canonical form (``NN-20260315``), or None."""
    match = _ORDER_NUMBER.search(text or "")
    return f"NN-{match.group(1)}" if match else None


class ValidateRefundForm(FormValidationAction):
    """Keeps a valid order number (normalised) and asks again after an invalid one."""

    def name(self) -> str:
        return "validate_refund_form"

    def validate_order_number(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict
    ) -> dict[str, Any]:
        order_number = find_order_number(str(slot_value or ""))
        if order_number is None:
            dispatcher.utter_message(response="utter_invalid_order_number")
        return {"order_number": order_number}
