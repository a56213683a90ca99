"""The bad-case review page (bot/review, actions/review.py) on real traces.

A small ingested project answers real questions through ``Engine.answer_async`` without an LLM
(``generation.use_llm: false``), so some turns are refused and others get sources only; the
trace writer stores them in SQLite. The fast tests render the pages from that database and
check the token logic; the browser test starts a real action server (``rasa run actions``
with this project's rasa-sdk plugin) and drives Debian's Chromium through Playwright.
"""

from __future__ import annotations

import json
import shutil
import time
from urllib.parse import quote
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from bs4 import BeautifulSoup

from assistant_project import REPO, free_port
from bot.assistant import action_server, engine_ready
from bot.config import load_settings
from bot.db import connect
from bot.feedback import record_feedback
from bot.generate import Answer, Citation
from bot.review import (
    COOKIE,
    ROOT,
    Access,
    LabelError,
    check_access,
    export_jsonl,
    login_page,
    message_page,
    parse_filter,
    session_value,
    submit_label,
    token_matches,
    turn_page,
    turns_page,
)
from bot.traces import TurnContext, canned_row, knowledge_row, list_turns
from kb_project import copy_project, engine_for, ingested_template

TOKEN = "review-token-for-tests"
CHROMIUM = Path("/usr/bin/chromium")

#: Appended to the test project's bot.yml: no LLM, and the review token from the environment
#: (the line bot.yml ships with).
REVIEW_SETTINGS = """
generation:
  use_llm: false
traces:
  review_token: ${BOT_REVIEW_TOKEN:-}
"""

#: Real questions and what the default thresholds (answer 0.91, caution 0.9, sources 0.87) make of them.
BAD_REFUSAL = "Does the export include attachments?"  # refused, though faq-en-export answers it
TRUE_REFUSAL = "What is the weather on Mars?"  # refused, rightly
SOURCES = "Can I export all my notes?"  # answerable: sources only (no LLM)
CHINESE = "智能笔充一次电能用多久？"  # answerable: sources only, with negative feedback below
HOSTILE = "<script>alert('x')</script> Is there a dark mode?"
ODD_ID = "odd[1]&x=<y>"  # a turn id that must be quoted in links and routes
LLM_QUESTION = "How do I pair the smart pen with my phone?"
CANNED_QUESTION = "How do I reset my password?"


@dataclass
class Traced:
    """A project whose SQL database holds real traces (its engine closed), and the turn ids."""

    root: Path
    ids: dict[str, str]


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Traced:
    template, _ = ingested_template(tmp_path_factory)
    root = copy_project(template, tmp_path_factory.mktemp("review") / "traced")
    (root / "bot.yml").write_text((root / "bot.yml").read_text("utf-8") + REVIEW_SETTINGS, "utf-8")
    with engine_for(root) as engine:
        assert engine.settings.generation.use_llm is False
        for number, question in enumerate((TRUE_REFUSAL, BAD_REFUSAL, SOURCES, CHINESE, HOSTILE)):
            context = TurnContext(
                conversation_id=f"user-{number}", channel="rest", intent="ask_knowledge", intent_confidence=0.93,
                **({"turn_id": ODD_ID} if question == HOSTILE else {}),
            )
            engine.run(engine.answer_async(question, context=context))
        trace_llm_turn(engine)
        # Flushed before the canned turn: the writer cannot insert a batch that mixes the two
        # kinds of rows (different columns), see the report.
        assert engine.traces.flush(30)
        canned = TurnContext(
            conversation_id="user-c", channel="socketio", intent="account_security", intent_confidence=0.88
        )
        engine.trace(
            lambda: canned_row(canned, response="utter_account_security", language="en", question=CANNED_QUESTION)
        )
        assert engine.traces.flush(30)
        # The ids as stored (the redactor may mask digit runs of a uuid as a card or phone number).
        ids = {row["question"]: row["turn_id"] for row in list_turns(engine.sql, limit=100)}
        assert len(ids) == 7
        record_feedback(engine.sql, "user-3", ids[CHINESE], -1, "没回答我的问题")
    return Traced(root, ids)


