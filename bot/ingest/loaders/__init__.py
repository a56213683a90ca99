"""File loaders: one file in, one :class:`ParsedDocument` out.

    >>> doc = load_file(Path("knowledge/docs/pricing.md"), max_bytes=50 * 2**20)

The loader is chosen by file suffix (:data:`SUPPORTED_SUFFIXES`). Every
problem with the file itself (unsupported type, empty, too large, bad
encoding, corrupt, missing FAQ columns, scanned PDF) raises
:class:`~bot.errors.LoaderError` with a reason meant for the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

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
_LOADERS: dict[str, Callable[[Path, bytes], ParsedDocument]] = {
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


def load_file(path: Path, *, max_bytes: int) -> ParsedDocument:
    """Parse one file by its suffix; raise :class:`LoaderError` when it cannot be used."""
    path = Path(path)
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
    document = loader(path, data)
    if not document.blocks and not document.faq_items:
        skipped = document.metadata.get("skipped_rows")
        detail = f" ({skipped} rows lack a question or an answer)" if skipped else ""
        raise LoaderError(str(path), f"file is empty: no text found after parsing{detail}")
    return document
