"""Live answers: each knowledge turn's text, published piece by piece while the LLM writes it.

rasa-sdk 3.6 has no streaming API: an action's messages reach Rasa, and the user, only when the
action ends. So the knowledge action also hands every piece of the answer to *sinks* as it is
generated:

- :class:`StreamHub` (always): publishes the turn's events under its conversation id; the web
  widget listens with ``GET /knowledge/stream/<conversation id>`` (server-sent events, see
  ``actions/server.py``) and shows the text growing. Rasa still delivers the final message
  (socket.io ``bot_uttered``), which replaces the streamed text. A conversation id is the
  widget's random session id, so each listener gets its own conversation's events only.
- channel sinks (e.g. Slack's placeholder that is updated in place) from :func:`channel_sinks`.

Events are plain dicts: ``{"type": "start", "turn_id"}``, ``{"type": "delta", "turn_id",
"text"}``, ``{"type": "done", "turn_id", ...the structured answer}``, ``{"type": "error",
"turn_id", "text"}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, AsyncIterator, Protocol

__all__ = ["AnswerSink", "StreamHub", "HubSink", "hub"]

logger = logging.getLogger(__name__)

#: Events one listener may fall behind by before it misses some (it then gets the final message only).
_LISTENER_BACKLOG = 2000


class AnswerSink(Protocol):
    """Receives one knowledge turn as it is generated."""

    #: True when the sink shows the final answer itself, so the action must not utter it as well.
    delivers_final: bool

    async def start(self, turn_id: str) -> None: ...

    async def delta(self, text: str) -> None: ...

    async def done(self, message: dict[str, Any]) -> None:
        """``message``: the structured answer (``json_message`` of the final reply) with its ``text``."""

    async def failed(self, text: str) -> None: ...


class StreamHub:
    """In-process publish/subscribe of turn events, keyed by conversation id."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue]] = defaultdict(set)

    def publish(self, conversation_id: str, event: dict[str, Any]) -> int:
        """Send ``event`` to the conversation's listeners; returns how many got it."""
        delivered = 0
        for queue in list(self._listeners.get(conversation_id, ())):
            try:
                queue.put_nowait(event)
                delivered += 1
            except asyncio.QueueFull:
                logger.warning("a stream listener of %s fell behind; it skips an event", conversation_id)
        return delivered

    async def listen(self, conversation_id: str) -> AsyncIterator[dict[str, Any]]:
        """The conversation's events from now on, until the caller stops iterating."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=_LISTENER_BACKLOG)
        self._listeners[conversation_id].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners[conversation_id].discard(queue)
            if not self._listeners[conversation_id]:
                del self._listeners[conversation_id]

    def listeners(self, conversation_id: str) -> int:
        """How many listeners the conversation has now."""
        return len(self._listeners.get(conversation_id, ()))


#: The action server's hub (one per process, like the engine).
hub = StreamHub()


class HubSink:
    """Publishes one turn of one conversation to :data:`hub`."""

    delivers_final = False

    def __init__(self, conversation_id: str, stream_hub: StreamHub = hub):
        self._conversation_id = conversation_id
        self._hub = stream_hub
        self._turn_id = ""

    async def start(self, turn_id: str) -> None:
        self._turn_id = turn_id
        self._hub.publish(self._conversation_id, {"type": "start", "turn_id": turn_id})

    async def delta(self, text: str) -> None:
        self._hub.publish(self._conversation_id, {"type": "delta", "turn_id": self._turn_id, "text": text})

    async def done(self, message: dict[str, Any]) -> None:
        self._hub.publish(self._conversation_id, {**message, "type": "done", "turn_id": self._turn_id})

    async def failed(self, text: str) -> None:
        self._hub.publish(self._conversation_id, {"type": "error", "turn_id": self._turn_id, "text": text})
