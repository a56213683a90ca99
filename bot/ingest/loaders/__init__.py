"""File loaders: one file in, one :class:`ParsedDocument` out.

    >>> doc = load_file(Path("knowledge/docs/pricing.md"), max_bytes=50 * 2**20)

The loader is chosen by file suffix (:data:`SUPPORTED_SUFFIXES`) and gets the
file's bytes and the limits of ``IngestSettings`` (zip sizes, nesting depth,
pages, cells, text length). Every problem with the file itself (unsupported
type, empty, too large, bad encoding, corrupt, missing FAQ columns, scanned
PDF, over a limit) raises :class:`~bot.errors.LoaderError` with a reason meant
for the user; so does any other exception of a parser, ``RecursionError`` and
``MemoryError`` included. Time and memory are bounded by running this in a
child process (:mod:`bot.ingest.parser_process`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.documents import ParsedDocument
from bot.ingest.loaders.docx import load_docx
from bot.ingest.loaders.faq import load_csv, load_jsonl, load_xlsx
from bot.ingest.loaders.html import load_html
from bot.ingest.loaders.markdown import load_markdown
from bot.ingest.loaders.pdf import load_pdf
from bot.ingest.loaders.text import load_text

__all__ = ["load_file", "SUPPORTED_SUFFIXES"]

_MB = 1024 * 1024
_LOADERS: dict[str, Callable[[Path, bytes, IngestSettings], ParsedDocument]] = {
    ".txt": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".csv": load_csv,
    ".xlsx": load_xlsx,
    ".jsonl": load_jsonl,
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(sorted(_LOADERS))


def load_file(path: Path, *, max_bytes: int, limits: IngestSettings | None = None) -> ParsedDocument:
    """Parse one file by its suffix under ``limits`` (default: ``IngestSettings()``'s); raise
    :class:`LoaderError` when it cannot be used."""
    path, limits = Path(path), limits or IngestSettings()
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        kind = f"'{path.suffix}'" if path.suffix else "without a suffix"
        raise LoaderError(
            str(path), f"unsupported file type {kind}; supported types: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoaderError(
                str(path),
                f"file is {size / _MB:.3g} MB, over the {max_bytes / _MB:.3g} MB limit (ingest.max_file_mb)",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise LoaderError(str(path), f"cannot be read: {exc.strerror or exc}") from exc
    if not data:
        raise LoaderError(str(path), "file is empty (0 bytes)")
    try:
        document = loader(path, data, limits)
    except LoaderError:
        raise
    except RecursionError as exc:
        raise LoaderError(str(path), "nested too deeply for the parser (RecursionError)") from exc
    except MemoryError as exc:
        reason = f"the parser ran out of memory (it may use {limits.max_parse_mb} MB: ingest.max_parse_mb)"
        raise LoaderError(str(path), reason) from exc
    except Exception as exc:  # a parser's own bug or limit: this file fails, not the run
        raise LoaderError(str(path), f"the parser failed: {type(exc).__name__}: {_short(str(exc))}") from exc
    chars = _text_length(document)
    if chars > limits.max_text_chars:
        raise LoaderError(
            str(path),
            f"{chars:,} characters of text, over the limit of {limits.max_text_chars:,} (ingest.max_text_chars)",
        )
    if not document.blocks and not document.faq_items:
        skipped = document.metadata.get("skipped_rows")
        detail = f" ({skipped} rows lack a question or an answer)" if skipped else ""
        raise LoaderError(str(path), f"file is empty: no text found after parsing{detail}")
    return document


def _text_length(document: ParsedDocument) -> int:
    """Characters of text in a parsed document: blocks, table cells, FAQ questions and answers."""
    chars = 0
    for block in document.blocks:
        chars += len(block.text)
        if block.table is not None:
            table = block.table
            chars += len(table.caption) + sum(len(cell) for row in (table.header, *table.rows) for cell in row)
    return chars + sum(len(item.question) + len(item.answer) for item in document.faq_items)


def _short(message: str, limit: int = 200) -> str:
    """A parser's message on one line, cut to ``limit`` characters (it may quote the file)."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
