"""From a :class:`ParsedDocument` to :class:`Chunk` records.

- Paragraphs: consecutive paragraphs under the same section path are packed
  into one passage while it stays within ``max_tokens``; a new section
  always starts a new chunk. A longer paragraph is cut between sentences
  (after 。！？；… or . ! ? followed by a space, and at line breaks). Only a
  single sentence longer than the bound is cut inside: at clause marks
  (，、： and , ; before a space), then at spaces, and as a last resort into
  the longest runs of characters that fit (which can cut a word).
- Tables: one chunk per data row, each cell labelled with its column header
  (``"Plan: Plus; Monthly price: ¥18"``), so that every row answers alone.
- FAQ items: one chunk each, never cut, whatever their length.
- Passage records (FAQ items with an empty question, from knowledge JSONL):
  cut like paragraphs; every piece keeps the record's id and doc.

Chunk ids are UUIDs derived from the document id and the content, so
re-ingesting unchanged content yields the same ids.

    >>> chunks = chunk_document(doc, doc_id="pricing.md", source="knowledge/pricing.md",
    ...                         count_tokens=estimate_tokens, max_tokens=300)
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from itertools import groupby
from typing import Any, Callable

from bot.ingest.documents import Chunk, ChunkKind, ParsedDocument, Table
from bot.lang import detect_language

__all__ = ["chunk_document", "chunk_id"]

CountTokens = Callable[[str], int]

# Fixed forever: changing it changes every chunk id.
_NAMESPACE = uuid.UUID("0b7c2f4e-9a51-4d3e-8f26-5c1a7e93d4b8")

_SENTENCE_END = re.compile(
    r"(?<=[。！？；…])(?![。！？；…”’」』）)])"  # after Chinese end marks, unless more marks or quotes follow
    r"|(?<=[。！？；…][”’」』）)])"  # after the closing quote that follows them
    r"|(?<=[.!?])\s+|(?<=[.!?][\"'”’)\]])\s+"  # English end marks need a space after
    r"|(?<!\s)\s*\n\s*"  # line breaks (a whitespace run is tried from its start only: linear)
)
_CLAUSE_END = re.compile(r"(?<=[，、：])|(?<=[,;])\s+")
_WORD_START = re.compile(r"(?<=\s)(?=\S)")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def chunk_id(doc_id: str, kind: str, content: str, occurrence: int) -> str:
    """A deterministic UUID for the ``occurrence``-th chunk of ``kind`` with ``content`` in a document."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((doc_id, kind, content, str(occurrence)))))


def chunk_document(
    doc: ParsedDocument,
    *,
    doc_id: str,
    source: str,
    count_tokens: CountTokens,
    max_tokens: int = 300,
) -> list[Chunk]:
    """Cut a parsed document into chunks (rules in the module docstring)."""
    make = _ChunkMaker(doc, doc_id, source)
    runs = groupby(doc.blocks, key=lambda block: (block.section_path, block.table is None))
    for (path, is_text), run in runs:
        section, blocks = " > ".join(path), list(run)
        if is_text:
            for text in _passages([block.text for block in blocks], count_tokens, max_tokens):
                make("passage", text, section=section)
        for table in (block.table for block in blocks if block.table is not None):
            for text in _table_rows(table):
                make("table_row", text, section=section)
    for item in doc.faq_items:
        if item.question.strip():
            make("faq", _normalize(item.answer), question=_normalize(item.question),
                 item_id=item.id, item_doc=item.doc, metadata=item.metadata)
            continue
        metadata = {key: value for key, value in item.metadata.items() if key != "title"}
        for text in _passages([item.answer], count_tokens, max_tokens):
            make("passage", text, title=item.metadata.get("title") or doc.title,
                 item_id=item.id, item_doc=item.doc, metadata=metadata)
    return make.chunks


