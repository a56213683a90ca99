"""Word documents (.docx) through python-docx, in document order.

The ``Title`` style gives the title and ``Heading N`` styles the section path;
consecutive ``List ...`` paragraphs become one block with ``- `` bullets;
tables become :class:`Table` (first row as header); hyperlinks are written
as Markdown ``[text](url)``. A zip bomb is refused from the archive's directory first.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import OpcError
from docx.table import Table as DocxTable
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph
from lxml import etree

from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.documents import Block, ParsedDocument, Table
from bot.ingest.loaders.archive import check_zip
from bot.ingest.loaders.outline import Outline

__all__ = ["load_docx"]

_HEADING = re.compile(r"heading\s*(\d)", re.IGNORECASE)
_CORRUPT = (zipfile.BadZipFile, OpcError, KeyError, ValueError, etree.XMLSyntaxError)


def load_docx(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Parse a .docx file into blocks under its headings."""
    check_zip(path, data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except _CORRUPT as exc:
        # python-docx's ValueError names the stream, not the file: say it plainly
        detail = "not a Word document" if isinstance(exc, ValueError) else str(exc)
        raise LoaderError(str(path), f"not a readable .docx file (corrupt or another format): {detail}") from exc
    outline = Outline()
    title = ""
    blocks: list[Block] = []
    bullets: list[str] = []

    def flush_list() -> None:
        if bullets:
            blocks.append(Block(section_path=outline.path, text="\n".join(bullets)))
            bullets.clear()

    for item in document.iter_inner_content():
        if isinstance(item, DocxTable):
            flush_list()
            blocks.append(Block(section_path=outline.path, table=_table(item)))
            continue
        text = _paragraph_text(item)
        style = getattr(item.style, "name", None) or ""
        if not text:
            continue
        if style.startswith("List"):
            bullets.append(f"- {text}")
            continue
        flush_list()
        heading = _HEADING.fullmatch(style)
        if style == "Title" and not title:
            title = text
        elif heading:
            outline.enter(int(heading.group(1)), text)
        else:
            blocks.append(Block(section_path=outline.path, text=text))
    flush_list()
    title = title or document.core_properties.title or path.stem
    return ParsedDocument(title=title, blocks=tuple(blocks))


def _paragraph_text(paragraph: Paragraph) -> str:
    parts = []
    for piece in paragraph.iter_inner_content():
        if isinstance(piece, Hyperlink) and piece.url and piece.text:
            parts.append(f"[{piece.text}]({piece.url})")
        else:
            parts.append(piece.text)
    return "".join(parts).strip()


def _table(table: DocxTable) -> Table:
    rows = [tuple(cell.text.strip() for cell in row.cells) for row in table.rows]
    return Table(header=rows[0] if rows else (), rows=tuple(rows[1:]))
