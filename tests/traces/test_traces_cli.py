"""`bot traces` on a real project: real turns through ``Engine.answer_async`` (no LLM:
``generation.use_llm: false``), traces written by the real writer to SQLite, then the CLI
through click's CliRunner: list, show, label, export, purge, and the round trip of exported
labels into `bot calibrate` and `bot eval`."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

import kb_project as kb
from bot.cli import cli
from bot.config import Thresholds, load_settings
from bot.db import connect
from bot.db.schema import turn_labels, turns
from bot.decide import Level
from bot.feedback import record_feedback
from bot.generate import Answer, Citation
from bot.traces import TurnContext, canned_row, knowledge_row

#: Questions asked in the traced project, with the items that answer them ([] = must refuse).
ANSWERABLE = {
    "How do I reset my password?": ["faq-en-password"],
    "年付套餐可以退款吗？": ["faq-zh-refund"],
    "How do I pair the smart pen with my phone?": ["faq-en-pen-pair"],
    "智能笔充一次电能用多久": ["faq-zh-pen-battery"],
    "付款后多久发货": [kb.SHIPPING],  # a passage without an id of its own: named by its document
}
MUST_REFUSE = ["what is the capital of France", "明天北京的天气怎么样", "Who won the football world cup in 2018?"]
REPEATED = "How do I reset my password?"  # asked twice, in two conversations
CANNED = "I want my money back right now"
CITED = "Can I export all my notes?"  # answered "by an LLM" with a citation, then thumbs up


def letters_id() -> str:
    """A uuid spelled with letters only. The default uuid hex ids are not used here: trace
    redaction masks runs of 11+ digits in every stored string, ids included, so about 3.5% of
    default turn ids are stored altered (reported); tests must not flake on it."""
    return uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


def run(root: Path, *args: str):
    return CliRunner().invoke(cli, ["--root", str(root), *args])


def ok(result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def clean_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def turn_ids(root: Path, *args: str) -> dict[str, list[str]]:
    """question -> turn ids (newest first) of the turns `bot traces list --json` shows."""
    found: dict[str, list[str]] = {}
    for row in json.loads(ok(run(root, "traces", "list", "--json", "--limit", "100", *args))):
        found.setdefault(row["question"], []).append(row["turn_id"])
    return found


@pytest.fixture(scope="module")
def traced_template(tmp_path_factory) -> Path:
    """An ingested project with real traced turns: answerable and must-refuse questions, a
    repeated question, a canned turn, thumbs down and up, and one LLM-style cited answer."""
    template, _ = kb.ingested_template(tmp_path_factory)
    root = kb.copy_project(template, tmp_path_factory.mktemp("traces") / "project")
    with (root / "bot.yml").open("a", encoding="utf-8") as handle:
        handle.write("generation:\n  use_llm: false\n")
    with kb.engine_for(root) as engine:
        for number, question in enumerate([*ANSWERABLE, *MUST_REFUSE, REPEATED]):
            context = TurnContext(
                conversation_id=f"user-{number % 2}", channel="rest", intent="ask_knowledge", intent_confidence=0.91,
                turn_id=letters_id(),
            )
            answer = engine.run(engine.answer_async(question, context=context))
            assert answer.turn_id == context.turn_id
            if question == MUST_REFUSE[0]:
                record_feedback(engine.sql, context.conversation_id, answer.turn_id, -1, "not what I asked")
            if question == "年付套餐可以退款吗？":
                record_feedback(engine.sql, context.conversation_id, answer.turn_id, +1)  # sources-only: not exported
        canned = TurnContext(conversation_id="user-9", channel="rest", intent="request_refund", intent_confidence=0.97,
                             turn_id=letters_id())
        # The canned row is written in a batch of its own: TraceWriter inserts a batch with one
        # executemany, which fails when a canned row follows a knowledge row in it (reported).
        assert engine.traces.flush(30)
        engine.trace(lambda: canned_row(canned, response="utter_refund_request", language="en", question=CANNED))
        assert engine.traces.flush(30)
        cited = cited_turn(engine, CITED)
        record_feedback(engine.sql, cited.conversation_id, cited.turn_id, +1)
        assert engine.traces.flush(30)
        assert engine.traces.written == len(ANSWERABLE) + len(MUST_REFUSE) + 3 and engine.traces.lost == 0
    return root


def cited_turn(engine, question: str) -> TurnContext:
    """Trace a turn as an LLM would have answered it: real retrieval and decision, an answer
    citing the best hit (no LLM runs in these tests; the trace row is built as the engine does)."""
    retrieval = engine.retrieve(question)
    decision = engine.decide(retrieval)
    best = retrieval.hits[0]
    citation = Citation(1, best.heading, best.source, best.source, best.item_id, best.doc)
    answer = Answer(question, question, "en", decision, Level.ANSWER, text="Yes: Settings, then Export [1].",
                    citations=[citation], timings={"total": 0.05})
    context = TurnContext(conversation_id="user-7", channel="rest", intent="ask_knowledge", turn_id=letters_id())
    engine.trace(lambda: knowledge_row(context, answer, retrieval))
    return context


@pytest.fixture
def project(traced_template, tmp_path) -> Path:
    """A fresh copy of the traced project: tests label, purge and calibrate their own."""
    return kb.copy_project(traced_template, tmp_path / "project")


# ---------------------------------------------------------------- list


def test_list_shows_every_turn_newest_first(project):
    out = ok(run(project, "traces", "list"))
    lines = out.splitlines()
    assert lines[0].split() == ["time", "turn", "kind", "level", "score", "feedback", "verdict", "question"]
    assert len(lines) == 1 + len(ANSWERABLE) + len(MUST_REFUSE) + 3
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  [a-p]{12}  knowledge  answer ", lines[1])
    assert lines[1].endswith(CITED) and lines[2].endswith(CANNED)  # the last turns first
    assert re.search(r"  canned     -\s+-\s+-\s+-\s+I want my money back", lines[2])  # no level, score, feedback
    refused = next(line for line in lines if "capital of France" in line)
    assert re.search(r"knowledge\s+refuse\s+0\.\d{3}\s+-1\s+-\s+what is the capital", refused)
    assert re.search(r"sources_only\s+1\.000\s+\+1\s+-\s+年付套餐", out)


def test_list_json_has_full_ids_and_utc_times(project):
    rows = json.loads(ok(run(project, "traces", "list", "--json")))
    assert len(rows) == len(ANSWERABLE) + len(MUST_REFUSE) + 3
    assert all(len(row["turn_id"]) == 32 and row["created_at"].endswith("Z") for row in rows)
    assert {row["kind"] for row in rows} == {"knowledge", "canned"}


def test_list_filters(project):
    def questions(*args: str) -> set[str]:
        return set(turn_ids(project, *args))

    assert questions("--level", "refuse") == set(MUST_REFUSE)
    assert questions("--level", "sources_only") == set(ANSWERABLE)
    assert questions("--kind", "canned") == {CANNED}
    assert questions("--intent", "request_refund") == {CANNED}
    assert questions("--feedback", "negative") == {MUST_REFUSE[0]}
    assert questions("--feedback", "positive") == {"年付套餐可以退款吗？", CITED}
    assert questions("--feedback", "any") == {MUST_REFUSE[0], "年付套餐可以退款吗？", CITED}
    assert questions("--text", "pen") == {"How do I pair the smart pen with my phone?"}
    assert questions("--conversation", "user-9") == {CANNED}
    assert questions("--max-score", "0.85") <= set(MUST_REFUSE) and questions("--max-score", "0.85")
    assert questions("--since", "1h") == questions() == questions("--since", "2000-01-01", "--until", "2100-01-01")
    assert questions("--until", "2000-01-01") == set()
    assert questions("--since", datetime.now().strftime("%Y-%m-%d"), "--until", datetime.now().strftime("%Y-%m-%d")) == questions()
    assert questions("--unlabelled") == questions() and questions("--labelled") == set()
    assert len(json.loads(ok(run(project, "traces", "list", "--json", "--limit", "2")))) == 2
    limited = run(project, "traces", "list", "--limit", "2")
    assert len(ok(limited).splitlines()) == 3 and "--limit N shows more" in limited.stderr


def test_list_with_no_match_and_a_bad_date(project):
    empty = run(project, "traces", "list", "--text", "nothing like this")
    assert ok(empty) == "" and "no turns match" in empty.stderr
    bad = run(project, "traces", "list", "--since", "last tuesday")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr and "Traceback" not in bad.output


# ---------------------------------------------------------------- show


def test_show_prints_the_whole_trace(project):
    turn_id = turn_ids(project)[MUST_REFUSE[0]][0]
    out = ok(run(project, "traces", "show", turn_id[:8]))  # a unique prefix is enough
    assert f"turn {turn_id}  (knowledge)" in out
    assert "conversation user-1, channel rest" in out and "intent:       ask_knowledge (0.910)" in out
    assert "question:     what is the capital of France" in out
    assert re.search(r"decision:     refuse on dense 0\.\d{4}  \(thresholds: answer >= [\d.]+, caution >= [\d.]+, sources >= [\d.]+\)", out)
    hits = out.split("fused hits (5)\n")[1].split("\n\n")[0].splitlines()
    assert hits[0].split()[:3] == ["#", "fused", "q_dense"] and "item" in hits[0] and "source" in hits[0]
    assert len(hits) == 6 and hits[1].split()[0] == "1" and "knowledge/faq/faq.csv" in hits[1]
    assert "each route's own ranking" in out and re.search(r"question_dense\s+faq-en-\S+ 0\.\d{3}", out)
    assert "prompt: none (no LLM call)" in out
    assert "Sorry, I could not find anything" in out  # the refusal text given
    assert re.search(r"timings \(ms\):.*embed [\d.]+.*search [\d.]+.*\| total [\d.]+", out)
    assert re.search(r"feedback\n  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  -1  \"not what I asked\"", out)
    assert "labels: none" in out


def test_show_a_sources_only_turn_and_a_canned_one(project):
    ids = turn_ids(project)
    out = ok(run(project, "traces", "show", ids["付款后多久发货"][0]))
    assert "delivered:    sources_only" in out and kb.SHIPPING in out
    assert "[1]" in out.split("\nanswer\n")[1]
    canned = ok(run(project, "traces", "show", ids[CANNED][0]))
    assert "(canned)" in canned and "response:     utter_refund_request" in canned and "fused hits" not in canned


def test_show_json_is_the_stored_trace(project):
    turn_id = turn_ids(project)[CITED][0]
    turn = json.loads(ok(run(project, "traces", "show", "--json", turn_id)))
    assert turn["turn_id"] == turn_id and turn["level"] == "answer"
    assert turn["citations"][0]["item_id"] == "faq-en-export"
    assert turn["decision"]["thresholds"] and turn["hits"][0]["route_scores"]
    assert set(turn["routes"]) >= {"question_dense", "content_dense"}
    assert turn["feedback"][0]["rating"] == 1 and turn["labels"] == []


def test_show_an_unknown_id_is_a_clean_error(project):
    clean_error(run(project, "traces", "show", "0123456789abcdef"), "no turn '0123456789abcdef'")
    clean_error(run(project, "traces", "show", "a"), "no turn 'a'")  # too short to be a prefix
    clean_error(run(project, "traces", "show", "ab"), "no turn 'ab'")


# ---------------------------------------------------------------- label


def test_label_answer_and_refuse(project):
    ids = turn_ids(project)
    out = ok(run(project, "traces", "label", ids["年付套餐可以退款吗？"][0][:10], "--answer", "faq-zh-refund"))
    assert out.startswith(f"labelled turn {ids['年付套餐可以退款吗？'][0]}: answer with faq-zh-refund")
    ok(run(project, "traces", "label", ids[MUST_REFUSE[1]][0], "--refuse", "--note", "weather is out of scope"))
    again = ok(run(project, "traces", "label", ids[MUST_REFUSE[1]][0], "--answer", "faq-en-export"))
    assert "it had the verdict 'refuse'" in again
    assert set(turn_ids(project, "--labelled")) == {"年付套餐可以退款吗？", MUST_REFUSE[1]}
    assert MUST_REFUSE[1] not in turn_ids(project, "--unlabelled")
    shown = ok(run(project, "traces", "show", ids[MUST_REFUSE[1]][0]))
    assert re.search(r"labels \(latest last\)\n.*refuse  \"weather is out of scope\"\n.*answer faq-en-export", shown)
    listed = next(line for line in ok(run(project, "traces", "list")).splitlines() if "年付套餐" in line)
    assert re.search(r"\+1\s+answer\s+年付套餐", listed)


def test_label_accepts_document_paths_and_ids_the_trace_saw(project):
    ids = turn_ids(project)
    ok(run(project, "traces", "label", ids["付款后多久发货"][0], "--answer", kb.SHIPPING, "--answer", kb.GUIDE))


def test_invalid_labels(project):
    turn_id = turn_ids(project)[MUST_REFUSE[0]][0]
    for args in ([], ["--answer", "faq-en-password", "--refuse"], ["--note", "only a note"]):
        result = run(project, "traces", "label", turn_id, *args)
        assert result.exit_code == 2 and "give either --answer ITEM_ID" in result.stderr
    clean_error(run(project, "traces", "label", turn_id, "--answer", "faq-en-pasword"),
                "not in the knowledge", "faq-en-pasword", "--force")
    clean_error(run(project, "traces", "label", "feedfacefeedface", "--refuse"), "no turn 'feedfacefeedface'")
    assert turn_ids(project, "--labelled") == {}
    ok(run(project, "traces", "label", turn_id, "--answer", "an-item-of-tomorrow", "--force"))
    assert set(turn_ids(project, "--labelled")) == {MUST_REFUSE[0]}


# ---------------------------------------------------------------- export and the round trip


def test_export_with_nothing_labelled_is_a_clean_error(project, tmp_path):
    clean_error(run(project, "traces", "export", "-o", str(tmp_path / "out.jsonl")), "no labelled turns", "bot traces label")
    assert not (tmp_path / "out.jsonl").exists()


def label_all(project: Path) -> dict[str, list[str]]:
    ids = turn_ids(project)
    assert len(ids[REPEATED]) == 2
    for question, expected in ANSWERABLE.items():
        for turn_id in ids[question]:  # the repeated question is labelled on both its turns
            ok(run(project, "traces", "label", turn_id, *(arg for item in expected for arg in ("--answer", item))))
    for question in MUST_REFUSE:
        ok(run(project, "traces", "label", ids[question][0], "--refuse"))
    return ids


def test_export_to_stdout_one_line_per_question(project):
    ids = label_all(project)
    result = run(project, "traces", "export")
    records = [json.loads(line) for line in ok(result).splitlines()]
    assert {r["query"]: r["expected"] for r in records} == {**ANSWERABLE, **{q: [] for q in MUST_REFUSE}}
    assert all(r["source"] == "label" for r in records)
    repeated = next(r for r in records if r["query"] == REPEATED)
    assert repeated["turn_id"] == ids[REPEATED][-1]  # the question's most recent label (on its older turn)
    assert "exported 8 questions: 5 answerable, 3 must-refuse; 1 repeated questions merged" in result.stderr


def test_export_from_feedback_adds_cited_thumbs_up_answers(project, tmp_path):
    label_all(project)
    ok(run(project, "traces", "export", "-o", str(tmp_path / "labels.jsonl")))
    assert CITED not in (tmp_path / "labels.jsonl").read_text("utf-8")
    result = run(project, "traces", "export", "--from-feedback", "-o", str(tmp_path / "all.jsonl"))
    ok(result)
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text("utf-8").splitlines()]
    from_feedback = [r for r in records if r["source"] == "feedback"]
    # the sources-only refund turn had a thumbs up too, but it is labelled (and sources-only)
    assert [(r["query"], r["expected"]) for r in from_feedback] == [(CITED, ["faq-en-export"])]
    assert "1 answerable from thumbs-up feedback" in result.stderr


THRESHOLDS_LINE = re.compile(r"dense thresholds: answer >= ([\d.]+), caution >= ([\d.]+), sources >= ([\d.]+)")


def test_exported_labels_calibrate_the_thresholds_and_evaluate(project, tmp_path):
    label_all(project)
    exported = tmp_path / "reviewed.jsonl"
    ok(run(project, "traces", "export", "-o", str(exported)))
    before = load_settings(project).decision.dense

    calibrated = run(project, "calibrate", "--knowledge", str(project / "knowledge"), "--queries", str(exported),
                     "--plot", str(tmp_path / "calibration.png"))
    out = ok(calibrated)
    assert re.search(r"answered \d/5 answerable, refused \d/3 must-refuse", out), out
    answer, caution, sources = map(float, THRESHOLDS_LINE.search(out).groups())
    assert f"written to {project / 'bot.yml'} (decision.thresholds.dense)" in out
    after = load_settings(project).decision.dense
    assert after == Thresholds(answer=answer, caution=caution, sources=sources) != before
    assert "use_llm: false" in (project / "bot.yml").read_text("utf-8")  # the rest of bot.yml is kept

    metrics = json.loads(ok(run(project, "eval", "--knowledge", str(project / "knowledge"), "--queries", str(exported), "--json")))
    assert (metrics["n_answerable"], metrics["n_refuse"]) == (5, 3)
    assert metrics["hit_at_5"] >= 0.8 and metrics["answered_rate"] >= 0.8


# ---------------------------------------------------------------- purge


def test_purge_deletes_old_turns_with_their_labels(project):
    ids = turn_ids(project)
    old = ids[MUST_REFUSE[2]][0]
    ok(run(project, "traces", "label", old, "--refuse"))
    sql = connect(load_settings(project).sql.url, project)
    with sql.begin() as conn:  # as if asked 40 days ago
        conn.execute(update(turns).where(turns.c.turn_id == old).values(created_at=datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=40)))
    assert "deleted 0 turns older than 90 days" in ok(run(project, "traces", "purge"))  # traces.retention_days
    assert re.match(r"deleted 1 turns older than 30 days \(before \d{4}-", ok(run(project, "traces", "purge", "--older-than", "30")))
    assert MUST_REFUSE[2] not in turn_ids(project)
    with sql.connect() as conn:
        assert conn.execute(select(turn_labels).where(turn_labels.c.turn_id == old)).first() is None
    clean_error(run(project, "traces", "show", old), "no turn")


def test_purge_without_a_retention_asks_for_days(project):
    with (project / "bot.yml").open("a", encoding="utf-8") as handle:
        handle.write("traces:\n  retention_days: 0\n")
    clean_error(run(project, "traces", "purge"), "traces.retention_days is 0", "--older-than DAYS")
