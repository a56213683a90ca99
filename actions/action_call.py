"""The shape of Rasa's call to the action server (``POST /webhook``), checked before rasa-sdk's
handler runs it: what rasa-sdk and our actions read must have the type they expect, so a
malformed call is a 400, never an action that crashes half-way.

    call, problem = parse_action_call(body, encoding=None, max_bytes=16 << 20)
    if problem: ...   # "not_json", "not_object", "next_action", "text", ...: a key of actions.doors.REASONS
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from bot.doors import valid_text

__all__ = ["TooLarge", "parse_action_call", "problem"]


class TooLarge(ValueError):
    """A compressed call that inflates beyond the size limit."""


def parse_action_call(body: bytes, *, encoding: str | None, max_bytes: int) -> tuple[Any, str | None]:
    """The JSON of a call (inflated when ``encoding`` is deflate, as rasa-sdk reads it) and the
    key of what is wrong with it (None: well-formed). Raises :class:`TooLarge` when a compressed
    body inflates beyond ``max_bytes``."""
    if encoding == "deflate":
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(body, max_bytes + 1)
        except zlib.error:
            return None, "compressed"
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise TooLarge(f"inflates beyond {max_bytes} bytes")
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "not_json"
    return call, problem(call)


def problem(call: Any) -> str | None:
    """What is wrong with a parsed call (a key of ``actions.doors.REASONS``), or None."""
    if not isinstance(call, dict):
        return "not_object"
    if not isinstance(call.get("next_action"), str) or not call["next_action"]:
        return "next_action"
    if not _optional(call.get("version"), str):
        return "version"
    if not _optional(call.get("domain"), dict):
        return "domain"
    tracker = call.get("tracker")
    if not isinstance(tracker, dict):
        return "tracker"
    if not isinstance(tracker.get("sender_id"), str) or not tracker["sender_id"]:
        return "sender_id"
    if not _optional(tracker.get("slots"), dict):
        return "slots"
    events = tracker.get("events")
    if not _optional(events, list) or not all(isinstance(event, dict) for event in events or ()):
        return "events"
    message = tracker.get("latest_message")
    if not _optional(message, dict):
        return "latest_message"
    return _message_problem(message or {})


def _message_problem(message: dict) -> str | None:
    text = message.get("text")
    if text is not None and not valid_text(text):
        return "text"
    if "intent" in message and not isinstance(message["intent"], dict):  # our actions read .get("intent", {})
        return "intent"
    ranking = message.get("intent_ranking")
    if not _optional(ranking, list) or not all(isinstance(intent, dict) for intent in ranking or ()):
        return "intent_ranking"
    return None


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)
