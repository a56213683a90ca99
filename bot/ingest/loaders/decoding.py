"""Bytes to text for the text-based formats: UTF-8 first, then a confident guess."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import charset_normalizer

from bot.errors import LoaderError

__all__ = ["decode_bytes"]

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters other than tab, newline, carriage return and form feed:
# text in any real encoding does not contain them, binary data does.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_bytes(data: bytes, path: Path | str) -> str:
    """Decode a text file: a BOM if present, else UTF-8, else a confident guess.

    The guess (charset-normalizer) covers legacy encodings such as GB18030
    and Big5; among plausible readings a Chinese one is preferred, since short
    Big5 text also reads as Shift-JIS. Binary or garbled data raises
    :class:`LoaderError`.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data, encoding, path)
    try:
        text = data.decode("utf-8")
        if "\x00" not in text:  # NUL bytes: binary, or UTF-16 without a BOM
            return text
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(data)
    match = next((m for m in matches if m.language == "Chinese"), matches.best())
    text = str(match) if match is not None else ""
    if match is None or _CONTROL.search(text):
        raise LoaderError(
            str(path),
            "bad encoding: the file is not UTF-8 and its encoding cannot be detected "
            "(is it a binary file?); save it as UTF-8 and ingest it again",
        )
    return text


def _strict(data: bytes, encoding: str, path: Path | str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LoaderError(
            str(path),
            f"bad encoding: the file starts with a {encoding} byte-order mark but is not "
            f"valid {encoding} (byte {exc.start}); save it as UTF-8 and ingest it again",
        ) from exc
