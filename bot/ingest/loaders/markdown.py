"""Markdown (.md, .markdown) through markdown-it-py's syntax tree.

Headings build the section path; a leading ``#`` heading is the title.
Paragraphs, lists (one block per list, ``- `` bullets kept) and code blocks
become text blocks, tables become :class:`Table`. Links and images stay in
Markdown syntax so answers can show them.
"""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot.config import IngestSettings
from bot.ingest.documents import Block, ParsedDocument, Table
from bot.ingest.loaders.decoding import decode_bytes
from bot.ingest.loaders.outline import Outline

__all__ = ["load_markdown"]

_PARSER = MarkdownIt("commonmark").enable("table")
_LISTS = ("bullet_list", "ordered_list")


def load_markdown(path: Path, data: bytes, limits: IngestSettings) -> ParsedDocument:
    """Parse a Markdown file into blocks under their headings."""
    root = SyntaxTreeNode(_PARSER.parse(decode_bytes(data, path)))
    nodes = list(root.children)
    title = path.stem
    if nodes and nodes[0].type == "heading" and nodes[0].tag == "h1":
        title = _inline_text(nodes.pop(0).children[0]) or title
    blocks: list[Block] = []
    _walk(nodes, Outline(), blocks)
    return ParsedDocument(title=title, blocks=tuple(blocks))


def _walk(nodes: list[SyntaxTreeNode], outline: Outline, blocks: list[Block]) -> None:
    for node in nodes:
        if node.type == "heading":
            outline.enter(int(node.tag[1]), _inline_text(node.children[0]))
        elif node.type == "table":
            blocks.append(Block(section_path=outline.path, table=_table(node)))
        elif node.type in ("paragraph", "fence", "code_block", "html_block", *_LISTS):
            text = _block_text(node)
            if text:
                blocks.append(Block(section_path=outline.path, text=text))
        else:  # blockquote and other containers
            _walk(list(node.children), outline, blocks)


def _block_text(node: SyntaxTreeNode, depth: int = 0) -> str:
    if node.type == "paragraph":
        return _inline_text(node.children[0])
    if node.type in ("fence", "code_block"):
        return node.content.strip()
    if node.type == "html_block":
        return BeautifulSoup(node.content, "lxml").get_text().strip()
    if node.type in _LISTS:
        return _list_text(node, depth)
    return "\n".join(filter(None, (_block_text(child, depth) for child in node.children)))


def _list_text(node: SyntaxTreeNode, depth: int) -> str:
    """One line per item: ``- item`` or ``3. item``, nested lists indented."""
    start = int(node.attrs.get("start", 1))
    lines = []
    for number, item in enumerate(node.children, start):
        bullet = f"{number}. " if node.type == "ordered_list" else "- "
        for index, child in enumerate(item.children):
            text = _block_text(child, depth + 1)
            if child.type in _LISTS or not text:
                lines.append(text)
            else:
                lines.append("  " * depth + (bullet if index == 0 else "  ") + text)
    return "\n".join(line for line in lines if line)


def _inline_text(node: SyntaxTreeNode) -> str:
    """An inline run as text; links and images are written back as Markdown."""
    parts = []
    for child in node.children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(f"![{child.content}]({child.attrs['src']})")
        elif child.type == "link":
            parts.append(f"[{_inline_text(child)}]({child.attrs['href']})")
        elif child.type != "html_inline":  # strong, em, s: keep the words
            parts.append(_inline_text(child))
    return "".join(parts).strip()


def _table(node: SyntaxTreeNode) -> Table:
    header: tuple[str, ...] = ()
    rows = []
    for part in node.children:  # thead, tbody
        for row in part.children:
            cells = tuple(_inline_text(cell.children[0]) if cell.children else "" for cell in row.children)
            if part.type == "thead":
                header = cells
            else:
                rows.append(cells)
    return Table(header=header, rows=tuple(rows))
