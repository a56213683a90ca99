"""Who may see the review page: the holder of ``traces.review_token`` (bot.yml).

A client proves it with ``Authorization: Bearer <token>``, or with the session cookie the
login form sets. The cookie holds an HMAC of the token, never the token itself, and every
comparison takes constant time.

    check_access("s3cret", authorization="Bearer s3cret", cookie=None)   # Access.GRANTED
    check_access(None, authorization=None, cookie=None)                  # Access.CLOSED
    check_access("s3cret", authorization=None, cookie=session_value("s3cret"))   # Access.GRANTED
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

__all__ = ["COOKIE", "Access", "check_access", "session_value", "token_matches"]

#: The session cookie's name.
COOKIE = "bot_review_session"
_SESSION_MESSAGE = b"bot review session v1"


class Access(str, Enum):
    """The outcome of a check: let in, no token configured (the page is closed), or not proven."""

    GRANTED = "granted"
    CLOSED = "closed"
    DENIED = "denied"


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: an HMAC-SHA256 keyed by the token."""
    return hmac.new(token.encode("utf-8"), _SESSION_MESSAGE, hashlib.sha256).hexdigest()


def token_matches(token: str, given: str | None) -> bool:
    """Whether ``given`` is the token (compared in constant time)."""
    return given is not None and hmac.compare_digest(token.encode("utf-8"), given.encode("utf-8"))


def check_access(token: str | None, *, authorization: str | None, cookie: str | None) -> Access:
    """Whether a request with this ``Authorization`` header and session ``cookie`` may review.

    ``token`` is the configured review token; empty or None closes the page to everyone.
    """
    if not token:
        return Access.CLOSED
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(token, credentials.strip()):
        return Access.GRANTED
    if cookie is not None and hmac.compare_digest(session_value(token).encode(), cookie.encode("utf-8")):
        return Access.GRANTED
    return Access.DENIED
