"""The review page's overview (bot/review/overview.py, GET /review/overview): charts and tables
over 240 scripted turns written through the real trace writer (tests/traffic.py). The page is
rendered from SQLite, then served by a real action server and opened in Debian's Chromium,
whose screenshot is kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from bs4 import BeautifulSoup

from assistant_project import REPO, free_port
from bot.assistant import action_server, engine_ready
from bot.config import load_settings
from bot.db import connect
from bot.review import ROOT, overview_page
from kb_project import copy_project, ingested_template
from bot.traces import Redactor, TraceWriter
from traffic import TOP_REFUSED, refused_row, write_traffic

TOKEN = "overview-token-for-tests"
CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert(1)</script> what is </svg><b>this"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """An ingested test project whose traces hold the scripted traffic (and one hostile question,
    refused four times, so it is listed)."""
    template, _ = ingested_template(tmp_path_factory)
    root = copy_project(template, tmp_path_factory.mktemp("overview") / "project")
    (root / "bot.yml").write_text(
        (root / "bot.yml").read_text("utf-8") + "traces:\n  review_token: ${BOT_REVIEW_TOKEN:-}\n", "utf-8"
    )
    sql = connect(load_settings(root).sql.url, root)
    written = write_traffic(sql)
    writer = TraceWriter(lambda: sql, Redactor({}))
    for _ in range(4):
        writer.submit(lambda: refused_row(HOSTILE))
    writer.close()
    return root, sql, written


def test_overview_page_shows_charts_and_escapes_questions(traffic):
    _, sql, _ = traffic
    html, errors = overview_page(sql, {"days": ["7"]})
    page = BeautifulSoup(html, "html.parser")
    assert errors == [] and page.h1.get_text() == "Overview"
    charts = page.select("figure svg.chart")
    assert [svg.find("title").get_text() for svg in charts] == [
        "Turns per day by level", "Turns per day by guard decision", "Thumbs up and down per day",
        "Latency per stage (ms)",
    ]  # fmt: skip
    assert all(len(svg.select("rect")) > 5 for svg in charts)
    assert page.select("script") == [] and "<script>alert" not in html
    refused = [row.select("td")[0].get_text() for row in page.select("table.refused tbody tr")]
    assert refused[0].lower().startswith("can i pay with bitcoin") and HOSTILE in refused
    link = page.select_one("table.refused a")["href"]
    assert link.startswith(f"{ROOT}?text=") and "Bitcoin" in link

    html, errors = overview_page(sql, {"days": ["10**21"]})
    assert errors and "days must be a whole number" in html and "10**21" not in html


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_overview_in_headless_chromium(traffic, tmp_path, monkeypatch, figures):
    from playwright.sync_api import expect, sync_playwright

    root, _, _ = traffic
    project = copy_project(root, tmp_path / "served")
    for name in ("actions", "rasa_sdk_plugins"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    monkeypatch.setenv("BOT_REVIEW_TOKEN", TOKEN)
    server = action_server(load_settings(project), port=port, use_llm=False)
    base = f"http://127.0.0.1:{port}"
    try:
        server.start()
        server.wait_ready(engine_ready(port), 120)
        assert httpx.get(f"{base}{ROOT}/overview", follow_redirects=False).status_code == 303  # sign in first
        headers = {"Authorization": f"Bearer {TOKEN}"}
        bad = httpx.get(f"{base}{ROOT}/overview?days=abc", headers=headers)
        assert bad.status_code == 400 and "days must be a whole number" in bad.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900},
                                              extra_http_headers=headers)  # fmt: skip
                page = context.new_page()
                violations = []
                page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else None)
                page.goto(ROOT)
                page.get_by_role("link", name="Overview").click()
                expect(page.locator("h1")).to_have_text("Overview")
                charts = page.locator("figure svg.chart")
                expect(charts).to_have_count(4)
                for index in range(4):
                    box = charts.nth(index).bounding_box()
                    assert box["width"] > 600 and box["height"] > 200, "each chart is drawn at its size"
                bars = page.locator("figure svg.chart").first.locator("rect")
                assert bars.count() > 20
                expect(page.locator("table.refused tbody tr").first).to_contain_text(TOP_REFUSED)
                page.get_by_label("Last days").fill("3")
                page.get_by_role("button", name="Show").click()
                page.wait_for_url("**/review/overview?days=3")
                expect(page.locator(".overview-totals")).to_contain_text("in the last 3 days")
                page.goto(f"{ROOT}/overview?days=10")
                screenshot = tmp_path / "review-overview.png"
                page.screenshot(path=str(screenshot), full_page=True)
                figures["review overview screenshot"] = str(screenshot)
                assert violations == [], violations
            finally:
                browser.close()
    finally:
        server.stop()
