"""`bot ask` against the real vLLM server: streamed answers with citations, and the chat mode."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from bot.cli import cli

ANSWER_ALL = "decision:\n  thresholds:\n    dense: {answer: 0.0, caution: 0.0, sources: 0.0}\n"


def test_ask_answers_in_both_languages_with_citations(llm_server, project_for):
    root = project_for(llm_server.url, ANSWER_ALL)
    runner = CliRunner()
    zh = runner.invoke(cli, ["--root", str(root), "ask", "年付套餐可以退款吗？"])
    assert zh.exit_code == 0, zh.output + zh.stderr
    assert re.search(r"\[\d\]", zh.stdout) and "来源：" in zh.stdout and "faq.csv" in zh.stdout
    assert "decision: answer" in zh.stderr
    en = runner.invoke(cli, ["--root", str(root), "ask", "--json", "Can I export all my notes?"])
    assert en.exit_code == 0, en.output + en.stderr
    answer = json.loads(en.stdout)
    assert answer["level"] == "answer" and answer["citations"]
    assert answer["citations"][0]["item_id"] == "faq-en-export"


def test_chat_mode_keeps_history_until_cleared(llm_server, project_for):
    root = project_for(llm_server.url, ANSWER_ALL)
    pen = "How do I pair the smart pen with my phone?"
    chat = f"{pen}\nHow long does its battery last?\n/clear\n{pen}\n/quit\n"
    result = CliRunner().invoke(cli, ["--root", str(root), "ask", "--json"], input=chat)
    assert result.exit_code == 0, result.output + result.stderr
    answers = _json_objects(result.stdout)
    assert len(answers) == 3 and "history cleared" in result.stderr
    # the rewriter (an LLM call) runs only when there is history: turn 2, not turns 1 and 3
    rewrite = [a["timings"]["rewrite"] for a in answers]
    assert rewrite[1] > 0.05 and rewrite[0] < 0.01 and rewrite[2] < 0.01


def _json_objects(text: str) -> list[dict]:
    decoder, objects, position = json.JSONDecoder(), [], 0
    while (start := text.find("{", position)) != -1:
        obj, position = decoder.raw_decode(text, start)
        objects.append(obj)
    return objects
