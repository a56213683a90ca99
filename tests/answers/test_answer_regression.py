"""The answer regression set for the demo knowledge (bench/answers/demo_knowledge.jsonl: 50
answerable questions in Chinese and English with the facts each answer must state, 6 that must
be refused) answered by the real local LLM (session fixture ``llm_server``) through
``bot eval --answers`` on a copy of this project, against floors a CI run holds; a copy whose
answer prompts tell the model to talk about something else fails them; the LLM judge runs
against the same server.

Floors: three runs on this 2-core CPU gave answered 0.70 / 0.72 / 0.72, all facts 0.66 / 0.69 /
0.69, cites expected 0.83 / 0.89 / 0.86, grounded 1.0, refused 1.0 (one run under a load of 18,
one idle); each floor sits about 0.2 below. Idle, the module takes about 3.5 minutes (vLLM's
start, 40 s of ingestion, 56 answers 8 at a time, 16 broken ones, 9 judged).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant_project import REPO, use_llm_server
from bot.answer_eval import Judge, QuestionResult, evaluate_answers, read_answer_queries, summarize
from bot.answer_eval.judge import judge_client
from bot.cli import cli
from bot.config import load_settings
from bot.llm.prompts import Prompts
from kb_project import copy_project
from vllm_server import SERVED_NAME

QUESTIONS = REPO / "bench" / "answers" / "demo_knowledge.jsonl"
WORKERS = 8
JUDGED = 8  # answers the judge grades
#: Each rate at least this (measured: see the module docstring).
FLOORS = {
    "answered_rate": 0.5,  # answerable questions answered by the LLM
    "facts_all": 0.45,  # answered questions that state every required fact
    "cites_expected": 0.65,  # answered questions citing an item that holds the answer
    "grounded": 0.85,  # answered questions whose numbers, names, links are in the cited passages
    "refused_rate": 0.8,  # must-refuse questions not answered
}

BROKEN_PROMPT = """\
{% block system -%}
You are a weather reporter. Whatever the user writes, reply with two sentences about today's weather
on Mars (dust, cold, wind). Never mention the context, the question or any number from it.
{%- endblock %}
{% block user -%}
{{ question }}
{%- endblock %}
"""


def below_floors(summary: dict) -> dict[str, float | None]:
    """The floors a summary misses: name -> its value."""
    return {name: summary[name] for name, floor in FLOORS.items() if summary[name] is None or summary[name] < floor}


def demo_project(root: Path, llm) -> Path:
    """This project's settings and knowledge in ``root``, answering with the session's vLLM."""
    root.mkdir(parents=True)
    for name in ("bot.yml", "endpoints.yml", "knowledge"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, root / name)
    (root / "models").symlink_to(REPO / "models")  # the tokenizer for prompt budgets
    use_llm_server(root, llm)
    endpoints = root / "endpoints.yml"  # a loaded CI machine may keep a queued request waiting
    endpoints.write_text(endpoints.read_text("utf-8").replace("read_timeout: 60 ", "read_timeout: 300 "), "utf-8")
    assert load_settings(root).llm.read_timeout == 300
    return root


@pytest.fixture(scope="module")
def evaluated(llm_server, tmp_path_factory, figures):
    """``bot eval --answers --json`` on the demo set; the project (its eval collection now
    ingested) and the printed summary."""
    root = demo_project(tmp_path_factory.mktemp("answers") / "demo", llm_server)
    output = root / "report"
    result = CliRunner().invoke(
        cli,
        ["--root", str(root), "eval", "--answers", "--knowledge", str(root / "knowledge"),
         "--queries", str(QUESTIONS), "--workers", str(WORKERS), "--output", str(output), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    summary = data["sets"]["all"]
    figures["answer regression (demo knowledge)"] = ", ".join(
        f"{name} {summary[name]}" for name in (*FLOORS, "latency_p50", "latency_p95")
    )
    return root, data


def test_demo_answers_hold_the_floors(evaluated):
    root, data = evaluated
    summary = data["sets"]["all"]
    assert summary["n_answerable"] == 50 and summary["n_refuse"] == 6
    assert summary["errors"] == 0, "the LLM failed on some questions (timeouts?): see answers.jsonl"
    assert below_floors(summary) == {}, f"answers got worse: {summary}"
    files = {kind: Path(path) for kind, path in data["files"].items()}
    rows = [json.loads(line) for line in files["jsonl"].read_text("utf-8").splitlines()]
    assert [row["query"] for row in rows] == [q.query for q in read_answer_queries([QUESTIONS])]
    answered = [row for row in rows if row["outcome"] == "answered"]
    assert all(row["cited_passages"] for row in answered if row["citations"])
    html = files["html"].read_text("utf-8")
    assert html.count("<article") == len(rows) and "<script" not in html
    assert json.loads(files["summary"].read_text("utf-8"))["sets"]["all"] == summary


def test_a_broken_answer_prompt_fails_the_floors(evaluated, tmp_path, llm_server):
    root, _ = evaluated
    broken = copy_project(root, tmp_path / "broken")
    prompts = broken / "prompts"
    prompts.mkdir()
    for language in ("en", "zh"):
        (prompts / f"answer.{language}.j2").write_text(BROKEN_PROMPT, "utf-8")
        (prompts / f"cautious.{language}.j2").write_text(BROKEN_PROMPT, "utf-8")
    bot_yml = broken / "bot.yml"
    bot_yml.write_text(bot_yml.read_text("utf-8").replace("\ngeneration:\n", "\ngeneration:\n  prompts_dir: prompts\n", 1))
    settings = load_settings(broken)
    assert settings.generation.prompts_dir == prompts
    report = evaluate_answers(settings, broken / "knowledge", [QUESTIONS], workers=WORKERS, limit=16, seed=5,
                              progress=False)  # fmt: skip
    summary = report.summary()["all"]
    missed = below_floors(summary)
    assert "facts_all" in missed or "answered_rate" in missed, summary
    answered = [r for r in report.results if r.answered]
    assert any("mars" in r.answer.lower() or "火星" in r.answer for r in answered) or not answered


def test_the_judge_grades_answers_on_a_real_llm(evaluated, llm_server, tmp_path):
    root, data = evaluated
    judged = copy_project(root, tmp_path / "judged")
    endpoints = judged / "endpoints.yml"
    endpoints.write_text(
        endpoints.read_text("utf-8") + f"judge:\n  url: {llm_server.url}\n  model: {SERVED_NAME}\n  read_timeout: 300\n",
        "utf-8",
    )
    names = {f.name for f in fields(QuestionResult)}
    rows = [json.loads(line) for line in Path(data["files"]["jsonl"]).read_text("utf-8").splitlines()]
    results = [QuestionResult(**{k: v for k, v in row.items() if k in names}) for row in rows]
    graded = [r for r in results if r.auto_correct is not None][:JUDGED]
    wrong = replace(graded[0], answer="I do not know, please ask somebody else.")

    async def grade():
        client = judge_client(load_settings(judged))
        try:
            judge = Judge(client, Prompts(load_settings(judged).generation.prompts_dir))
            await judge.grade_all(graded, workers=WORKERS)
            return await judge.grade(wrong)
        finally:
            await client.aclose()

    verdict_on_wrong = asyncio.run(grade())
    verdicts = [r.judge for r in graded if r.judge is not None]
    assert len(verdicts) >= len(graded) / 2, "the judge gave a verdict on most answers"
    assert all(isinstance(v["correct"], bool) for v in verdicts)
    summary = summarize(graded)
    assert summary["judged"] == len(verdicts) and summary["judge_agreement"] is not None
    assert verdict_on_wrong is None or verdict_on_wrong["correct"] is False
