"""The output guard end to end: `rasa run` with the trained model and the action server on the
demo knowledge, its LLM a named fault-injecting stand-in (tests/guard/llm_standin.py) that
writes a price no passage holds. The REST reply, the widget's live stream and the trace all
show the answer downgraded to its sources, and the trace names the failing token."""

from __future__ import annotations

import json
import re
import threading

import httpx
import pytest
from sqlalchemy import select

from assistant_project import copy_assistant_project, free_port, running_assistant
from bot.config import load_settings
from bot.db import connect
from bot.db.schema import turns
from llm_standin import LLMStandIn

INVENTED = "进阶版年付只要 ¥99，永久有效 [1]。"
QUESTION = "进阶版年付多少钱？"


@pytest.fixture(scope="module")
def stack(rasa_model, tmp_path_factory):
    with LLMStandIn(INVENTED) as llm:
        action_port, rasa_port = free_port(), free_port()
        root = copy_assistant_project(tmp_path_factory.mktemp("downgrade"), action_port)
        endpoints = root / "endpoints.yml"
        endpoints.write_text(re.sub(r"(?m)^  url:\s*$", f"  url: {llm.url}", endpoints.read_text("utf-8")), "utf-8")
        settings = load_settings(root)
        assert settings.llm.url == llm.url
        with running_assistant(settings, rasa_model, action_port=action_port, rasa_port=rasa_port):
            yield settings, f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook", f"http://127.0.0.1:{action_port}", llm


def test_an_answer_with_a_number_no_passage_holds_is_shown_as_its_sources(stack):
    settings, rest, actions, llm = stack
    session = httpx.post(f"{actions}/knowledge/session").json()
    events: list[dict] = []
    listening = threading.Event()

    def listen():  # the widget's live stream of this conversation
        url = f"{actions}/knowledge/stream/{session['conversation_id']}"
        with httpx.stream("GET", url, params={"key": session["key"]}, timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith(": listening"):
                    listening.set()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] in ("done", "error"):
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert listening.wait(30)
    reply = httpx.post(rest, json={"sender": session["conversation_id"], "message": QUESTION}, timeout=300).json()
    listener.join(60)
    assert llm.requests, "the stand-in was never asked"

    # The REST reply: sources only, with the plain notice; the invented price is not in it.
    text = "\n".join(m.get("text", "") for m in reply)
    answer = next(m["custom"] for m in reply if isinstance(m.get("custom"), dict))
    assert answer["level"] == "sources_only" and "资料里找不到" in answer["notice"], answer
    assert "¥99" not in text and "资料里找不到" in text and answer["sources"], text
    # The widget: the invented text streamed, then the final event replaced it.
    streamed = "".join(e.get("text", "") for e in events if e["type"] == "delta")
    assert "99" in streamed
    done = events[-1]
    assert done["type"] == "done" and done["level"] == "sources_only" and "¥99" not in done["text"]
    # The trace: downgraded by the output guard, naming the token.
    sql = connect(settings.sql.url, settings.root)
    for _ in range(50):  # the trace writer is asynchronous
        with sql.connect() as conn:
            row = conn.execute(select(turns).where(turns.c.turn_id == answer["turn_id"])).mappings().first()
        if row:
            break
        threading.Event().wait(0.2)
    assert row and row["guard"] == "downgraded" and row["level"] == "sources_only"
    assert row["guard_reason"]["layer"] == "output" and "¥99" in row["guard_reason"]["reason"]
    assert "永久有效" in row["guard_reason"]["reason"]
