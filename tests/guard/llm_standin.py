"""A named fault-injecting LLM stand-in: an OpenAI-compatible chat server that answers every
question with a fixed text (e.g. a price no passage holds). The real model cannot be made to
invent a number on demand; this one does, so the output guard's downgrade can be seen end to end.

    with LLMStandIn("进阶版年付只要 ¥99 [1]。") as llm:
        llm.url                     # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LLMStandIn:
    """Serves ``/v1/chat/completions`` (streamed or not) and ``/v1/models`` on a free local port."""

    def __init__(self, answer: str, model: str = "standin"):
        self.answer, self.model, self.requests = answer, model, []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": standin.model, "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                standin.requests.append(body)
                if not body.get("stream"):
                    message = {"role": "assistant", "content": standin.answer}
                    self._json({"id": "x", "object": "chat.completion", "model": standin.model,
                                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in (standin.answer[: len(standin.answer) // 2], standin.answer[len(standin.answer) // 2 :]):
                    chunk = {"id": "x", "object": "chat.completion.chunk", "model": standin.model,
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {"id": "x", "object": "chat.completion.chunk", "model": standin.model,
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())

            def _json(self, data):
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> "LLMStandIn":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
