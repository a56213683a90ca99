"""The web widget (``widget/``) in headless Chromium (Debian's, driven by Playwright) against the
real stack: vLLM on CPU with the demo model, the action server (which serves the widget, the
live answer stream and the feedback endpoint) and ``rasa run`` with the socket.io channel.
Nothing is mocked. One stack serves the whole module (vLLM takes 35-100 s to start).

The first tests need no stack: the widget's renderer (markdown, sanitizing, citations) and its
notice when the servers cannot be reached, with the files served by a plain static server.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from assistant_project import REPO, copy_assistant_project, free_port, running_assistant, use_llm_server


CHROMIUM = Path("/usr/bin/chromium")
WIDGET = REPO / "widget"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")

QUESTION_ZH = "云序智能笔充一次电能用多久？"
QUESTION_EN = "How do I pair the Nimbus Pen with my phone?"
#: Canned answers from domain.yml (utter_account_security, utter_refund_request).
CANNED_EN = ("How do I reset my password?", "To keep your account safe I can't handle account, password")
CANNED_ZH = ("我要退款", "退款由账务专员逐单审核处理")
#: utter_history_cleared (domain.yml).
CLEARED = {"en": "Conversation history cleared.", "zh": "已清空对话历史"}
#: Seconds one answer may take on a busy 2-core machine.
ANSWER_TIMEOUT = 300


# ---- browser ----


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def widget_url(base: str, **params: str) -> str:
    return f"{base}/widget/index.html?{urlencode({'open': '1', 'record': '1', **params})}"


def events(page, kind: str | None = None) -> list[dict]:
    """What the widget recorded (``recordEvents``): sends, stream events, bot messages, renders."""
    recorded = page.evaluate("window.__kbEvents || []")
    return [e for e in recorded if kind is None or e["kind"] == kind]


# ---- without a stack: rendering and an unreachable server ----


@pytest.fixture(scope="module")
def static_site():
    """``widget/`` served by a plain static HTTP server (no Rasa, no action server)."""
    handler = functools.partial(QuietHandler, directory=str(REPO))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_an_unreachable_server_is_a_visible_notice_and_the_input_stays_disabled(browser, static_site):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    page = browser.new_page()
    try:
        page.goto(widget_url(static_site, lang="en", server=dead, actions=dead))
        notice = page.locator(".kbw-notice")
        notice.filter(has_text="Cannot reach the chat server").wait_for(timeout=20_000)
        assert dead in notice.inner_text()
        assert page.locator(".kbw-input").is_disabled() and page.locator(".kbw-send").is_disabled()
        page.goto(widget_url(static_site, lang="zh", server=dead, actions=dead))
        page.locator(".kbw-notice", has_text="无法连接到聊天服务器").wait_for(timeout=20_000)
        assert page.locator(".kbw-title").inner_text() == "知识助手"
        assert page.locator(".kbw-clear").inner_text() == "清空对话"
    finally:
        page.close()


def test_answers_are_sanitized_markdown_with_citation_links(browser, static_site):
    dead = f"http://127.0.0.1:{free_port()}"
    page = browser.new_page()
    try:
        page.goto(widget_url(static_site, lang="en", server=dead, actions=dead))
        page.wait_for_function("window.KnowledgeBotWidget && window.KnowledgeBotWidget.loaded")
        page.evaluate("window.KnowledgeBotWidget.loaded.catch(() => null)")
        page.evaluate("window.__pwned = 0")
        text = "\n".join([
            "Charge it for **2 hours** [1], then pair it [2].",
            "",
            "- open *Settings*",
            "- choose `Pen` [3]",
            "",
            "```",
            "code keeps [1] as text",
            "```",
            "",
            "![logo](https://example.com/logo.png) [site](https://example.com/help) [file](knowledge/a.md)",
            "[bad](javascript:window.__pwned=1) <img src=x onerror=\"window.__pwned=2\"> <script>window.__pwned=3</script>",
            "<b onclick=\"window.__pwned=4\">bold</b> <iframe src=\"https://example.com\"></iframe>",
        ])  # fmt: skip
        message = {
            "type": "knowledge_answer", "turn_id": "t1", "text": text, "level": "cautious", "language": "en",
            "citations": [
                {"number": 1, "title": "Pen battery", "source": "faq", "link": "knowledge/faq/faq_en.xlsx", "item_id": "a", "doc": ""},
                {"number": 2, "title": "Pairing", "source": "web", "link": "https://example.com/pair", "item_id": "b", "doc": ""},
            ],
            "sources": [], "declined": False, "notice": "", "query": "q", "widened": True,
        }  # fmt: skip
        html = page.evaluate(
            """(message) => {
                const bubble = window.KnowledgeBotWidget.renderAnswer(message);
                document.querySelector('.kbw-log').appendChild(bubble);
                return bubble.outerHTML;
            }""",
            message,
        )
        page.wait_for_timeout(300)  # an injected handler would have run by now
        assert page.evaluate("window.__pwned") == 0, html
        for forbidden in ("<script", "onerror", "onclick", "javascript:", "<iframe"):
            assert forbidden not in html, (forbidden, html)
        bubble = page.locator(".kbw-log .kbw-answer")
        assert bubble.locator(".kbw-badge").inner_text() == "Cautious"
        assert bubble.locator(".kbw-body strong").inner_text() == "2 hours"
        assert bubble.locator(".kbw-body li").count() == 2 and bubble.locator(".kbw-body pre code").count() == 1
        cites = bubble.locator(".kbw-body a.kbw-cite")
        assert cites.count() == 2  # [1] and [2]; [3] has no citation, the [1] in code stays text
        first, second = cites.nth(0), cites.nth(1)
        assert first.inner_text() == "[1]" and first.get_attribute("href").startswith("#kbw-src-")
        assert second.get_attribute("href") == "https://example.com/pair" and second.get_attribute("target") == "_blank"
        assert bubble.locator(f"li{first.get_attribute('href')}").inner_text() == "[1] Pen battery — knowledge/faq/faq_en.xlsx"
        assert bubble.locator(".kbw-sources a.kbw-src-link").get_attribute("href") == "https://example.com/pair"
        site = bubble.locator(".kbw-body a", has_text="site")
        assert site.get_attribute("target") == "_blank" and "noopener" in site.get_attribute("rel")
        assert bubble.locator(".kbw-body a", has_text="file").count() == 0  # a file path is text
        assert bubble.locator(".kbw-body img").get_attribute("src") == "https://example.com/logo.png"
        assert bubble.locator(".kbw-body a", has_text="bad").count() == 0
        assert "Nothing matched the current product" in bubble.inner_text()
    finally:
        page.close()


# ---- the real stack ----


@dataclass
class Stack:
    rasa: str  # rasa run (socket.io)
    actions: str  # the action server (widget, stream, feedback)
    sql: object  # the project's SQL engine (traces, feedback)
    logs: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def stack(rasa_model, llm_server, tmp_path_factory):
    """vLLM + action server + ``rasa run`` on a copy of this project, with the widget."""
    from bot.config import load_settings
    from bot.db.engine import connect

    action_port, rasa_port = free_port(), free_port()
    root = copy_assistant_project(tmp_path_factory.mktemp("assistant"), action_port)
    shutil.copytree(WIDGET, root / "widget")  # the action server serves widget/ of its project
    use_llm_server(root, llm_server)  # the session's vLLM, shared with tests/llm
    settings = load_settings(root)
    assert settings.llm.url == llm_server.url
    with running_assistant(settings, rasa_model, action_port=action_port, rasa_port=rasa_port) as (actions, rasa):
        yield Stack(
            rasa=f"http://127.0.0.1:{rasa_port}",
            actions=f"http://127.0.0.1:{action_port}",
            sql=connect(settings.sql.url, settings.root),
            logs=[actions.log_path, rasa.log_path],
        )


def open_widget(browser, stack: Stack, language: str):
    """A fresh browser context (its own sessionStorage, so its own session id) with the widget
    open and ready (live stream listening, socket.io session confirmed)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(widget_url(stack.actions, lang=language, server=stack.rasa, actions=stack.actions))
    page.locator(".kbw-input:enabled").wait_for(timeout=60_000)
    recorded = {e["kind"] for e in events(page)}
    assert {"stream_open", "session_confirm"} <= recorded, recorded
    return context, page