def trace_llm_turn(engine) -> None:
    """A turn as the LLM path records it, from real parts (retrieval, decision, the built-in
    prompt templates); only the answer text and its link are written here (no LLM runs)."""
    retrieval = engine.retrieve(LLM_QUESTION)
    decision = engine.decide(retrieval)
    passages = engine.generator.passages(list(retrieval.hits[:3]))
    prompts = engine.prompts
    prompt = prompts.chat(
        "answer", "en", passages=passages, question=LLM_QUESTION,
        assistant=prompts.message("assistant", "en"), decline=prompts.message("decline", "en"),
    )  # fmt: skip
    best = passages[0].hit
    answer = Answer(
        question=LLM_QUESTION, query=LLM_QUESTION, language="en", decision=decision, level=decision.level,
        text="Turn on Bluetooth, then hold the pen button for 3 seconds [1].",
        citations=[Citation(1, best.heading, best.source, "https://help.example.com/pen?topic=pair&lang=en",
                            best.item_id, best.doc)],
        prompt=prompt, model="qwen2.5-coder-0.5b", prompt_tokens=812, completion_tokens=19,
        timings={**retrieval.timings, "generate": 0.8125, "total": 0.9},
    )  # fmt: skip
    context = TurnContext(conversation_id="user-llm", channel="rest", intent="ask_knowledge", intent_confidence=0.99)
    engine.trace(lambda: knowledge_row(context, answer, retrieval))


@pytest.fixture
def sql(traced, tmp_path):
    """The traces' database, in a copy of the project of its own (tests label turns)."""
    root = copy_project(traced.root, tmp_path / "project")
    return connect(load_settings(root).sql.url, root)


def turn_url(turn_id: str) -> str:
    return f"{ROOT}/turns/{quote(turn_id, safe='')}"


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def listed(html: str) -> list[str]:
    """The questions linked from a turn list."""
    return [link.get_text() for link in soup(html).select("table.turns a")]


# -- the list ---------------------------------------------------------------------------------


def test_the_list_shows_every_turn_newest_first_with_links(sql, traced):
    page = soup(turns_page(sql, {}))
    links = page.select("table.turns a")
    assert [a.get_text() for a in links][-2:] == [BAD_REFUSAL, TRUE_REFUSAL]  # oldest last
    assert len(links) == len(traced.ids)
    hrefs = {a["href"] for a in links}
    assert turn_url(traced.ids[BAD_REFUSAL]) in hrefs
    assert f"{ROOT}/turns/odd%5B1%5D%26x%3D%3Cy%3E" in hrefs and traced.ids[HOSTILE] == ODD_ID
    assert page.find("a", href=f"{ROOT}/export.jsonl") is not None


def test_filters_select_turns(sql, traced):
    assert sorted(listed(turns_page(sql, {"level": ["refuse"]}))) == sorted([BAD_REFUSAL, TRUE_REFUSAL, HOSTILE])
    assert listed(turns_page(sql, {"level": "sources_only", "text": "export"})) == [SOURCES]
    assert listed(turns_page(sql, {"feedback": ["negative"]})) == [CHINESE]
    assert listed(turns_page(sql, {"feedback": ["positive"]})) == []
    assert listed(turns_page(sql, {"intent": ["account_security"]})) == [CANNED_QUESTION]
    assert listed(turns_page(sql, {"kind": ["canned"]})) == [CANNED_QUESTION]
    low = listed(turns_page(sql, {"max_score": ["0.8"]}))
    assert TRUE_REFUSAL in low and SOURCES not in low
    assert listed(turns_page(sql, {"since": ["2999-01-01"]})) == []
    assert len(listed(turns_page(sql, {"until": [time.strftime("%Y-%m-%d", time.gmtime())]}))) == len(traced.ids)
    submit_label(sql, traced.ids[TRUE_REFUSAL], {"verdict": ["refuse"]})
    assert listed(turns_page(sql, {"labelled": ["yes"]})) == [TRUE_REFUSAL]
    assert TRUE_REFUSAL not in listed(turns_page(sql, {"labelled": ["no"]}))


