"""Open a database by SQLAlchemy URL, migrated to the current schema."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import ManifestError

__all__ = ["connect"]


def connect(url: str, root: Path | None = None) -> Engine:
    """An engine for ``url`` with the schema migrated; a relative SQLite path is resolved against ``root``."""
    return _connect(_resolve(url, root))


@lru_cache(maxsize=None)
def _connect(url: str) -> Engine:
    from bot.db.migrations import migrate

    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
        migrate(engine)
    except SQLAlchemyError as exc:
        raise ManifestError(
            f"cannot open the database {make_url(url).render_as_string(hide_password=True)}: {exc}; "
            "check sql.url in endpoints.yml"
        ) from exc
    return engine


def _resolve(url: str, root: Path | None) -> str:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute() and root is not None:
            path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(parsed.set(database=str(path)))
    return url