def ask(page, question: str) -> None:
    page.locator(".kbw-input").fill(question)
    page.locator(".kbw-input").press("Enter")


@dataclass
class Observed:
    """One knowledge question as the page saw it."""

    page: object
    context: object
    question: str
    lengths: list[int]  # the growing bubble's text length, sampled until the final message
    turn_id: str
    session_id: str


def watch_answer(page, question: str, *, ask_it: bool = True) -> Observed:
    """Ask (unless already asked) and sample the streaming bubble's text length every ~25 ms
    until the final message replaces it."""
    if ask_it:
        ask(page, question)
    lengths: list[int] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        state = page.evaluate(
            """() => {
                const bubble = document.querySelector('.kbw-streaming .kbw-text');
                return {length: bubble ? bubble.textContent.length : null,
                        final: !!document.querySelector('.kbw-answer.kbw-final')};
            }"""
        )
        if state["final"]:
            break
        if state["length"]:
            lengths.append(state["length"])
        time.sleep(0.025)
    else:
        raise AssertionError(f"no final answer to {question!r} in {ANSWER_TIMEOUT} s; events: {events(page)}")
    final = page.locator(".kbw-answer.kbw-final").last
    return Observed(
        page=page,
        context=page.context,
        question=question,
        lengths=lengths,
        turn_id=final.get_attribute("data-turn-id"),
        session_id=page.evaluate("window.KnowledgeBotWidget.sessionId"),
    )


