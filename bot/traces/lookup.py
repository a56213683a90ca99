"""Ids a reviewer types: a turn by (a unique prefix of) its id, and the item ids of a label.

    resolve_turn_id(sql, "6b99aed7")            # '6b99aed79862411aa93173d94e68308e'
    unknown_item_ids(sql, "knowledge", ["faq-en-refund", "typo"], turn)   # ['typo']
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine as SqlEngine

from bot.db.schema import chunks, turns

__all__ = ["TurnNotFound", "resolve_turn_id", "unknown_item_ids", "ids_in_trace"]

#: The shortest prefix looked up as a prefix (shorter ones must be whole ids).
MIN_PREFIX = 4


class TurnNotFound(LookupError):
    """No turn, or more than one, has the id (prefix) given; the message says which."""


def resolve_turn_id(sql: SqlEngine, given: str) -> str:
    """The whole id of the one turn whose id is ``given`` or starts with it (as in ``git show``)."""
    given = given.strip()
    with sql.connect() as conn:
        if conn.execute(select(turns.c.turn_id).where(turns.c.turn_id == given)).first():
            return given
        if len(given) < MIN_PREFIX:
            raise TurnNotFound(f"no turn {given!r} in the traces")
        found = [
            row.turn_id
            for row in conn.execute(
                select(turns.c.turn_id).where(turns.c.turn_id.startswith(given, autoescape=True)).limit(6)
            )
        ]
    if not found:
        raise TurnNotFound(f"no turn {given!r} in the traces (see `bot traces list`)")
    if len(found) > 1:
        more = ", ..." if len(found) > 5 else ""
        raise TurnNotFound(f"{given!r} starts several turn ids ({', '.join(found[:5])}{more}): give more of it")
    return found[0]


def ids_in_trace(turn: Mapping[str, Any]) -> set[str]:
    """Every item id and doc id a turn's trace saw (fused hits and each route's hits)."""
    seen: set[str] = set()
    hit_lists = [turn.get("hits") or []] + list((turn.get("routes") or {}).values())
    for hits in hit_lists:
        for hit in hits:
            seen.update(value for value in (hit.get("item_id"), hit.get("doc")) if value)
    return seen


def unknown_item_ids(
    sql: SqlEngine, collection: str, ids: Sequence[str], turn: Mapping[str, Any] | None = None
) -> list[str]:
    """The ``ids`` that name nothing an evaluation can match: neither an item id nor a source
    of ``collection`` (the ingestion manifest), nor an item or doc id in the ``turn``'s trace.

    Returns [] when the manifest knows no chunk of ``collection`` (nothing to check against).
    """
    wanted = [item for item in dict.fromkeys(ids) if item not in (ids_in_trace(turn) if turn else set())]
    if not wanted:
        return []
    with sql.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(chunks).where(chunks.c.collection == collection))
        if not stored.scalar():
            return []
        rows = conn.execute(
            select(chunks.c.item_id, chunks.c.source)
            .where(chunks.c.collection == collection)
            .where(or_(chunks.c.item_id.in_(wanted), chunks.c.source.in_(wanted)))
            .distinct()
        )
        known = set(_flatten((row.item_id, row.source) for row in rows))
    return [item for item in wanted if item not in known]


def _flatten(pairs: Iterable[tuple[str, str]]) -> Iterable[str]:
    for pair in pairs:
        yield from pair
