"""SQL storage through SQLAlchemy 1.4: one engine per URL, schema kept by numbered migrations."""

from bot.db.engine import connect
from bot.db.schema import metadata

__all__ = ["connect", "metadata"]
