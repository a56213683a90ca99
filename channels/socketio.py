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
- **Doors** (:mod:`channels.limits`): engine.io refuses payloads over ``serving.max_body_kb``
  (without Rasa's HTTP API, Sanic reads no larger body at all). A ``user_uttered`` message
  that is malformed (not an object, a non-string message, no session id), over
  ``generation.max_question_chars``, or over the rates of ``serving.conversation_per_minute``
  (a session) or ``serving.client_per_minute`` (a client address) never reaches the bot: the
  sender's socket gets a ``bot_uttered`` ``{"text": plain sentence, "error": key, "response":
  null}`` in its language. A handler never raises.

Websockets do not work on this stack (Sanic 21.12's websocket on Python 3.11: "Passing
coroutines is forbidden"): clients use long-polling (the widget does by default).
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint

from bot.doors import sender_language
from channels.limits import Refusal, channel_limits, limit_request_bodies, valid_conversation_id

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
        blueprint.listener("before_server_start")(limit_request_bodies)
        sio = self.sio  # Rasa's handlers for these two events are replaced (one handler per event)
        sio.eio.max_http_buffer_size = channel_limits().max_body_bytes

        async def session_request(sid: Text, *args: Any) -> None:
            data = args[0] if len(args) == 1 and isinstance(args[0], dict) else {}
            if not valid_conversation_id(data.get("session_id")):
                data["session_id"] = uuid.uuid4().hex
            if self.session_persistence:
                joined = sio.enter_room(sid, data["session_id"], namespace=self.namespace)
                if inspect.isawaitable(joined):  # a coroutine in python-socketio >= 5.10
                    await joined
            await sio.emit("session_confirm", data["session_id"], room=sid, namespace=self.namespace)
            logger.debug(f"User {sid} joined session {data['session_id']}.")

        async def handle_message(sid: Text, *args: Any) -> None:
            try:  # one argument, as the widget sends; none or several are refused like a non-object
                message = await self._admit(sid, args[0] if len(args) == 1 else list(args))
                if message is not None:
                    text, sender_id, metadata = message
                    output_channel = KnowledgeSocketIOOutput(sio, self.bot_message_evt)
                    await on_new_message(
                        UserMessage(text, output_channel, sender_id, input_channel=self.name(), metadata=metadata)
                    )
            except Exception:  # never into python-socketio: the cause goes to the log
                logger.exception(f"A socket.io message of {sid} was not handled.")

        sio.on("session_request", session_request, namespace=self.namespace)
        sio.on(self.user_message_evt, handle_message, namespace=self.namespace)
        return blueprint

    async def _admit(self, sid: Text, data: Any) -> Optional[tuple[Text, Text, Dict[Text, Any]]]:
        """The message's text, conversation id and metadata; None when it was refused (the
        refusal is sent to ``sid``)."""
        limits = channel_limits()
        environ = self.sio.get_environ(sid, namespace=self.namespace) or {}
        refused = limits.client(getattr(environ.get("sanic.request"), "ip", "") or environ.get("REMOTE_ADDR", ""))
        text = data.get("message") if isinstance(data, dict) else None
        if not refused and isinstance(data, dict):
            sender_id = data.get("session_id") if self.session_persistence else sid
            metadata = _metadata(data.get(self.metadata_key, {}))
            refused = (
                limits.message(text)
                or limits.sender(sender_id, reason="session_id")
                or limits.metadata(metadata)
                or limits.conversation(sender_id)
            )
        elif not refused:
            refused = limits.bad_request("not_object")
        if not refused:
            return text, sender_id, metadata
        language = sender_language(text, {"accept-language": environ.get("HTTP_ACCEPT_LANGUAGE", "")})
        await self._refuse(sid, refused, language)
        return None

    async def _refuse(self, sid: Text, refused: Refusal, language: Text) -> None:
        logger.info(f"A socket.io message of {sid} was refused: {refused.error}.")
        event = {"text": refused.sentence(language), "error": refused.error, "response": None}
        await self.sio.emit(self.bot_message_evt, event, room=sid, namespace=self.namespace)


def _metadata(metadata: Any) -> Any:
    """Metadata as sent, or decoded from a JSON string (Rasa accepts both); a string that is
    not JSON is returned as is (and refused as not an object)."""
    if isinstance(metadata, str):
        try:
            return json.loads(metadata)
        except ValueError:
            return metadata
    return metadata
