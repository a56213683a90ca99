"""HTML (.html, .htm) through BeautifulSoup with lxml.

Page furniture (scripts, styles, navigation, headers, footers, asides, forms)
is dropped. ``h1``-``h6`` build the section path; paragraphs, lists, ``pre``,
block quotes and loose text become text blocks; tables become :class:`Table`.
Links and images are rewritten as Markdown (``[text](href)``, ``![alt](src)``).
A page nested deeper than ``max_html_depth`` elements is refused before it is walked.
"""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.documents import Block, ParsedDocument, Table
from bot.ingest.loaders.decoding import decode_bytes
from bot.ingest.loaders.outline import Outline

__all__ = ["load_html"]

_DROPPED = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form"]
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_INLINE = {
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
    "label", "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
}
_LINE_BREAK = "\u2028"  # stands for <br> while source whitespace is collapsed
_SPACES = re.compile(r"[ \t\n\r\f]+")


def load_html(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Parse an HTML page into blocks under its headings."""
    soup = BeautifulSoup(decode_bytes(data, path), "lxml")
    if _deeper_than(soup, limits.max_html_depth):
        raise LoaderError(
            str(path), f"elements are nested more than {limits.max_html_depth} deep (ingest.max_html_depth)"
        )
    for tag in soup(_DROPPED):
        tag.decompose()
    _rewrite_as_markdown(soup)
    title = _title(soup) or path.stem
    blocks: list[Block] = []
    _walk(soup.body or soup, title, Outline(), blocks)
    return ParsedDocument(title=title, blocks=tuple(blocks))


def _deeper_than(soup: BeautifulSoup, limit: int) -> bool:
    """Whether any element lies more than ``limit`` elements deep (walked without recursion)."""
    stack = [(soup, 0)]
    while stack:
        tag, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in tag.contents if isinstance(child, Tag))
    return False


def _title(soup: BeautifulSoup) -> str:
    for tag in (soup.title, soup.find("h1")):
        if tag is not None and _text(tag):
            return _text(tag)
    return ""


def _rewrite_as_markdown(soup: BeautifulSoup) -> None:
    """Turn images and links into Markdown text, and ``<br>`` into a line break."""
    for br in soup.find_all("br"):
        br.replace_with(_LINE_BREAK)
    for img in soup.find_all("img"):
        alt, src = img.get("alt", ""), img.get("src", "")
        img.replace_with(f"![{alt}]({src})" if src else alt)
    for link in soup.find_all("a"):
        href, text = link.get("href", ""), _text(link)
        if href and text and not href.startswith(("#", "javascript:")):
            link.replace_with(f"[{text}]({href})")
        else:
            link.unwrap()


def _walk(node: Tag, title: str, outline: Outline, blocks: list[Block]) -> None:
    loose: list[str] = []  # text not inside any block element, e.g. directly in a <div>

    def add(text: str) -> None:
        if text.strip():
            blocks.append(Block(section_path=outline.path, text=text.strip()))

    def flush() -> None:
        add(_collapse("".join(loose)))
        loose.clear()

    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, CDATA
            continue
        if isinstance(child, NavigableString) or child.name in _INLINE:
            loose.append(child.get_text() if isinstance(child, Tag) else str(child))
            continue
        flush()
        if child.name in _HEADINGS:
            heading = _text(child)
            outline.enter(_HEADINGS[child.name], "" if heading == title else heading)
        elif child.name == "pre":
            add(child.get_text().replace(_LINE_BREAK, "\n"))
        elif child.name in ("p", "blockquote"):
            add(_text(child))
        elif child.name in ("ul", "ol"):
            add(_list_text(child))
        elif child.name == "table":
            blocks.append(Block(section_path=outline.path, table=_table(child)))
        else:
            _walk(child, title, outline, blocks)
    flush()


def _text(tag: Tag) -> str:
    return _collapse(tag.get_text())


def _collapse(text: str) -> str:
    """Source whitespace is not significant in HTML; ``<br>`` is."""
    lines = _SPACES.sub(" ", text).split(_LINE_BREAK)
    return "\n".join(line.strip() for line in lines).strip()


def _list_text(tag: Tag) -> str:
    items = [_text(item) for item in tag.find_all("li", recursive=False)]
    if tag.name == "ol":
        return "\n".join(f"{number}. {item}" for number, item in enumerate(items, 1) if item)
    return "\n".join(f"- {item}" for item in items if item)


def _table(tag: Tag) -> Table:
    """The first row is the header when it is made of ``<th>`` cells."""
    rows = [row for row in tag.find_all("tr") if row.find(["th", "td"])]
    header: tuple[str, ...] = ()
    if rows and not rows[0].find("td"):
        header = tuple(_text(cell) for cell in rows.pop(0).find_all(["th", "td"]))
    caption = _text(tag.caption) if tag.caption else ""
    cells = tuple(tuple(_text(cell) for cell in row.find_all(["th", "td"])) for row in rows)
    return Table(header=header, rows=cells, caption=caption)
