"""Plain text (.txt): paragraphs are separated by blank lines."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import IngestSettings
from bot.ingest.documents import Block, ParsedDocument
from bot.ingest.loaders.decoding import decode_bytes

__all__ = ["load_text", "split_paragraphs"]

_BLANK_LINES = re.compile(r"\n\s*\n")


def split_paragraphs(text: str) -> list[str]:
    """The non-empty paragraphs of ``text``, split on blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [part.strip() for part in _BLANK_LINES.split(text) if part.strip()]


def load_text(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """One block per paragraph, no sections; the title is the file name without suffix."""
    paragraphs = split_paragraphs(decode_bytes(data, path))
    return ParsedDocument(title=path.stem, blocks=tuple(Block(text=p) for p in paragraphs))
