"""Numbered, append-only schema migrations. Never edit one that has shipped: add the next.

Each migration is a function taking a connection; :func:`migrate` runs those not yet
recorded in the ``migrations`` table, in order, each in its own transaction.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, Engine

from bot.db import schema

__all__ = ["MIGRATIONS", "migrate"]


def m001_manifest(conn: Connection) -> None:
    """The ingestion manifest: collections, documents, chunks."""
    for table in (schema.collections, schema.documents, schema.chunks):
        table.create(conn, checkfirst=True)


def m002_feedback(conn: Connection) -> None:
    """Users' feedback on answered turns."""
    schema.feedback.create(conn, checkfirst=True)


def m003_traces(conn: Connection) -> None:
    """Per-turn traces and reviewers' labels."""
    for table in (schema.turns, schema.turn_labels):
        table.create(conn, checkfirst=True)


def m004_guard(conn: Connection) -> None:
    """Each turn's guard decision and its reason (bot/guard)."""
    present = {column["name"] for column in inspect(conn).get_columns("turns")}
    for column in (schema.turns.c.guard, schema.turns.c.guard_reason):
        if column.name not in present:  # a database made by m003 after this column was added has it
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE turns ADD COLUMN {column.name} {kind}")
    indexes = {index["name"] for index in inspect(conn).get_indexes("turns")}
    for index in schema.turns.indexes:
        if index.name not in indexes and "guard" in index.columns:
            index.create(conn)


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("m001_manifest", m001_manifest),
    ("m002_feedback", m002_feedback),
    ("m003_traces", m003_traces),
    ("m004_guard", m004_guard),
]


def migrate(engine: Engine) -> list[str]:
    """Bring the database up to date; returns the names of the migrations applied."""
    schema.migrations.create(engine, checkfirst=True)
    with engine.connect() as conn:
        done = set(conn.execute(select(schema.migrations.c.name)).scalars())
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with engine.begin() as conn:
            step(conn)
            conn.execute(
                schema.migrations.insert().values(name=name, applied_at=datetime.now(timezone.utc).replace(tzinfo=None))
            )
        applied.append(name)
    return applied