class _ChunkMaker:
    """Builds chunks of one document, counting repeats of identical content."""

    def __init__(self, doc: ParsedDocument, doc_id: str, source: str) -> None:
        self.doc, self.doc_id, self.source = doc, doc_id, source
        self.base_metadata = {key: value for key, value in doc.metadata.items() if key != "skipped_rows"}
        self.seen: Counter[tuple[str, str]] = Counter()
        self.chunks: list[Chunk] = []

    def __call__(
        self,
        kind: ChunkKind,
        text: str,
        *,
        question: str = "",
        section: str = "",
        title: str = "",
        item_id: str = "",
        item_doc: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not text:
            return
        content = f"{question}\n{text}" if question else text
        occurrence = self.seen[kind, content]
        self.seen[kind, content] += 1
        id_ = chunk_id(self.doc_id, kind, content, occurrence)
        self.chunks.append(
            Chunk(
                id=id_,
                item_id=item_id or id_,
                doc=item_doc or self.doc_id,
                source=self.source,
                kind=kind,
                title=title or self.doc.title,
                section=section,
                question=question,
                text=text,
                language=detect_language(content),
                metadata={**self.base_metadata, **(metadata or {})},
            )
        )


def _passages(paragraphs: list[str], count_tokens: CountTokens, max_tokens: int) -> list[str]:
    """Pack paragraphs into passages within ``max_tokens``, cutting long ones first."""
    pieces = []
    for paragraph in filter(None, map(_normalize, paragraphs)):
        pieces.extend(filter(None, (piece.strip() for piece in _split(paragraph, count_tokens, max_tokens))))
    return [passage.strip() for passage in _pack(pieces, "\n\n", count_tokens, max_tokens)]


_BOUNDARIES = (_SENTENCE_END, _CLAUSE_END, _WORD_START)


def _split(text: str, count_tokens: CountTokens, max_tokens: int, level: int = 0) -> list[str]:
    """Cut ``text`` at the coarsest boundaries that bring every piece within the bound."""
    if count_tokens(text.strip()) <= max_tokens:
        return [text]
    if level == len(_BOUNDARIES):
        return _windows(text, count_tokens, max_tokens)
    parts = _cut(text, _BOUNDARIES[level])
    pieces = [piece for part in parts for piece in _split(part, count_tokens, max_tokens, level + 1)]
    return _pack(pieces, "", count_tokens, max_tokens)


def _cut(text: str, boundary: re.Pattern[str]) -> list[str]:
    """``text`` cut after every match of ``boundary``; each piece keeps what follows it."""
    edges = [0, *(match.end() for match in boundary.finditer(text)), len(text)]
    return [text[start:end] for start, end in zip(edges, edges[1:]) if text[start:end].strip()]


def _pack(pieces: list[str], separator: str, count_tokens: CountTokens, max_tokens: int) -> list[str]:
    """Join consecutive pieces greedily while the result stays within the bound."""
    packed: list[str] = []
    for piece in pieces:
        joined = f"{packed[-1]}{separator}{piece}" if packed else piece
        if packed and count_tokens(joined.strip()) <= max_tokens:
            packed[-1] = joined
        else:
            packed.append(piece)
    return packed


def _windows(text: str, count_tokens: CountTokens, max_tokens: int) -> list[str]:
    """Last resort: the longest runs of characters within the bound (found by bisection)."""
    windows, start = [], 0
    while start < len(text):
        low, high = start + 1, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if count_tokens(text[start:middle].strip()) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        windows.append(text[start:low])
        start = low
    return windows


def _table_rows(table: Table) -> list[str]:
    """One text per data row: ``"Header: cell; Header: cell"``, prefixed by the caption."""
    names = [" ".join(name.split()) for name in table.header]
    caption = " ".join(table.caption.split())
    texts = []
    for row in table.rows:
        if tuple(row) == tuple(table.header):  # a header repeated on a new page
            continue
        labelled = [
            (names[i] if i < len(names) and names[i] else f"Column {i + 1}", " ".join(cell.split()))
            for i, cell in enumerate(row)
        ]
        text = "; ".join(f"{name}: {value}" for name, value in labelled if value)
        if text:
            texts.append(f"{caption}\n{text}" if caption else text)
    return texts


def _normalize(text: str) -> str:
    """Collapse runs of spaces, trim lines, and keep at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
