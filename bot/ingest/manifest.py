"""The ingestion manifest: which documents and chunks a collection holds, in SQL.

It is what makes ingestion incremental (an unchanged file's hash matches and it is
skipped), resumable (chunks are journaled as they are stored) and verifiable (every
chunk it lists must be in the store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from sqlalchemy import and_, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.db import schema
from bot.errors import EncoderMismatchError, ManifestError

__all__ = ["Manifest", "DocumentRecord", "ChunkRecord"]


@dataclass(frozen=True)
class DocumentRecord:
    """A source file as last ingested: ``sha256`` of the stored version, ``error`` of the last attempt."""

    source: str
    sha256: str | None
    n_chunks: int
    error: str | None


@dataclass(frozen=True)
class ChunkRecord:
    """A stored chunk: its point id, the item it answers for, and its payload's hash."""

    chunk_id: str
    item_id: str
    payload_hash: str


class Manifest:
    """The manifest rows of one collection."""

    def __init__(self, engine: Engine, collection: str):
        self.engine = engine
        self.collection = collection

    def check_encoders(self, dense: str, dim: int, sparse: str) -> None:
        """Record the encoders on first use; later, refuse to mix vectors of other encoders."""
        table = schema.collections
        with self._begin() as conn:
            row = conn.execute(select(table).where(table.c.name == self.collection)).first()
            if row is None:
                conn.execute(
                    table.insert().values(
                        name=self.collection,
                        dense_encoder=dense,
                        dense_dim=dim,
                        sparse_encoder=sparse,
                        created_at=_now(),
                    )
                )
                return
        if (row.dense_encoder, row.dense_dim, row.sparse_encoder) != (dense, dim, sparse):
            raise EncoderMismatchError(
                f"collection {self.collection!r} was built with {row.dense_encoder} ({row.dense_dim}-d) "
                f"and {row.sparse_encoder}, but bot.yml now configures {dense} ({dim}-d) and {sparse}; "
                "rebuild it with `bot ingest --rebuild`"
            )

    def documents(self) -> dict[str, DocumentRecord]:
        """Every document of the collection, by source."""
        table = schema.documents
        with self._connect() as conn:
            rows = conn.execute(select(table).where(table.c.collection == self.collection))
            return {
                row.source: DocumentRecord(row.source, row.sha256, row.n_chunks, row.error)
                for row in rows
            }

    def chunks(self, source: str | None = None) -> dict[str, ChunkRecord]:
        """The chunks of one source, or of the whole collection."""
        table = schema.chunks
        query = select(table).where(table.c.collection == self.collection)
        if source is not None:
            query = query.where(table.c.source == source)
        with self._connect() as conn:
            return {
                row.chunk_id: ChunkRecord(row.chunk_id, row.item_id, row.payload_hash)
                for row in conn.execute(query)
            }

    def record_document(
        self, source: str, *, sha256: str, size: int, title: str, chunks: Iterable[ChunkRecord]
    ) -> None:
        """Replace what the manifest holds for ``source`` with this version."""
        chunks = list(chunks)
        with self._begin() as conn:
            self._delete_rows(conn, source)
            conn.execute(
                schema.documents.insert().values(
                    collection=self.collection,
                    source=source,
                    sha256=sha256,
                    size=size,
                    title=title,
                    n_chunks=len(chunks),
                    error=None,
                    updated_at=_now(),
                )
            )
            if chunks:
                conn.execute(schema.chunks.insert(), [self._chunk_row(source, c) for c in chunks])

    def record_embedded(self, chunks: Mapping[str, Sequence[ChunkRecord]]) -> None:
        """Journal chunks just written to the store, by source, before their documents are
        recorded: a run killed midway leaves them listed, so the next run finds them stored with
        the same payload hash and does not embed them again. Each source's stored version
        becomes unknown (``sha256`` cleared), so that the next run parses it again."""
        documents, table = schema.documents, schema.chunks
        with self._begin() as conn:
            for source, records in chunks.items():
                key = and_(documents.c.collection == self.collection, documents.c.source == source)
                updated = conn.execute(documents.update().where(key).values(sha256=None, updated_at=_now()))
                if updated.rowcount == 0:
                    conn.execute(
                        documents.insert().values(
                            collection=self.collection, source=source, n_chunks=0, updated_at=_now()
                        )
                    )
                ids = [record.chunk_id for record in records]
                conn.execute(
                    delete(table).where(and_(table.c.collection == self.collection, table.c.chunk_id.in_(ids)))
                )
                conn.execute(table.insert(), [self._chunk_row(source, record) for record in records])

    def record_failure(self, source: str, error: str) -> None:
        """Note the last attempt's error; a previously stored version stays as it was."""
        table = schema.documents
        key = and_(table.c.collection == self.collection, table.c.source == source)
        with self._begin() as conn:
            updated = conn.execute(table.update().where(key).values(error=error, updated_at=_now()))
            if updated.rowcount == 0:
                conn.execute(
                    table.insert().values(
                        collection=self.collection,
                        source=source,
                        n_chunks=0,
                        error=error,
                        updated_at=_now(),
                    )
                )

    def clear_error(self, source: str) -> None:
        """The stored version is current again: forget the last attempt's error."""
        table = schema.documents
        key = and_(table.c.collection == self.collection, table.c.source == source)
        with self._begin() as conn:
            conn.execute(table.update().where(key).values(error=None, updated_at=_now()))

    def remove_document(self, source: str) -> None:
        """Forget a deleted source and its chunks."""
        with self._begin() as conn:
            self._delete_rows(conn, source)

    def reset(self) -> None:
        """Forget the whole collection (for a rebuild)."""
        with self._begin() as conn:
            for table, column in (
                (schema.chunks, schema.chunks.c.collection),
                (schema.documents, schema.documents.c.collection),
                (schema.collections, schema.collections.c.name),
            ):
                conn.execute(delete(table).where(column == self.collection))

    def _chunk_row(self, source: str, chunk: ChunkRecord) -> dict:
        return {
            "collection": self.collection,
            "source": source,
            "chunk_id": chunk.chunk_id,
            "item_id": chunk.item_id,
            "payload_hash": chunk.payload_hash,
        }

    def _delete_rows(self, conn, source: str) -> None:
        for table in (schema.chunks, schema.documents):
            conn.execute(
                delete(table).where(
                    and_(table.c.collection == self.collection, table.c.source == source)
                )
            )

    def _connect(self):
        return _Translated(self.engine.connect)

    def _begin(self):
        return _Translated(self.engine.begin)


class _Translated:
    """A connection context whose SQLAlchemy errors become :class:`ManifestError`."""

    def __init__(self, opener):
        self._opener = opener

    def __enter__(self):
        try:
            self._context = self._opener()
            return self._context.__enter__()
        except SQLAlchemyError as exc:
            raise ManifestError(f"cannot open the manifest database: {exc}") from exc

    def __exit__(self, exc_type, exc, tb):
        try:
            handled = self._context.__exit__(exc_type, exc, tb)
        except SQLAlchemyError as error:
            raise ManifestError(f"the manifest database failed: {error}") from error
        if isinstance(exc, SQLAlchemyError):
            raise ManifestError(f"the manifest database failed: {exc}") from exc
        return handled


def _now() -> datetime:
    return datetime.now(timezone.utc)
