"""Conversation keys: the proof that a web page started the conversation it names.

The action server hands the widget a fresh random conversation id with its key (an HMAC of the
id); the live stream and feedback of that conversation are refused without it, so a guessed or
overheard sender id is not enough. The secret is derived from the action token (keys outlive a
restart of the action server), or random per process when no token is configured.

    keys = ConversationKeys.from_token(settings.serving.action_token)
    conversation_id, key = keys.new()
    keys.verify(conversation_id, key)     # True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

__all__ = ["ConversationKeys"]

_DERIVATION = b"bot conversation keys v1"


class ConversationKeys:
    """Issues and checks conversation keys with one secret."""

    def __init__(self, secret: bytes):
        self._secret = secret

    @classmethod
    def from_token(cls, token: str | None) -> "ConversationKeys":
        """Keys derived from the action token (None: a random secret, valid for this process only)."""
        if not token:
            return cls(secrets.token_bytes(32))
        return cls(hmac.new(token.encode("utf-8"), _DERIVATION, hashlib.sha256).digest())

    def key(self, conversation_id: str) -> str:
        """The key of ``conversation_id``."""
        return hmac.new(self._secret, conversation_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def new(self) -> tuple[str, str]:
        """A fresh random conversation id and its key."""
        conversation_id = str(uuid.uuid4())
        return conversation_id, self.key(conversation_id)

    def verify(self, conversation_id: object, key: object) -> bool:
        """Whether ``key`` is the key of ``conversation_id`` (constant time; any type is refused)."""
        if not isinstance(conversation_id, str) or not isinstance(key, str) or not conversation_id:
            return False
        return hmac.compare_digest(self.key(conversation_id).encode(), key.encode("utf-8", "surrogatepass"))
