"""socket.io for the web widget (``widget/``): Rasa 3.6's socket.io channel, fixed for the
python-socketio it runs with here (5.18).

In ``credentials.yml``:

    channels.socketio.KnowledgeSocketIOInput:
      user_message_evt: user_uttered
      bot_message_evt: bot_uttered
      session_persistence: true

The channel's name stays ``socketio`` (same path, ``/socket.io``; traces say ``socketio``). What
it changes in Rasa's :class:`~rasa.core.channels.socketio.SocketIOInput`:

- **Session persistence works.** With ``session_persistence: true`` the conversation id is the
  client's ``session_id`` and replies go to a room of that name, which the client joins with
  ``session_request``. Rasa calls ``sio.enter_room`` without ``await``; in python-socketio 5.10
  and later it is a coroutine, so the room was never joined and no reply ever reached the
  browser. Here it is awaited.
- **A custom JSON message arrives.** Rasa passes a ``json_message`` to ``sio.emit`` as keyword
  arguments, so any message but ``{"data": ...}`` raised ``TypeError``. Here it is the event's
  payload (``{"data": X}`` sends ``X``, as before).
- **A knowledge answer is one event**: the action's structured answer (``json_message`` with
  ``type: knowledge_answer``, which holds the text, citations, level and turn id) is sent alone,
  not after the text's paragraphs one event each.
- **A text message is one event that names its response**: ``{"text": ..., "response":
  "utter_..."}`` (``response`` is null for text an action wrote itself), not one event per
  paragraph. The widget knows by it which reply confirms that the history was cleared, and
  drops what the turns before it still send.

Websockets do not work on this stack (Sanic 21.12's websocket on Python 3.11: "Passing
coroutines is forbidden"): clients use long-polling (the widget does by default).
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text

import rasa.shared.utils.io
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint

__all__ = ["KnowledgeSocketIOInput", "KnowledgeSocketIOOutput"]

logger = logging.getLogger(__name__)

#: The parts of a bot message (``BotUttered.message()``) other than its text.
NON_TEXT_PARTS = ("elements", "quick_replies", "buttons", "attachment", "image", "custom")


class KnowledgeSocketIOOutput(SocketIOOutput):
    """Sends custom JSON as the event's payload; a knowledge answer, and a text with the name of
    its response, as one event each."""

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        custom = message.get("custom")
        if isinstance(custom, dict) and custom.get("type") == "knowledge_answer":
            await self._send_message(recipient_id, custom)
        elif message.get("text") and not any(message.get(part) for part in NON_TEXT_PARTS):
            event = {"text": message["text"], "response": message.get("utter_action")}
            await self._send_message(recipient_id, event)
        else:
            await super().send_response(recipient_id, message)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        payload = json_message.get("data") if set(json_message) <= {"data", "room"} else json_message
        await self._send_message(json_message.get("room") or recipient_id, payload)


class KnowledgeSocketIOInput(SocketIOInput):
    """Rasa's socket.io input channel with its session room joined and its replies sent whole."""

    def get_output_channel(self) -> Optional[SocketIOOutput]:
        if self.sio is None:
            return super().get_output_channel()
        return KnowledgeSocketIOOutput(self.sio, self.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = super().blueprint(on_new_message)
        sio = self.sio  # Rasa's handlers for these two events are replaced (one handler per event)

        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            data = data if isinstance(data, dict) else {}
            if not data.get("session_id"):
                data["session_id"] = uuid.uuid4().hex
            if self.session_persistence:
                joined = sio.enter_room(sid, data["session_id"], namespace=self.namespace)
                if inspect.isawaitable(joined):  # a coroutine in python-socketio >= 5.10
                    await joined
            await sio.emit("session_confirm", data["session_id"], room=sid, namespace=self.namespace)
            logger.debug(f"User {sid} joined session {data['session_id']}.")

        async def handle_message(sid: Text, data: Dict) -> None:
            output_channel = KnowledgeSocketIOOutput(sio, self.bot_message_evt)
            if self.session_persistence:
                if not data.get("session_id"):
                    rasa.shared.utils.io.raise_warning(
                        "A message without a valid session_id was received. This message will be "
                        "ignored. Make sure to set a proper session id using the `session_request` "
                        "socketIO event."
                    )
                    return
                sender_id = data["session_id"]
            else:
                sender_id = sid
            metadata = data.get(self.metadata_key, {})
            if isinstance(metadata, Text):
                metadata = json.loads(metadata)
            message = UserMessage(
                data.get("message", ""), output_channel, sender_id, input_channel=self.name(), metadata=metadata
            )
            await on_new_message(message)

        sio.on("session_request", session_request, namespace=self.namespace)
        sio.on(self.user_message_evt, handle_message, namespace=self.namespace)
        return blueprint