def test_the_filter_form_keeps_its_values_and_bad_values_are_reported(sql):
    page = soup(turns_page(sql, {"level": ["refuse"], "max_score": ["lots"], "since": ["yesterday"], "page": ["x"]}))
    assert page.select_one("select[name=level] option[selected]")["value"] == "refuse"
    errors = " ".join(p.get_text() for p in page.select("p.error"))
    assert "max score must be a number" in errors and "YYYY-MM-DD" in errors
    query = parse_filter({"level": ["refuse"], "max_score": ["lots"], "page": ["x"]})
    assert query.where.level == "refuse" and query.where.max_score is None and query.page == 1


@pytest.mark.parametrize(
    "args",
    [
        {"page": ["1" + "0" * 21]},  # was "Python int too large" from SQL
        {"page": ["-1"]},
        {"page": ["\u00b2"]},  # a digit to str.isdigit, not to int()
        {"max_score": ["nan"]},
        {"max_score": ["1e999"]},
        {"until": ["9999-12-31"]},  # the day after it does not exist
        {"text": ["dark\x00mode"]},  # PostgreSQL refuses a NUL
    ],
)
def test_absurd_query_values_are_ignored_and_reported(sql, args):
    query = parse_filter(args)
    assert query.errors and query.page == 1
    assert query.where == parse_filter({}).where
    assert soup(turns_page(sql, args)).select("p.error")


def test_pages_link_to_each_other(sql):
    query = parse_filter({"level": ["refuse"], "page": ["2"]})
    assert query.page == 2 and query.offset == 50
    page = soup(turns_page(sql, {"level": ["refuse"], "page": ["2"]}))
    assert page.select("table.turns") == [] and "No turns match" in page.get_text()
    assert page.find("a", rel="prev")["href"] == f"{ROOT}?level=refuse&page=1"
    assert page.find("a", rel="next") is None


def test_text_from_users_is_escaped(sql, traced):
    html = turns_page(sql, {"text": ["dark mode"]})
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script>" not in turn_page(sql, traced.ids[HOSTILE])


# -- one turn ---------------------------------------------------------------------------------


def test_a_refused_turn_shows_its_whole_trace(sql, traced):
    page = soup(turn_page(sql, traced.ids[BAD_REFUSAL]))
    text = page.get_text(" ", strip=True)
    assert page.h1.get_text() == BAD_REFUSAL
    meta = {dt.get_text(): dt.find_next_sibling("dd").get_text(" ", strip=True) for dt in page.select("dl.meta dt")}
    assert meta["Rewritten query"] == BAD_REFUSAL
    assert meta["Intent"] == "ask_knowledge (0.930)" and meta["Channel"] == "rest" and meta["Language"] == "en"
    assert meta["Filters"] == "none" and meta["The user got"] == "refuse" and meta["Signal"] == "dense"
    assert float(meta["Score"]) < 0.87
    thresholds = [td.get_text() for td in page.select("#decision ~ dl td")][:3]
    assert thresholds == ["0.9100", "0.9000", "0.8700"]

    hits = page.select_one("table.hits")
    headers = [th.get_text() for th in hits.select("th")]
    assert headers == ["Rank", "Item id", "Title", "Fused", "question_dense", "question_sparse",
                       "content_dense", "content_sparse"]  # fmt: skip
    first = [td.get_text(" ", strip=True) for td in hits.select("tbody tr")[0].select("td")]
    assert first[:2] == ["1", "faq-en-export"] and first[2].startswith("Can I export all my notes?")
    assert float(first[4]) == pytest.approx(float(meta["Score"]), abs=1e-4)  # the best dense similarity

    routes = [s.find("strong").get_text() for s in page.select("details summary")]
    assert "question_dense" in routes and "content_dense" in routes
    assert "No prompt" in text and "No citations" in text and "could not find anything" in text
    assert {row.td.get_text() for row in page.select("#timings ~ table tbody tr")} >= {"embed", "search", "total"}
    assert "Not labelled yet" in text and "No feedback" in text

    form = page.select_one("form.label-form")
    assert form["method"] == "post" and form["action"] == f"{turn_url(traced.ids[BAD_REFUSAL])}/label"
    boxes = [box["value"] for box in form.select("input[name=expected]")]
    assert boxes[0] == "faq-en-export" and len(boxes) == len(set(boxes))
    assert {r["value"] for r in form.select("input[name=verdict]")} == {"answer", "refuse"}
    assert form.select_one("input[name=expected_other]") and form.select_one("textarea[name=note]")


