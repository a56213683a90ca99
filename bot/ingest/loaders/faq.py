"""FAQ files: question/answer tables (.csv, .xlsx) and knowledge JSONL (.jsonl).

Tables need a header row. Column names match case-insensitively, in English
or Chinese: question = question, q, 问题, 标准问题; answer = answer, a, 答案,
回答; id = id, 编号; doc = doc. Every other column becomes item metadata
(text values, empty cells dropped). A row without an id gets
``"{file stem}-{row number}"`` (the header is row 1). Blank rows are ignored;
a row with only one of question and answer is skipped and counted in
``ParsedDocument.metadata["skipped_rows"]``.

JSONL holds one object per line, in either shape:

- ``{"id", "question", "answer"}``: an FAQ item;
- ``{"id", "title", "text"}``: a passage, returned as a :class:`FaqItem` with
  an empty ``question``, ``answer`` = the text and ``metadata["title"]`` = the
  title. The chunker turns such items into passage chunks that keep the
  record's id and doc (evaluation sets name them).

Both shapes accept an optional ``doc``; other keys become metadata. A line
without an id gets ``"{file stem}-{line number}"``.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Iterable

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException

from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.documents import FaqItem, ParsedDocument
from bot.ingest.loaders.archive import check_zip
from bot.ingest.loaders.decoding import decode_bytes

__all__ = ["load_csv", "load_xlsx", "load_jsonl"]

_COLUMN_NAMES = {
    "question": ("question", "q", "问题", "标准问题"),
    "answer": ("answer", "a", "答案", "回答"),
    "id": ("id", "编号"),
    "doc": ("doc",),
}
_ROLE_OF = {name: role for role, names in _COLUMN_NAMES.items() for name in names}
_JSONL_ROLE_OF = {**_ROLE_OF, "title": "title", "text": "text"}
_CORRUPT_XLSX = (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError)


#: Delimiters a question/answer CSV may use; the header line says which (quoting is the standard one).
_DELIMITERS = ",;\t|"


def load_csv(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Read a question/answer table from CSV (standard quoting; delimiter from the header line)."""
    text = decode_bytes(data, path)
    header = text.lstrip().split("\n", 1)[0]
    delimiter = max(_DELIMITERS, key=header.count) if any(d in header for d in _DELIMITERS) else ","
    try:
        rows = [
            [cell.strip() for cell in row]
            for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        ]
    except csv.Error as exc:
        raise LoaderError(str(path), f"not a readable CSV file: {exc}") from exc
    return _from_rows(path, rows)


def load_xlsx(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Read a question/answer table from the first sheet of an Excel workbook (a zip bomb is
    refused from the archive's directory first; a sheet over ``max_xlsx_cells`` cells fails)."""
    check_zip(path, data, limits)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # rows as stored: a false "A1:XFD1048576" would pad every row
            rows = _sheet_rows(path, sheet.iter_rows(values_only=True), limits.max_xlsx_cells)
        finally:
            workbook.close()
    except _CORRUPT_XLSX as exc:
        reason = f"not a readable .xlsx workbook (corrupt or another format): {exc}"
        raise LoaderError(str(path), reason) from exc
    return _from_rows(path, rows)


def _sheet_rows(path: Path, rows: Iterable[tuple], max_cells: int) -> list[list[str]]:
    """The rows as text; an empty row counts as one cell, a row as all its cells up to its last."""
    texts, cells = [], 0
    for row in rows:
        cells += max(len(row), 1)
        if cells > max_cells:
            raise LoaderError(
                str(path), f"the first sheet has over {max_cells:,} cells (ingest.max_xlsx_cells)"
            )
        texts.append([_cell(value) for value in row])
    return texts


def load_jsonl(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Read FAQ items and passages from JSON Lines (see the module docstring)."""
    items, skipped = [], 0
    # split on "\n" only: str.splitlines() would also split inside strings holding U+2028
    for number, line in enumerate(decode_bytes(data, path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoaderError(
                str(path),
                f"line {number} is not valid JSON ({exc.msg}, column {exc.colno}); "
                "each line must be one JSON object",
            ) from exc
        if not isinstance(record, dict):
            raise LoaderError(str(path), f"line {number} is a JSON {type(record).__name__}, not an object")
        item = _record_item(path, number, record)
        if item is None:
            skipped += 1
        else:
            items.append(item)
    return ParsedDocument(title=path.stem, faq_items=tuple(items), metadata={"skipped_rows": skipped})


def _record_item(path: Path, number: int, record: dict[str, Any]) -> FaqItem | None:
    fields: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    for key, value in record.items():
        role = _JSONL_ROLE_OF.get(key.strip().lower())
        if role and role not in fields:
            fields[role] = _cell(value)
        elif value not in (None, ""):
            metadata[key] = value
    item_id = fields.get("id") or f"{path.stem}-{number}"
    if fields.get("title"):
        metadata["title"] = fields["title"]
    if "question" in fields or "answer" in fields:
        if not (fields.get("question") and fields.get("answer")):
            return None
        return FaqItem(item_id, fields["question"], fields["answer"], fields.get("doc", ""), metadata)
    if "text" in fields:
        if not fields["text"]:
            return None
        return FaqItem(item_id, "", fields["text"], fields.get("doc", ""), metadata)
    raise LoaderError(
        str(path),
        f"line {number} is neither an FAQ item nor a passage: found keys {sorted(record)}; "
        'expected {"id", "question", "answer"} or {"id", "title", "text"}',
    )


def _from_rows(path: Path, rows: list[list[str]]) -> ParsedDocument:
    """FAQ items from table rows; the first non-blank row is the header."""
    numbered = [(number, row) for number, row in enumerate(rows, 1) if any(row)]
    if not numbered:
        return ParsedDocument(title=path.stem)
    header = numbered[0][1]
    roles: dict[int, str] = {}
    for index, name in enumerate(header):
        role = _ROLE_OF.get(name.strip().lower())
        if role and role not in roles.values():
            roles[index] = role
    _require_columns(path, header, set(roles.values()))
    items, skipped = [], 0
    for number, row in numbered[1:]:
        fields = {roles[i]: value for i, value in enumerate(row) if i in roles and value}
        if not (fields.get("question") and fields.get("answer")):
            skipped += 1
            continue
        metadata = {_column_name(header, i): value for i, value in enumerate(row) if i not in roles and value}
        item_id = fields.get("id") or f"{path.stem}-{number}"
        items.append(FaqItem(item_id, fields["question"], fields["answer"], fields.get("doc", ""), metadata))
    return ParsedDocument(title=path.stem, faq_items=tuple(items), metadata={"skipped_rows": skipped})


def _require_columns(path: Path, header: Iterable[str], found: set[str]) -> None:
    missing = [role for role in ("question", "answer") if role not in found]
    if missing:
        expected = "; ".join(f"{role}: {', '.join(_COLUMN_NAMES[role])}" for role in missing)
        columns = ", ".join(repr(name) for name in header if name) or "none"
        raise LoaderError(
            str(path),
            f"missing the {' and '.join(missing)} column: found columns {columns}; "
            f"expected a header row naming them ({expected})",
        )


def _column_name(header: list[str], index: int) -> str:
    name = header[index].strip() if index < len(header) else ""
    return name or f"Column {index + 1}"


def _cell(value: Any) -> str:
    """A cell or JSON value as stripped text; whole floats (Excel numbers) lose their ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