@pytest.fixture(scope="module")
def answers(browser, stack):
    """The Chinese and the English question, each asked in its own browser context; the pages
    stay open for the tests below."""
    observed = {}
    for language, question in (("zh", QUESTION_ZH), ("en", QUESTION_EN)):
        _, page = open_widget(browser, stack, language)
        observed[language] = watch_answer(page, question)
    yield observed
    for seen in observed.values():
        seen.context.close()


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_answer_grows_while_the_llm_writes_it(answers, language):
    seen = answers[language]
    growing = sorted(set(seen.lengths))
    assert len(growing) >= 2, f"the bubble was seen at lengths {seen.lengths} only"
    assert seen.lengths == sorted(seen.lengths), seen.lengths  # it only grows
    stream = [e for e in events(seen.page, "sse") if e.get("turn_id") == seen.turn_id]
    kinds = [e["type"] for e in stream]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("delta") >= 2, kinds
    deltas_before_done = [e for e in stream if e["type"] == "delta"]
    assert len({len("".join(d["text"] for d in deltas_before_done[: i + 1])) for i in range(len(deltas_before_done))}) >= 2
    print(f"\n{language}: bubble lengths sampled while streaming: {growing[:8]}... ({len(growing)} distinct)")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_final_message_has_citation_links_and_a_level_badge(answers, language):
    seen = answers[language]
    final = seen.page.locator(f".kbw-answer.kbw-final[data-turn-id='{seen.turn_id}']")
    assert final.get_attribute("data-via") == "rasa"  # Rasa's bot_uttered replaced the stream
    uttered = [e["message"] for e in events(seen.page, "bot_uttered")]
    assert any(m.get("type") == "knowledge_answer" and m.get("turn_id") == seen.turn_id for m in uttered), uttered
    level = final.get_attribute("data-level")
    assert level in ("answer", "cautious"), level
    labels = {"zh": {"answer": "已回答", "cautious": "谨慎回答"}, "en": {"answer": "Answered", "cautious": "Cautious"}}
    assert final.locator(".kbw-badge").inner_text() == labels[language][level]
    cites = final.locator(".kbw-body a.kbw-cite[href]")
    assert cites.count() >= 1, final.inner_html()
    assert re.fullmatch(r"\[\d+\]", cites.first.inner_text())
    assert final.locator(".kbw-sources li").count() >= 1
    body = final.locator(".kbw-body").inner_text()
    if language == "zh":
        assert re.search(r"[\u4e00-\u9fff]", body), body
    assert final.locator(".kbw-thumb").count() == 2


