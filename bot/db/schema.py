"""The tables, as the latest migration leaves them."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, MetaData, SmallInteger, String, Table, Text

__all__ = ["metadata", "collections", "documents", "chunks", "migrations", "feedback", "turns", "turn_labels"]

metadata = MetaData()

migrations = Table(
    "migrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", DateTime, nullable=False),
)

#: One row per vector collection: which encoders built it.
collections = Table(
    "collections",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("dense_encoder", String(200), nullable=False),
    Column("dense_dim", Integer, nullable=False),
    Column("sparse_encoder", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

#: One row per source file: the hash of the version stored, and the last attempt's error.
documents = Table(
    "documents",
    metadata,
    Column("collection", String(200), primary_key=True),
    Column("source", String(1000), primary_key=True),
    Column("sha256", String(64)),
    Column("size", Integer),
    Column("title", Text),
    Column("n_chunks", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("updated_at", DateTime, nullable=False),
)

#: One row per stored chunk: its point id and the hash of its payload.
chunks = Table(
    "chunks",
    metadata,
    Column("collection", String(200), primary_key=True),
    Column("chunk_id", String(36), primary_key=True),
    Column("source", String(1000), nullable=False, index=True),
    Column("item_id", String(500), nullable=False),
    Column("payload_hash", String(64), nullable=False),
)

#: One row per thumbs up or down: the conversation, and the answered turn it refers to.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(200), nullable=False, index=True),
    Column("turn_id", String(64), index=True),  # None: no answer to refer to yet
    Column("rating", SmallInteger, nullable=False),  # +1 or -1
    Column("comment", Text),
    Column("created_at", DateTime, nullable=False),
)

#: One row per turn the bot answered: every stage of a knowledge turn, or the canned response
#: of a sensitive one (``kind``). Text is stored redacted (``traces.redact`` in bot.yml).
turns = Table(
    "turns",
    metadata,
    Column("turn_id", String(64), primary_key=True),
    Column("conversation_id", String(200), nullable=False, index=True),
    Column("message_id", String(200)),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # knowledge | canned
    Column("channel", String(50)),
    Column("language", String(8)),
    Column("intent", String(100), index=True),
    Column("intent_confidence", Float),
    Column("response", String(100)),  # the canned response's name
    Column("filters", JSON),  # slots used as retrieval filters, and the scope
    Column("question", Text),
    Column("query", Text),  # what retrieval ran on (the rewritten question)
    Column("routes", JSON),  # route -> [{id, item_id, doc, score}], each route's own ranking
    Column("hits", JSON),  # the fused list: rank, ids, title, source, fused and per-route scores
    Column("level", String(20), index=True),  # answer | cautious | sources_only | refuse (what the user got)
    Column("decision", JSON),  # level, signal, score, thresholds
    Column("score", Float),  # the relevance score the decision was taken on
    Column("prompt", JSON),  # template name and messages
    Column("answer", Text),
    Column("citations", JSON),
    Column("model", String(200)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("timings", JSON),  # stage -> seconds
    Column("total_ms", Float),
    Column("widened", Boolean),
    Column("declined", Boolean),
    Column("notice", Text),
    Column("error", Text),
    Column("guard", String(20), index=True),  # attack | sensitive | downgraded (bot/guard); none: passed
    Column("guard_reason", JSON),  # the verdict: decision, layer, category, reason (what matched), response
)

#: A reviewer's verdict on a turn: it should have answered with ``expected`` items, or refused.
turn_labels = Table(
    "turn_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("turn_id", String(64), nullable=False, index=True),
    Column("verdict", String(20), nullable=False),  # answer | refuse
    Column("expected", JSON),  # item ids (or doc ids) that answer the question; [] for refuse
    Column("note", Text),
    Column("created_at", DateTime, nullable=False),
)