def test_an_llm_turn_shows_its_prompt_and_cited_links(sql, traced):
    html = turn_page(sql, traced.ids[LLM_QUESTION])
    page = soup(html)
    messages = page.select("div.message")
    assert [m.strong.get_text() for m in messages][0] == "system" and messages[-1].strong.get_text() == "user"
    assert "<context>" in messages[0].pre.get_text() and "&lt;context&gt;" in html  # shown, escaped
    assert LLM_QUESTION in messages[-1].pre.get_text()
    link = page.select_one("ol.citations a")
    assert link["href"] == "https://help.example.com/pen?topic=pair&lang=en" and "&amp;lang" in html
    assert page.select_one("ol.citations li")["value"] == "1"
    assert "qwen2.5-coder-0.5b · 812 prompt + 19 completion tokens" in page.get_text()
    timings = {row.td.get_text(): row.select("td")[1].get_text() for row in page.select("#timings ~ table tbody tr")}
    assert timings["generate"] == "812.5" and timings["total"] == "900.0"


def test_a_canned_turn_and_feedback(sql, traced):
    page = soup(turn_page(sql, traced.ids[CANNED_QUESTION]))
    assert "utter_account_security" in page.get_text() and page.select("form.label-form") == []
    page = soup(turn_page(sql, traced.ids[CHINESE]))
    feedback = page.select_one("#feedback + ul").get_text()
    assert "−1" in feedback and "没回答我的问题" in feedback
    assert turn_page(sql, "no-such-turn") is None


# -- labels and the export --------------------------------------------------------------------


def test_labels_show_on_the_turn_and_feed_the_export(sql, traced):
    bad, mars = traced.ids[BAD_REFUSAL], traced.ids[TRUE_REFUSAL]
    assert export_jsonl(sql) == ""
    form = {
        "verdict": ["answer"],
        "expected": ["faq-en-export"],
        "expected_other": ["doc-a，doc-b, faq-en-export"],  # Chinese or Latin commas; repeats dropped
        "note": ["the FAQ says so"],
    }
    submit_label(sql, bad, form)
    submit_label(sql, mars, {"verdict": "refuse", "expected_other": [""], "note": [""]})
    lines = [json.loads(line) for line in export_jsonl(sql).splitlines()]
    assert lines == [
        {"query": BAD_REFUSAL, "expected": ["faq-en-export", "doc-a", "doc-b"], "turn_id": bad},
        {"query": TRUE_REFUSAL, "expected": [], "turn_id": mars},
    ]
    labels = soup(turn_page(sql, bad)).select("ul.labels li")
    assert "should have answered with faq-en-export , doc-a , doc-b" in labels[0].get_text(" ", strip=True)
    assert "the FAQ says so" in labels[0].get_text()
    submit_label(sql, bad, {"verdict": ["refuse"]})  # the latest verdict is the one exported
    assert json.loads(export_jsonl(sql).splitlines()[-1]) == {"query": BAD_REFUSAL, "expected": [], "turn_id": bad}
    assert "(latest: exported)" in soup(turn_page(sql, bad)).select("ul.labels li")[-1].get_text()


def test_an_incomplete_label_form_is_refused_and_shown_again(sql, traced):
    bad = traced.ids[BAD_REFUSAL]
    with pytest.raises(LabelError, match="choose a verdict"):
        submit_label(sql, bad, {"expected": ["faq-en-export"]})
    with pytest.raises(LabelError, match="at least one item id"):
        submit_label(sql, bad, {"verdict": ["answer"], "expected_other": [" , "]})
    with pytest.raises(LabelError, match="takes no item ids"):
        submit_label(sql, bad, {"verdict": ["refuse"], "expected": ["faq-en-export"]})
    with pytest.raises(KeyError):
        submit_label(sql, "no-such-turn", {"verdict": ["refuse"]})
    assert export_jsonl(sql) == ""
    form = {"verdict": ["answer"], "expected": ["faq-en-export"], "expected_other": ["x<y"], "note": ["n"]}
    page = soup(turn_page(sql, bad, error="needs an id", form=form))
    assert page.select_one("form.label-form p.error").get_text() == "needs an id"
    assert page.select_one("input[name=verdict][value=answer]").has_attr("checked")
    assert page.select_one("input[name=expected][value=faq-en-export]").has_attr("checked")
    assert page.select_one("input[name=expected_other]")["value"] == "x<y"


