"""What a server's door says when it refuses a request (too large, too fast, malformed): one
plain sentence from ``messages.yml`` in the sender's language, never the request echoed back.

    refusal("too_many_requests", sender_language(text, request.headers), seconds=3)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping

from bot.lang import detect_language
from bot.llm.prompts import Prompts

__all__ = ["refusal", "refusal_body", "sender_language", "valid_text"]

#: How much of a message is looked at to tell its language (detection is linear in it).
_LANGUAGE_SAMPLE = 2000


def refusal(key: str, language: str, *, prompts_dir: Path | None = None, **values: object) -> str:
    """The sentence ``key`` of messages.yml (``request_too_large``, ``too_many_requests``,
    ``bad_request``, ``question_too_long``) in ``language``, filled with ``values``."""
    return _prompts(prompts_dir).message(key, language).format(**values)


def refusal_body(error: str, language: str, *, prompts_dir: Path | None = None, **values: object) -> dict[str, str]:
    """The JSON body of every refused HTTP request, at every door:
    ``{"error": "<key>", "message": "<the plain sentence>"}`` (see :func:`refusal`)."""
    return {"error": error, "message": refusal(error, language, prompts_dir=prompts_dir, **values)}


def sender_language(text: object = None, headers: Mapping[str, str] | None = None) -> str:
    """``zh`` or ``en``: from the message text when there is some, else the Accept-Language header."""
    if isinstance(text, str) and text.strip():
        return detect_language(text[:_LANGUAGE_SAMPLE])
    accept = (headers or {}).get("accept-language", "") or ""
    return "zh" if accept.strip().lower().startswith("zh") else "en"


def valid_text(value: object) -> bool:
    """Whether ``value`` is a string of valid Unicode: JSON's ``\\ud800`` decodes to a lone
    surrogate, which fails later and elsewhere (encoding, SQL, Rasa) unless refused at the door."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@lru_cache(maxsize=8)
def _prompts(prompts_dir: Path | None) -> Prompts:
    return Prompts(prompts_dir)