def test_a_screenshot_of_a_finished_answer(answers, tmp_path):
    seen = answers["zh"]
    path = tmp_path / "widget-finished-answer.png"
    seen.page.locator(".kbw-panel").screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    print(f"\nscreenshot of a finished answer: {path}")


def test_thumbs_down_is_recorded_on_the_turn(answers, stack):
    from bot.feedback import feedback_for
    from bot.traces import get_turn

    seen = answers["en"]
    final = seen.page.locator(f".kbw-answer.kbw-final[data-turn-id='{seen.turn_id}']")
    final.locator(".kbw-down").click()
    final.locator(".kbw-feedback-status", has_text="Thanks for your feedback!").wait_for(timeout=30_000)
    assert final.locator(".kbw-down").is_disabled() and final.locator(".kbw-up").is_disabled()
    rows = feedback_for(stack.sql, seen.turn_id)
    assert [(r["rating"], r["conversation_id"]) for r in rows] == [(-1, seen.session_id)], rows
    deadline = time.monotonic() + 60  # the trace is written by a background thread
    while (turn := get_turn(stack.sql, seen.turn_id)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert turn is not None, f"no trace for turn {seen.turn_id}"
    assert turn["conversation_id"] == seen.session_id and turn["channel"] == "socketio", turn["channel"]
    assert [f["rating"] for f in turn["feedback"]] == [-1]


@pytest.mark.parametrize("language, question, canned", [("en", *CANNED_EN), ("zh", *CANNED_ZH)])
def test_a_sensitive_question_shows_the_canned_answer(browser, stack, language, question, canned):
    context, page = open_widget(browser, stack, language)
    try:
        ask(page, question)
        page.locator(".kbw-canned", has_text=canned).wait_for(timeout=ANSWER_TIMEOUT * 1000)
        assert page.locator(".kbw-answer").count() == 0
        assert events(page, "sse") == []  # the knowledge action never ran: nothing streamed
        # the clear-history button: the chat is emptied and the bot confirms (clear_history
        # intent); in Chinese the refund form is waiting for an order number, and leaves
        page.locator(".kbw-clear").click()
        page.locator(".kbw-canned", has_text=CLEARED[language]).wait_for(timeout=ANSWER_TIMEOUT * 1000)
        assert page.locator(".kbw-user").count() == 0 and page.locator(".kbw-msg").count() == 1
        assert [e["text"] for e in events(page, "send")][-1] == "/clear_history"
    finally:
        context.close()


def test_clearing_while_an_answer_streams_drops_the_rest_of_it(browser, stack):
    context, page = open_widget(browser, stack, "en")
    try:
        ask(page, QUESTION_EN)
        page.wait_for_function(
            "(window.__kbEvents || []).some(e => e.kind === 'first_delta_rendered')", timeout=ANSWER_TIMEOUT * 1000
        )
        page.locator(".kbw-clear").click()
        page.locator(".kbw-canned", has_text=CLEARED["en"]).wait_for(timeout=ANSWER_TIMEOUT * 1000)
        recorded = events(page)
        cleared_at = next(i for i, e in enumerate(recorded) if e["kind"] == "send" and e["text"] == "/clear_history")
        late = [e["message"].get("type") for e in recorded[cleared_at:] if e["kind"] == "dropped"]
        assert "knowledge_answer" in late, recorded  # the answer arrived after the clear, and was dropped
        assert page.locator(".kbw-msg").count() == 1 and page.locator(".kbw-answer").count() == 0
        assert [e["message"].get("response") for e in events(page, "bot_uttered")][-1] == "utter_history_cleared"
        ask(page, CANNED_EN[0])  # after the clear, replies are shown again
        page.locator(".kbw-canned", has_text=CANNED_EN[1]).wait_for(timeout=ANSWER_TIMEOUT * 1000)
    finally:
        context.close()


def test_a_reload_draws_the_conversation_again(browser, stack):
    context, page = open_widget(browser, stack, "en")
    try:
        seen = watch_answer(page, QUESTION_EN)
        final = page.locator(f".kbw-answer.kbw-final[data-turn-id='{seen.turn_id}']")
        final.locator(".kbw-up").click()
        final.locator(".kbw-feedback-status", has_text="Thanks for your feedback!").wait_for(timeout=30_000)
        ask(page, CANNED_EN[0])
        page.locator(".kbw-canned", has_text=CANNED_EN[1]).wait_for(timeout=ANSWER_TIMEOUT * 1000)
        before = page.locator(".kbw-log").inner_text()

        page.reload()
        page.locator(".kbw-input:enabled").wait_for(timeout=60_000)
        assert page.evaluate("window.KnowledgeBotWidget.sessionId") == seen.session_id  # the same conversation
        assert page.locator(".kbw-log").inner_text() == before
        assert [u.inner_text() for u in page.locator(".kbw-user").all()] == [QUESTION_EN, CANNED_EN[0]]
        redrawn = page.locator(f".kbw-answer.kbw-final[data-turn-id='{seen.turn_id}']")
        assert redrawn.locator(".kbw-body a.kbw-cite[href]").count() >= 1 and redrawn.locator(".kbw-badge").count() == 1
        assert redrawn.locator(".kbw-up.kbw-chosen").count() == 1 and redrawn.locator(".kbw-down").is_disabled()
        assert events(page, "send") == [] and events(page, "final_rendered") == []  # drawn, not asked again

        page.locator(".kbw-clear").click()
        page.locator(".kbw-canned", has_text=CLEARED["en"]).wait_for(timeout=ANSWER_TIMEOUT * 1000)
        page.reload()
        page.locator(".kbw-input:enabled").wait_for(timeout=60_000)
        assert page.locator(".kbw-user").count() == 0 and page.locator(".kbw-answer").count() == 0
        [cleared] = page.locator(".kbw-canned").all_inner_texts()
        assert cleared.startswith(CLEARED["en"])
    finally:
        context.close()


def test_two_sessions_at_once_see_only_their_own_tokens(browser, stack):
    (context_a, page_a), (context_b, page_b) = open_widget(browser, stack, "zh"), open_widget(browser, stack, "en")
    try:
        id_a, id_b = (p.evaluate("window.KnowledgeBotWidget.sessionId") for p in (page_a, page_b))
        assert id_a != id_b
        ask(page_a, "智能笔保修多久？")
        ask(page_b, "How do I share a note?")
        seen_a = watch_answer(page_a, "", ask_it=False)
        seen_b = watch_answer(page_b, "", ask_it=False)
        streams = {}
        for name, seen in (("a", seen_a), ("b", seen_b)):
            stream = events(seen.page, "sse")
            assert {e["turn_id"] for e in stream} == {seen.turn_id}, stream  # its own turn only
            deltas = [e for e in stream if e["type"] == "delta"]
            assert len(deltas) >= 2
            final = [e for e in events(seen.page, "final_rendered") if e["turn_id"] == seen.turn_id][0]
            streams[name] = ("".join(d["text"] for d in deltas), final["text"], deltas)
        assert seen_a.turn_id != seen_b.turn_id
        (streamed_a, final_a, deltas_a), (streamed_b, final_b, deltas_b) = streams["a"], streams["b"]
        assert final_a.startswith(streamed_a.strip()[:20]) and final_b.startswith(streamed_b.strip()[:20])
        assert final_b[:40] not in streamed_a and final_a[:40] not in streamed_b
        assert re.search(r"[\u4e00-\u9fff]", streamed_a)  # the Chinese question's answer
        # the English one's (the small model may slip in a Chinese word such as 抱歉)
        assert len(re.findall(r"[A-Za-z]", streamed_b)) > 5 * len(re.findall(r"[\u4e00-\u9fff]", streamed_b))
        # the two answers were written at the same time (wall clock of each page's events)
        window_a = (deltas_a[0]["wall"], deltas_a[-1]["wall"])
        window_b = (deltas_b[0]["wall"], deltas_b[-1]["wall"])
        overlap = min(window_a[1], window_b[1]) - max(window_a[0], window_b[0])
        print(f"\nstreams: a {window_a[1] - window_a[0]:.0f} ms, b {window_b[1] - window_b[0]:.0f} ms, overlap {overlap:.0f} ms")
        assert overlap > 0, (window_a, window_b)
    finally:
        context_a.close()
        context_b.close()