# -- who may see it ---------------------------------------------------------------------------


def test_access_needs_the_token_by_header_or_session_cookie():
    assert check_access(None, authorization=f"Bearer {TOKEN}", cookie=None) is Access.CLOSED
    assert check_access("", authorization="Bearer ", cookie="") is Access.CLOSED
    assert check_access(TOKEN, authorization=f"Bearer {TOKEN}", cookie=None) is Access.GRANTED
    assert check_access(TOKEN, authorization=f"bearer  {TOKEN} ", cookie=None) is Access.GRANTED
    assert check_access(TOKEN, authorization=None, cookie=session_value(TOKEN)) is Access.GRANTED
    assert check_access(TOKEN, authorization=None, cookie=None) is Access.DENIED
    assert check_access(TOKEN, authorization="Bearer wrong", cookie=session_value("wrong")) is Access.DENIED
    assert check_access(TOKEN, authorization=f"Basic {TOKEN}", cookie=TOKEN) is Access.DENIED
    assert check_access(TOKEN, authorization="Bearer ü", cookie="ü") is Access.DENIED
    assert TOKEN not in session_value(TOKEN) and len(session_value(TOKEN)) == 64
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, None) and not token_matches(TOKEN, TOKEN + "x")


def test_login_and_message_pages():
    page = soup(login_page(error="<b>wrong</b>", next_url=f"{ROOT}/turns/abc"))
    assert page.select_one("p.error").get_text() == "<b>wrong</b>"
    assert page.select_one("input[name=next]")["value"] == f"{ROOT}/turns/abc"
    assert page.select_one("input[name=token]")["type"] == "password"
    assert page.select("header form") == []  # no sign-out button before signing in
    assert "BOT_REVIEW_TOKEN" in soup(message_page("Closed", "set BOT_REVIEW_TOKEN")).get_text()


# -- in the browser ---------------------------------------------------------------------------


