"""What loaders produce and what the chunker turns it into.

A loader turns one file into a :class:`ParsedDocument`: an ordered list of
:class:`Block` (paragraphs and tables, each under its section path) and/or a
list of :class:`FaqItem`. The chunker turns that into :class:`Chunk` records,
the unit that is embedded and stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Table", "Block", "FaqItem", "ParsedDocument", "Chunk", "ChunkKind", "heading", "declared_doc"]

ChunkKind = Literal["faq", "passage", "table_row"]


def heading(question: str, title: str, section: str) -> str:
    """What a chunk is about, as shown to people and the LLM: an FAQ item's question, else
    "title > section" (either part may be missing)."""
    return question or " > ".join(part for part in (title, section) if part)


def declared_doc(doc: str, source: str) -> str:
    """The doc a knowledge record declares (a JSONL record's ``doc``); "" for a chunk of a file,
    whose doc is the file itself."""
    return doc if doc and doc != source else ""


@dataclass(frozen=True)
class Table:
    """A table as parsed: a header row and data rows, all cells as plain text."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Block:
    """One paragraph (``text``) or one table (``table``) under a section path.

    ``section_path`` lists the headings above the block, outermost first,
    not including the document title.
    """

    section_path: tuple[str, ...] = ()
    text: str = ""
    table: Table | None = None


@dataclass(frozen=True)
class FaqItem:
    """A question with its answer. ``id`` is stable across re-ingestion."""

    id: str
    question: str
    answer: str
    doc: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedDocument:
    """A file's content: its title, its blocks in reading order, its FAQ items."""

    title: str
    blocks: tuple[Block, ...] = ()
    faq_items: tuple[FaqItem, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One retrievable record.

    - ``id``: a UUID string derived from the document id and the chunk's content.
    - ``item_id``: what evaluation sets and citations name: the FAQ item id, or ``id`` for passages.
    - ``doc``: the document the chunk belongs to (an FAQ item's ``doc``, else the source path).
    - ``question``: the FAQ question; empty for passages.
    - ``text``: the content side as shown to users (answer, paragraph, or one table row with its header).
    - ``generated_questions``: reviewed questions from ``bot enhance`` (approved in
      ``ingest.enhanced_questions``), added to the question side.
    """

    id: str
    item_id: str
    doc: str
    source: str
    kind: ChunkKind
    title: str
    section: str
    question: str
    text: str
    language: str
    metadata: dict[str, Any] = field(default_factory=dict)
    generated_questions: tuple[str, ...] = ()

    @property
    def question_side(self) -> str:
        """The question side as embedded: the FAQ question and the approved generated ones,
        one per line; empty for a passage without approved questions."""
        return "\n".join(q for q in (self.question, *self.generated_questions) if q)

    @property
    def heading(self) -> str:
        """The FAQ question, else "title > section"."""
        return heading(self.question, self.title, self.section)

    @property
    def declared_doc(self) -> str:
        """The doc this record declares; "" for a chunk of a file."""
        return declared_doc(self.doc, self.source)

    @property
    def content_for_embedding(self) -> str:
        """The content side as embedded, with its context: the question of an FAQ answer,
        the title and section of a passage."""
        if self.kind == "faq":
            return f"{self.question}\n{self.text}" if self.question else self.text
        context = heading("", self.title, self.section)
        return f"{context}\n{self.text}" if context else self.text
