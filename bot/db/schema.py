"""The tables, as the latest migration leaves them."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, SmallInteger, String, Table, Text

__all__ = ["metadata", "collections", "documents", "chunks", "migrations", "feedback"]

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
