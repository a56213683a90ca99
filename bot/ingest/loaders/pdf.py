"""PDF (.pdf) through pdfplumber: text lines grouped into paragraphs, tables apart.

Ruled tables found by ``page.find_tables()`` become :class:`Table` and their
characters are left out of the running text. Lines are grouped into
paragraphs where the vertical gap between them is large; lines set in a
font clearly larger than the body text are taken as headings (levels by
size). The title is the metadata ``Title`` or else the first line. Scanned
PDFs (no text layer) are rejected: OCR is not supported. A PDF of more than
``max_pdf_pages`` pages fails before its pages are read, and one whose text runs past
``max_text_chars`` as soon as it does.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pdfplumber
from pdfplumber.utils.exceptions import MalformedPDFException, PdfminerException

from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.documents import Block, ParsedDocument, Table
from bot.ingest.loaders.outline import Outline

__all__ = ["load_pdf"]

_PARAGRAPH_GAP = 0.5  # a gap above this fraction of the line height starts a paragraph
_HEADING_SIZE = 1.2  # a line this many times the body font size is a heading...
_HEADING_CHARS = 80  # ...if it is this short
_PLACEHOLDER_TITLES = {"", "untitled", "anonymous", "(anonymous)"}
_DIGITS = re.compile(r"\d+")

_Page = tuple[list[dict], list[tuple[float, Table]]]  # text lines, and tables with their top edge


def load_pdf(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Parse a PDF with a text layer into paragraphs, headings and tables."""
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            title = str(pdf.metadata.get("Title") or "").strip()
            if len(pdf.pages) > limits.max_pdf_pages:
                raise LoaderError(
                    str(path),
                    f"{len(pdf.pages)} pages, over the limit of {limits.max_pdf_pages} (ingest.max_pdf_pages)",
                )
            pages = _read_pages(path, pdf.pages, limits.max_text_chars)
    except (PdfminerException, MalformedPDFException) as exc:
        if isinstance(exc.__context__, (MemoryError, RecursionError)):
            raise exc.__context__ from None  # pdfplumber wraps what pdfminer raised: say what it was
        raise LoaderError(str(path), f"not a readable PDF (corrupt or truncated): {exc}") from exc
    if not any(lines or tables for lines, tables in pages):
        raise LoaderError(
            str(path),
            "no text layer; OCR is not supported (is it a scanned document? export it again with its text)",
        )
    pages = _without_running_lines(pages)
    if title.lower() in _PLACEHOLDER_TITLES:
        title = next((line["text"] for lines, _ in pages for line in lines), path.stem)
    return ParsedDocument(title=title, blocks=tuple(_blocks(pages, title)))


def _read_pages(path: Path, pdf_pages: list, max_chars: int) -> list[_Page]:
    """Every page read, stopping with :class:`LoaderError` once the text passes ``max_chars``."""
    pages, chars = [], 0
    for page in pdf_pages:
        pages.append(_read_page(page))
        page.close()  # drop the page's parsed objects: only its lines and tables are kept
        lines, tables = pages[-1]
        chars += sum(len(line["text"]) for line in lines)
        chars += sum(len(cell) for _, table in tables for row in (table.header, *table.rows) for cell in row)
        if chars > max_chars:
            raise LoaderError(str(path), f"the text runs past {max_chars:,} characters (ingest.max_text_chars)")
    return pages


def _read_page(page: Any) -> _Page:
    """The page's text lines outside tables, and its tables with their top edge."""
    found = page.find_tables()
    boxes = [table.bbox for table in found]

    def outside_tables(obj: dict) -> bool:
        x, y = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return not any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)

    lines = page.filter(outside_tables).extract_text_lines()
    tables = [(table.bbox[1], _table(table.extract())) for table in found]
    return lines, [(top, table) for top, table in tables if table.rows or any(table.header)]


def _table(rows: list[list[str | None]]) -> Table:
    cells = [tuple(_join((cell or "").splitlines()) for cell in row) for row in rows]
    return Table(header=cells[0] if cells else (), rows=tuple(row for row in cells[1:] if any(row)))


def _without_running_lines(pages: list[_Page]) -> list[_Page]:
    """Drop running headers and footers: a first or last line found on every page, page numbers aside."""
    if len(pages) < 2:
        return pages
    running = set.intersection(*({_digitless(line) for line in lines[:1] + lines[-1:]} for lines, _ in pages))
    return [([line for line in lines if _digitless(line) not in running], tables) for lines, tables in pages]


def _digitless(line: dict) -> str:
    return _DIGITS.sub("#", line["text"])


class _Headings:
    """Lines set clearly larger than the body text (the most common size) are headings."""

    def __init__(self, pages: list[_Page]) -> None:
        sizes = Counter(round(char["size"]) for lines, _ in pages for line in lines for char in line["chars"])
        self.body = sizes.most_common(1)[0][0] if sizes else 0
        found = {_size(line) for lines, _ in pages for line in lines if self._is_heading(line)}
        self.sizes = sorted(found, reverse=True)

    def level(self, line: dict) -> int:
        """1 for the largest heading size, 2 for the next...; 0 for body text."""
        return self.sizes.index(_size(line)) + 1 if self._is_heading(line) else 0

    def _is_heading(self, line: dict) -> bool:
        return _size(line) >= self.body * _HEADING_SIZE and len(line["text"]) <= _HEADING_CHARS


def _size(line: dict) -> int:
    return round(max(char["size"] for char in line["chars"]))


def _blocks(pages: list[_Page], title: str) -> list[Block]:
    headings = _Headings(pages)
    outline = Outline()
    blocks: list[Block] = []

    def add_paragraph(lines: list[str]) -> None:
        if lines:
            blocks.append(Block(section_path=outline.path, text=_join(lines)))

    for lines, tables in pages:  # a paragraph never continues across pages
        paragraph: list[str] = []
        previous: dict | None = None
        items = [(line["top"], line, None) for line in lines] + [(top, None, table) for top, table in tables]
        for _, line, table in sorted(items, key=lambda item: item[0]):
            if table is not None:
                add_paragraph(paragraph)
                paragraph, previous = [], None
                blocks.append(Block(section_path=outline.path, table=table))
            elif level := headings.level(line):
                add_paragraph(paragraph)
                paragraph, previous = [], None
                heading = line["text"].strip()
                outline.enter(level, "" if heading == title else heading)
            else:
                if previous is not None and _starts_paragraph(previous, line):
                    add_paragraph(paragraph)
                    paragraph = []
                paragraph.append(line["text"])
                previous = line
        add_paragraph(paragraph)
    return blocks


def _starts_paragraph(previous: dict, line: dict) -> bool:
    height = previous["bottom"] - previous["top"]
    return line["top"] - previous["bottom"] > _PARAGRAPH_GAP * height


def _join(lines: list[str]) -> str:
    """Join wrapped lines: with a space between Latin words, directly between CJK characters."""
    text = ""
    for line in (line.strip() for line in lines):
        if text and line and not (_is_wide(text[-1]) or _is_wide(line[0])):
            text += " "
        text += line
    return text


def _is_wide(char: str) -> bool:
    """CJK characters and full-width punctuation, which take no space between lines."""
    return ord(char) >= 0x2E80
