"""Writing traces without ever holding up or failing a turn.

A turn hands its trace to :meth:`TraceWriter.submit` (a queue append); one background thread
builds the row, masks personal data and inserts it. While the database is down the rows wait
and are retried with backoff; the log says when it went away, when it came back, and which
traces were lost (queue full, or still unwritten when the process stops).

    writer = TraceWriter(lambda: connect(url), Redactor(patterns), retention_days=90)
    writer.submit(lambda: knowledge_row(context, answer, retrieval))
    writer.close()        # waits a little for what is queued
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from bot.db.schema import feedback, turn_labels, turns
from bot.errors import BotError
from bot.traces.redact import Redactor

__all__ = ["TraceWriter", "purge_older_than"]

logger = logging.getLogger(__name__)

RowBuilder = Callable[[], dict[str, Any]]
_BATCH = 50
_RETRY_FIRST, _RETRY_MAX = 0.5, 30.0  # seconds between attempts while the database is down
_PURGE_EVERY = timedelta(hours=24)
#: Keys whose values are identifiers, stored unmasked: a uuid's digits can look like a card or
#: phone number, and a masked id would cut the trace off from its feedback and the knowledge base.
IDENTIFIERS = frozenset(
    {"turn_id", "conversation_id", "message_id", "id", "item_id", "doc", "source", "link"}
)
_COLUMNS = tuple(turns.c.keys())


class TraceWriter:
    """A queue of traces and the thread that writes them to the ``turns`` table."""

    def __init__(
        self,
        connect: Callable[[], SqlEngine],
        redactor: Redactor,
        *,
        retention_days: int = 0,
        queue_size: int = 10000,
    ):
        self._connect = connect
        self._redactor = redactor
        self._retention_days = retention_days
        self._queue: deque[RowBuilder] = deque()
        self._queue_size = queue_size
        self._waiting: list[dict[str, Any]] = []  # built rows the database has not taken yet
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._down_since: datetime | None = None
        self._next_purge = datetime.min
        self.written = 0
        self.lost = 0
        self._thread = threading.Thread(target=self._run, name="trace-writer", daemon=True)
        self._thread.start()

    def submit(self, build: RowBuilder) -> None:
        """Queue one trace; ``build`` makes its row in the writer thread. Never blocks, never raises."""
        with self._cond:
            if self._closing:
                logger.error("trace lost: submitted after the writer closed")
                self.lost += 1
                return
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.lost += 1
                logger.error("trace lost: %d traces already wait for the database", self._queue_size)
            self._queue.append(build)
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued trace is written; False if some still wait after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle(), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to ``timeout`` seconds), then stop; the rest is logged as lost."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            unwritten = [row["turn_id"] for row in self._waiting] + ["(not built)"] * len(self._queue)
            self._queue.clear()
            self._waiting = []
        if unwritten:
            self.lost += len(unwritten)
            logger.error("%d traces lost (database unavailable at shutdown): %s", len(unwritten), ", ".join(unwritten))

    def _idle(self) -> bool:
        return not self._queue and not self._waiting and not self._busy

    def _run(self) -> None:
        delay = _RETRY_FIRST
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._waiting or self._closing)
                if self._closing and not self._queue and not self._waiting:
                    return
                while self._queue and len(self._waiting) < _BATCH:
                    self._waiting.append(self._queue.popleft())
                self._busy = True
            self._waiting = [row for row in map(self._built, self._waiting) if row is not None]
            try:
                written = self._write(self._waiting)
            except (SQLAlchemyError, BotError, OSError) as exc:  # the database is down or unreachable
                self._went_down(exc)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                    if self._closing:
                        return
                    self._cond.wait_for(lambda: self._closing, delay)  # close() ends it early, submit() not
                delay = min(delay * 2, _RETRY_MAX)
                continue
            delay = _RETRY_FIRST
            with self._cond:
                self.written += written
                self._waiting = []
                self._busy = False
                self._cond.notify_all()

    def _built(self, item: RowBuilder | dict[str, Any]) -> dict[str, Any] | None:
        if isinstance(item, dict):
            return item
        try:
            return self._redactor.value(item(), keep=IDENTIFIERS)
        except Exception:  # a bug in building one trace must not stop the others
            logger.exception("trace lost: it could not be built")
            self.lost += 1
            return None

    def _write(self, rows: list[dict[str, Any]]) -> int:
        """Insert ``rows``; returns how many were written (the others are lost and logged)."""
        sql = self._connect()
        written = len(rows)
        if rows:
            try:
                with sql.begin() as conn:  # one statement for all: every row names every column
                    conn.execute(turns.insert(), [{**dict.fromkeys(_COLUMNS), **row} for row in rows])
            except Exception as exc:
                if _is_disconnect(exc):
                    raise
                written = self._write_one_by_one(sql, rows)  # a bad row (e.g. a duplicate id) loses only itself
        if self._down_since is not None:
            logger.warning("trace database is back (down since %s); writing the waiting traces", self._down_since)
            self._down_since = None
        self._purge_if_due(sql)
        return written

    def _write_one_by_one(self, sql: SqlEngine, rows: list[dict[str, Any]]) -> int:
        written = 0
        for row in rows:
            try:
                with sql.begin() as conn:
                    conn.execute(turns.insert(), [row])
            except Exception as exc:  # e.g. a NUL in a text: psycopg2 raises ValueError
                if _is_disconnect(exc):
                    raise
                self.lost += 1
                logger.error("trace %s lost: %s", row.get("turn_id"), exc)
            else:
                written += 1
        return written

    def _went_down(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = datetime.now(timezone.utc)
            logger.warning(
                "trace database unavailable (%s); %d traces wait and are retried",
                str(exc).splitlines()[0],
                len(self._waiting) + len(self._queue),
            )

    def _purge_if_due(self, sql: SqlEngine) -> None:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if self._retention_days <= 0 or now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY
        removed = purge_older_than(sql, now - timedelta(days=self._retention_days))
        if removed:
            logger.info("traces older than %d days deleted: %d turns", self._retention_days, removed)


def purge_older_than(sql: SqlEngine, cutoff: datetime) -> int:
    """Delete turns (with their labels and feedback) created before ``cutoff``; returns how many turns."""
    old = select(turns.c.turn_id).where(turns.c.created_at < cutoff)
    with sql.begin() as conn:
        conn.execute(delete(turn_labels).where(turn_labels.c.turn_id.in_(old)))
        conn.execute(delete(feedback).where(feedback.c.created_at < cutoff))
        return conn.execute(delete(turns).where(turns.c.created_at < cutoff)).rowcount


def _is_disconnect(exc: Exception) -> bool:
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    )
