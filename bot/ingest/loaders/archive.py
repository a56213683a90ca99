"""Zip-based formats (.docx, .xlsx): refuse a zip bomb from its directory, before any parsing.

The central directory states each entry's sizes; Python's ``zipfile`` never inflates an entry
past its stated size (a lie ends in a CRC error), so checking the stated sizes bounds what the
parsers can inflate.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from bot.config import IngestSettings
from bot.errors import LoaderError

__all__ = ["check_zip"]

_MB = 1024 * 1024
_RATIO_FLOOR = _MB  # smaller entries cannot do harm whatever their ratio


def check_zip(path: Path, data: bytes, limits: IngestSettings) -> None:
    """Raise :class:`LoaderError` when the archive has too many entries, inflates past
    ``max_unzipped_mb`` or has an entry compressed more than ``max_zip_ratio`` times.
    Data that is not a zip at all is left to the format's own parser to report."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        return
    if len(entries) > limits.max_zip_entries:
        raise LoaderError(
            str(path),
            f"the archive holds {len(entries)} entries, over the limit of {limits.max_zip_entries} "
            "(ingest.max_zip_entries); is it a zip bomb?",
        )
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_unzipped_mb * _MB:
        raise LoaderError(
            str(path),
            f"the archive inflates to {total / _MB:,.0f} MB, over the limit of {limits.max_unzipped_mb:g} MB "
            "(ingest.max_unzipped_mb); is it a zip bomb?",
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > _RATIO_FLOOR and ratio > limits.max_zip_ratio:
            raise LoaderError(
                str(path),
                f"the archive entry {entry.filename[:100]!r} is compressed {ratio:,.0f} times, over the limit of "
                f"{limits.max_zip_ratio:g} (ingest.max_zip_ratio); is it a zip bomb?",
            )
