"""The one engine per action-server process: built on first use, off the event loop.

A build that fails (a locked store, a missing model) is not cached: the next turn tries
again, so the server keeps running and recovers once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging

from bot.config import load_settings
from bot.engine import Engine

__all__ = ["get_engine", "ready", "last_error"]

logger = logging.getLogger(__name__)

_engine: Engine | None = None
_error: str | None = None
_building = asyncio.Lock()


async def get_engine() -> Engine:
    """The process's engine, with its encoders, store, SQL and generator loaded."""
    global _engine, _error
    if _engine is None:
        async with _building:
            if _engine is None:
                try:
                    _engine = await asyncio.to_thread(_build)
                except Exception as exc:
                    _error = str(exc)
                    raise
                _error = None
    return _engine


def ready() -> bool:
    """Whether the engine is built."""
    return _engine is not None


def last_error() -> str | None:
    """Why the last build failed (None: it did not fail, or has not been tried)."""
    return _error


def _build() -> Engine:
    engine = Engine(load_settings())
    try:
        # each is built on first use: the encoders and the store, the prompts and the tokenizer,
        # the database, the guard's lexicons (a broken one fails the build, with its file named)
        for part in ("retriever", "generator", "sql", "guard"):
            getattr(engine, part)
    except BaseException:
        engine.close()
        raise
    logger.info("knowledge engine ready: collection %s, LLM %s", engine.collection, engine.llm_url)
    return engine