def server_project(traced: Traced, root: Path) -> Path:
    """A copy of the traced project with the action server's code (actions/ and the plugin)."""
    copy_project(traced.root, root)
    for name in ("actions", "rasa_sdk_plugins"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def servers(traced, tmp_path, monkeypatch):
    """Two real action servers on copies of the traced project: one with the review token in
    its environment (read through bot.yml), one without; their base URLs."""
    open_port, closed_port = free_port(), free_port()
    monkeypatch.setenv("BOT_REVIEW_TOKEN", TOKEN)
    opened = action_server(load_settings(server_project(traced, tmp_path / "open")), port=open_port, use_llm=False)
    monkeypatch.delenv("BOT_REVIEW_TOKEN")
    closed = action_server(load_settings(server_project(traced, tmp_path / "closed")), port=closed_port, use_llm=False)
    try:
        opened.start()
        closed.start()
        opened.wait_ready(engine_ready(open_port), 120)
        closed.wait_ready(lambda client: client.get(f"http://127.0.0.1:{closed_port}{ROOT}").status_code == 503, 60)
        yield f"http://127.0.0.1:{open_port}", f"http://127.0.0.1:{closed_port}"
    finally:
        closed.stop()
        opened.stop()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_review_in_headless_chromium(servers, traced, tmp_path, figures):
    from playwright.sync_api import expect, sync_playwright

    base, closed = servers
    for path in (ROOT, f"{ROOT}/login", f"{ROOT}/export.jsonl"):  # no token configured: closed
        response = httpx.get(closed + path, follow_redirects=False)
        assert response.status_code == 503 and "BOT_REVIEW_TOKEN" in response.text, path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
            page = context.new_page()

            # Without the token: the login page, and the export is refused.
            page.goto(ROOT)
            assert page.url == f"{base}{ROOT}/login?next=%2Freview"
            expect(page.locator("h1")).to_have_text("Sign in to the review page")
            assert context.request.get(f"{ROOT}/export.jsonl").status == 401
            assert context.request.get(turn_url(traced.ids[BAD_REFUSAL]), max_redirects=0).status == 303

            # A wrong token: an error, with 401.
            page.get_by_label("Review token").fill("not-the-token")
            with page.expect_response(f"{base}{ROOT}/login") as login:
                page.get_by_role("button", name="Sign in").click()
            assert login.value.status == 401
            expect(page.get_by_role("alert")).to_have_text("That is not the review token.")

            # The token: the turn list, and a session cookie the page's scripts cannot read.
            page.get_by_label("Review token").fill(TOKEN)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("h1")).to_have_text("Turns")
            [cookie] = [c for c in context.cookies() if c["name"] == COOKIE]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
            assert page.evaluate("document.cookie") == ""

            # Filter for refused turns, open the wrongly refused one.
            page.get_by_label("Level").select_option("refuse")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url("**/review?level=refuse*")
            levels = page.locator("table.turns tbody tr td:nth-child(3)").all_inner_texts()
            assert levels and set(levels) == {"refuse"}
            page.get_by_role("link", name=BAD_REFUSAL).click()
            expect(page.locator("h1")).to_have_text(BAD_REFUSAL)
            expect(page.locator("table.hits tbody tr").first).to_contain_text("faq-en-export")

            # Label it "should have answered with" the FAQ item; the label shows on the page.
            page.get_by_label("Should have answered with").check()
            page.locator("input[name=expected][value=faq-en-export]").check()
            page.get_by_label("Note", exact=True).fill("faq-en-export answers it; the dense score fell short")
            page.get_by_role("button", name="Save label").click()
            page.wait_for_url(f"**{turn_url(traced.ids[BAD_REFUSAL])}#labels")
            expect(page.locator("ul.labels li")).to_contain_text("should have answered with faq-en-export")
            screenshot = tmp_path / "review-turn.png"
            page.screenshot(path=str(screenshot), full_page=True)
            figures["review page screenshot"] = str(screenshot)

            # The export, fetched by the page itself (the session cookie goes along).
            export = page.evaluate(
                """async () => {
                    const response = await fetch('/review/export.jsonl');
                    const type = response.headers.get('content-type');
                    return {status: response.status, type: type, body: await response.text()};
                }"""
            )
            assert export["status"] == 200 and export["type"].startswith("application/x-ndjson")
            rows = [json.loads(line) for line in export["body"].splitlines()]
            assert {"query": BAD_REFUSAL, "expected": ["faq-en-export"], "turn_id": traced.ids[BAD_REFUSAL]} in rows

            # Signing out closes the page again.
            page.get_by_role("button", name="Sign out").click()
            expect(page.locator("h1")).to_have_text("Sign in to the review page")
            page.goto(ROOT)
            assert "/review/login" in page.url
        finally:
            browser.close()

    # An API client uses the header instead of the cookie.
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.get(f"{base}{ROOT}/export.jsonl", headers=headers)
    assert response.status_code == 200 and BAD_REFUSAL in response.text
    assert httpx.get(f"{base}{ROOT}/export.jsonl", headers={"Authorization": "Bearer nope"}).status_code == 401
    label_url = f"{base}{turn_url(traced.ids[TRUE_REFUSAL])}/label"
    response = httpx.post(label_url, data={"verdict": "refuse"})  # no token: to the login page
    assert response.status_code == 303 and response.headers["location"].startswith(f"{ROOT}/login")
    response = httpx.post(label_url, data={"verdict": "maybe"}, headers=headers)
    assert response.status_code == 400 and "choose a verdict" in response.text
    assert httpx.get(f"{base}{ROOT}/turns/no-such-turn", headers=headers).status_code == 404
    response = httpx.get(f"{base}{turn_url(ODD_ID)}", headers=headers)
    assert response.status_code == 200 and soup(response.text).h1.get_text() == HOSTILE
    response = httpx.post(f"{base}{turn_url(ODD_ID)}/label", data={"verdict": "refuse"}, headers=headers)
    assert response.status_code == 303 and response.headers["location"] == f"{turn_url(ODD_ID)}#labels"
