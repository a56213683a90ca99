"""The pieces of `bot eval --answers` that need no LLM: scoring, reading question files,
aggregation, the report files and the judge's reply parsing."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup

from bot.answer_eval import AnswerReport, QuestionResult, parse_verdict, read_answer_queries, sample, summary_table
from bot.answer_eval.grounded import Evidence, unsupported_claims
from bot.answer_eval.judge import judge_client
from bot.answer_eval.metrics import contains, facts_found, normalize, token_f1, tokens
from bot.answer_eval.report import html_report, write_outputs
from bot.config import load_settings
from bot.errors import ConfigError
from bot.llm.prompts import Prompts
from kb_project import write_project


def test_normalisation_and_tokens():
    assert normalize("Ｕｓ＄３５．９９ [2]，全额退款！") == "us3599全额退款"
    assert tokens("The pen's light, 蓝色 [1]") == ["pen", "s", "light", "蓝", "色"]


def test_containment_and_f1_for_chinese_and_english():
    assert contains("审核通过后 1–3 个工作日到账[1]。", ["1-3个工作日"])
    assert not contains("5–10 个工作日", ["1-3个工作日"])
    assert token_f1("约只有8公斤重", ["约只有8公斤重"]) == 1.0
    assert token_f1("体重约8公斤", ["约只有8公斤重"]) == pytest.approx(10 / 13)  # 5 shared of 6 and 7 characters
    assert token_f1("It takes 90 minutes", ["about 90 minutes via USB-C", "1.5 hours"]) == pytest.approx(0.4)  # 2 of 4, 2 of 6
    assert token_f1("anything", []) == 0.0


def test_facts_accept_alternatives():
    answer = "Hold the power button for 3 seconds until the light flashes blue [1]."
    assert facts_found(answer, ["3 seconds", ["blinks blue", "flashes blue"], ["红色", "red"]]) == [True, True, False]


def test_groundedness_uses_the_output_guard():
    passage = Evidence("Plus costs US$3.99 per month or US$35.99 per year. Billing: billing@nimbus.example")
    assert unsupported_claims("Plus is US$35.99 a year [1]", [passage]) == []
    assert unsupported_claims("Plus is US$29.99 a year, ask sales@nimbus.example [1]", [passage]) == [
        "us$29.99", "sales@nimbus.example"
    ]  # fmt: skip
    assert unsupported_claims("It costs 168 [1]", []) == ["168"]


def test_reading_question_files(tmp_path):
    path = tmp_path / "set.jsonl"
    lines = [
        {"query": "退款多久到账？", "expected": ["faq-zh-017"], "answers": ["1–3 个工作日"], "must_include": [["1-3", "1到3"]]},
        {"query": "Capital of Australia?", "expected": []},
        {"query": "How long is the trial?", "answer": "14 days"},
        {"query": " ", "expected": ["x"], "answers": ["a public set's empty query"]},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n", "utf-8")
    skipped = []
    first, refuse, single = read_answer_queries([path], skipped)
    assert skipped == ["set.jsonl:4"]
    assert first.references == ("1–3 个工作日",) and first.must_include == (("1-3", "1到3"),) and first.answerable
    assert not refuse.answerable and single.references == ("14 days",) and single.set_name == "set"
    assert [q.query for q in sample([first, refuse, single], 2, seed=1)] == [
        q.query for q in sample([first, refuse, single], 2, seed=1)
    ]  # fmt: skip
    assert sample([first, refuse], None, seed=1) == [first, refuse]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "set.jsonl:1: not JSON"),
        ('{"question": "x"}', 'needs "query"'),
        ('{"query": "x", "answers": "14 days"}', '"answers" must be a list of texts'),
        ('{"query": "x", "must_include": [3]}', '"must_include" fact is a text or a list'),
    ],
)
def test_malformed_question_files_name_the_line(tmp_path, line, message):
    path = tmp_path / "set.jsonl"
    path.write_text(line + "\n", "utf-8")
    with pytest.raises(ConfigError, match=message):
        read_answer_queries([path])


def result(query, outcome, *, answerable=True, **fields):
    return QuestionResult(
        "demo", query, ["faq-1"] if answerable else [], ["7 天"] if answerable else [], [],
        outcome=outcome, **fields,
    )  # fmt: skip


def test_summary_rates_and_report_files(tmp_path):
    results = [
        result("q1", "answered", answer="7 天内 [1]", contains=True, f1=1.0, cites_expected=True, grounded=True,
               seconds=2.0, cited_passages=[{"number": "1", "title": "<b>Refund</b>", "text": "7 天内全额退款"}]),
        result("q2 <script>alert(1)</script>", "answered", answer="<img src=x onerror=alert(1)>", contains=False,
               f1=0.0, cites_expected=False, grounded=False, unsupported=["9"], seconds=4.0),
        result("q3", "declined", seconds=1.0),
        result("q4", "refused", answerable=False, seconds=0.1),
        result("q5", "answered", answerable=False, answer="Canberra", seconds=3.0),
    ]  # fmt: skip
    report = AnswerReport(results, model="test-model")
    summary = report.summary()["all"]
    assert summary["n_answerable"] == 3 and summary["n_refuse"] == 2
    assert summary["answered_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["declined_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["refused_rate"] == 0.5 and summary["containment"] == 0.5 and summary["grounded"] == 0.5
    assert summary["latency_p50"] == 2.0 and summary["latency_p95"] == 4.0 and summary["judge_agreement"] is None
    table = summary_table(report.summary())
    assert "answered (of answerable)" in table and "0.667" in table and "judge" not in table

    paths = write_outputs(report, tmp_path / "out")
    html = paths["html"].read_text("utf-8")
    page = BeautifulSoup(html, "html.parser")
    assert page.select("script") == [] and page.select("img") == [] and "<b>Refund</b>" not in html
    assert len(page.select("article")) == 5 and len(page.select("article.bad")) == 3
    assert "should have refused" in page.select("article")[4].get_text()
    assert [json.loads(line)["query"] for line in paths["jsonl"].read_text("utf-8").splitlines()][1].startswith("q2")
    assert html_report(report).count("<article") == 5


def test_judge_replies_and_a_missing_judge(tmp_path):
    assert parse_verdict("VERDICT: correct\nREASON: states the 7-day window.") == {
        "correct": True, "reason": "states the 7-day window."
    }  # fmt: skip
    assert parse_verdict("verdict： **Incorrect**\nreason: wrong price")["correct"] is False
    assert parse_verdict("The answer looks fine.") is None
    prompt = Prompts().chat("judge", "en", question="退款多久到账？", references=["1–3 个工作日"],
                            facts=["1-3 / 1到3"], answer="3 天 [1]")  # fmt: skip
    assert prompt.template == "judge.en.j2" and "VERDICT: correct" in prompt.messages[0]["content"]
    assert "1–3 个工作日" in prompt.messages[-1]["content"] and prompt.messages[-1]["content"].endswith("3 天 [1]")
    settings = load_settings(write_project(tmp_path / "p", knowledge=False))
    with pytest.raises(ConfigError, match="no judge configured: add to endpoints.yml"):
        judge_client(settings)
