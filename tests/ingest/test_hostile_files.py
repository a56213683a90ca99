"""Hostile files: each fails alone with its reason, in bounded memory and time, and a killed
ingestion resumes without embedding again what it had stored.

Everything is real: the bombs are built here (streamed, never held in memory), `bot ingest`
runs as a subprocess of its own, and the parser child is the real one (killed for real in
one test). The limits are checked with small settings where the defaults would need big files.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import psutil
import pytest
from reportlab.pdfgen import canvas

import kb_project as kb
from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.loaders import load_file
from bot.ingest.parser_process import ParserProcess

MiB = 1024 * 1024
GiB = 1024 * MiB
BOT = Path(sys.executable).parent / "bot"

# --------------------------------------------------------------------------- hostile builders

DOCX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'wordprocessingml.document.main+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="word/document.xml"/></Relationships>'
    ),
}
DOCX_BODY = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>',
    b"<w:p><w:r><w:t>The bomb goes on.</w:t></w:r></w:p>",
    b"</w:body></w:document>",
)

XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="FAQ" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
    ),
}


def inline_row(*cells: str) -> bytes:
    return ("<row>" + "".join(f'<c t="inlineStr"><is><t>{c}</t></is></c>' for c in cells) + "</row>").encode()


def sheet_xml(dimension: str = "") -> tuple[bytes, bytes, bytes]:
    """Head, repeated row, tail of a first sheet with a question/answer header."""
    head = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        + (f'<dimension ref="{dimension}"/>'.encode() if dimension else b"")
        + b"<sheetData>"
        + inline_row("question", "answer")
    )
    return head, inline_row("How big is the bomb?", "Bigger than you think."), b"</sheetData></worksheet>"


def write_office_file(path: Path, parts: dict[str, str], name: str, xml: tuple[bytes, bytes, bytes], size: int):
    """A zip of ``parts`` and one entry ``name``: head, the unit repeated to ``size`` bytes, tail,
    written in 1 MiB blocks with ZIP_DEFLATED (so a 1 GiB entry takes a few MB on disk)."""
    head, unit, tail = xml
    block = unit * (MiB // len(unit))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, text in parts.items():
            archive.writestr(part, text)
        with archive.open(name, "w", force_zip64=True) as entry:
            entry.write(head)
            written = len(head)
            while written + len(block) <= size:
                entry.write(block)
                written += len(block)
            entry.write(unit * ((size - written) // len(unit)))
            entry.write(tail)


def write_docx(path: Path, size: int) -> None:
    write_office_file(path, DOCX_PARTS, "word/document.xml", DOCX_BODY, size)


def write_xlsx(path: Path, size: int, dimension: str = "") -> None:
    write_office_file(path, XLSX_PARTS, "xl/worksheets/sheet1.xml", sheet_xml(dimension), size)


def pdf_bytes(objects: list[bytes]) -> bytes:
    """A PDF of ``objects`` (numbered from 1: the catalog first, the info dictionary last)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, len(objects), xref,
    )
    return bytes(out)


def one_page_pdf(stream: bytes, *, info: bytes = b"<< /Title (Hostile) >>", flate: bool = False) -> bytes:
    """One page with a Helvetica text stream."""
    return pdf_bytes([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(stream), b" /Filter /FlateDecode" if flate else b"", stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        info,
    ])


TEXT_STREAM = b"BT /F1 12 Tf 72 720 Td (A page of text.) Tj ET"


def write_deep_pdf(path: Path, depth: int = 100_000) -> None:
    """Its title is an array nested ``depth`` deep."""
    path.write_bytes(one_page_pdf(TEXT_STREAM, info=b"<< /Title " + b"[" * depth + b"(x)" + b"]" * depth + b" >>"))


def write_flate_bomb_pdf(path: Path, size: int = GiB) -> None:
    """A page whose content stream inflates to ``size`` bytes of spaces (about 1 MB on disk)."""
    packer = zlib.compressobj()
    block = b" " * MiB
    stream = [packer.compress(TEXT_STREAM + b"\n")]
    stream += [packer.compress(block) for _ in range(size // MiB)]
    stream.append(packer.flush())
    path.write_bytes(one_page_pdf(b"".join(stream), flate=True))


def write_many_pages_pdf(path: Path, pages: int) -> None:
    page = canvas.Canvas(str(path))
    for number in range(pages):
        page.drawString(72, 720, f"Page {number + 1} of a manual that never ends.")
        page.showPage()
    page.save()


def nested_html(depth: int) -> str:
    return "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "<p>After.</p></body></html>"


# --------------------------------------------------------------------------- the hostile folder

#: file name -> what its failure line says
HOSTILE = {
    "nested.html": "nested more than 256 deep (ingest.max_html_depth)",
    "bomb.docx": "inflates to 1,024 MB, over the limit of 200 MB (ingest.max_unzipped_mb)",
    "bomb.xlsx": "inflates to 1,024 MB, over the limit of 200 MB (ingest.max_unzipped_mb)",
    "-rf 炸弹\nbomb.docx": "inflates to 1,024 MB",  # a copy under an odd name
    "pages.pdf": "3000 pages, over the limit of 2000 (ingest.max_pdf_pages)",
    "deep.pdf": "nested too deeply for the parser (RecursionError)",
    "flate-bomb.pdf": "the parser ran out of memory (it may use 512 MB: ingest.max_parse_mb)",
}
#: good files under odd names: ingested like any other
ODD_NAMES = ["ünïcode 文件 name.md", "-leading-dash.txt", "长" * 80 + ".txt", "tab\tand\nnewline.txt"]
#: a name that is not UTF-8 (bytes), with good content
NOT_UTF8 = b"latin1-\xe9t\xe9.txt"


def printable(name: str) -> str:
    return name.replace("\t", "\\t").replace("\n", "\\n")


@pytest.fixture(scope="module")
def hostile_project(tmp_path_factory) -> Path:
    root = kb.write_project(tmp_path_factory.mktemp("hostile") / "project", knowledge=False)
    hostile = root / "knowledge" / "hostile"
    hostile.mkdir()
    (hostile / "nested.html").write_text(nested_html(100_000), "utf-8")
    write_docx(hostile / "bomb.docx", GiB)
    (hostile / "-rf 炸弹\nbomb.docx").write_bytes((hostile / "bomb.docx").read_bytes())
    write_xlsx(hostile / "bomb.xlsx", GiB)
    write_many_pages_pdf(hostile / "pages.pdf", 3000)
    write_deep_pdf(hostile / "deep.pdf")
    write_flate_bomb_pdf(hostile / "flate-bomb.pdf")
    good = root / "knowledge" / "good"
    good.mkdir()
    (good / "guide.md").write_text(kb.GUIDE_MD, "utf-8")
    for number, name in enumerate(ODD_NAMES):
        (good / name).write_text(f"Odd file {number}: the warranty lasts {number + 1} years.\n", "utf-8")
    with open(os.path.join(os.fsencode(good), NOT_UTF8), "wb") as file:
        file.write(b"A good text under a name that is not UTF-8.\n")
    return root


#: Runs the command after it and prints, as its last line on stderr, the peak RSS (KiB) of the
#: largest process of the command's tree, from the kernel. A process forked from pytest itself
#: would start with pytest's pages counted in its peak (Linux keeps the peak across exec).
LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def run_measured(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, int, int, float]:
    """Run a command alone; its output, its peak RSS (the largest process of its tree, from the
    kernel) and the peak of its whole tree's RSS summed (polled), both in bytes, and seconds."""
    started = time.monotonic()
    with open(os.devnull, "rb") as stdin:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    output: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda name=name, pipe=pipe: output.__setitem__(name, pipe.read()))
        for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    tree_peak = 0
    while True:
        pid, status, _ = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            process.kill()
            pytest.fail(f"{args} ran longer than {timeout} s")
        tree_peak = max(tree_peak, tree_rss(process.pid))
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    stderr, _, peak_kib = output["stderr"].decode().rstrip("\n").rpartition("\n")
    done = subprocess.CompletedProcess(args, process.returncode, output["stdout"].decode(), stderr)
    return done, int(peak_kib) * 1024, tree_peak, time.monotonic() - started


def tree_rss(pid: int) -> int:
    try:
        parent = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
    except psutil.Error:
        return 0


def test_bot_ingest_fails_each_hostile_file_alone_in_bounded_memory_and_time(hostile_project):
    done, peak, tree_peak, seconds = run_measured(
        [str(BOT), "--root", str(hostile_project), "ingest"], timeout=300
    )
    print(f"bot ingest on the hostile folder: {seconds:.1f} s, peak RSS {peak / MiB:.0f} MB "
          f"(largest process), {tree_peak / MiB:.0f} MB (whole tree, polled)")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAILED ")]
    for name, reason in HOSTILE.items():
        prefix = f"FAILED knowledge/hostile/{printable(name)}: "
        mine = [line for line in failed if line.startswith(prefix)]
        assert len(mine) == 1 and reason in mine[0], (name, failed)
    not_utf8 = "FAILED knowledge/good/latin1-\\udce9t\\udce9.txt: the file name is not valid UTF-8; rename the file"
    assert not_utf8 in failed
    assert len(failed) == len(HOSTILE) + 1, failed
    good = 1 + len(ODD_NAMES)
    assert f"documents: {good} added, 0 updated, 0 removed, 0 unchanged, {len(HOSTILE) + 1} failed" in lines
    assert "verified: every chunk is in the store" in lines
    assert peak < GiB and tree_peak < GiB
    assert seconds < 180
    with kb.engine_for(hostile_project) as engine:
        sources = set(engine.manifest.documents())
        assert {f"knowledge/good/{name}" for name in ["guide.md", *ODD_NAMES]} <= sources
        hits = engine.retrieve("How long does the pen take to charge?", top_k=3).hits
        assert hits and hits[0].payload["source"] == "knowledge/good/guide.md"


def test_a_stored_file_turned_hostile_keeps_its_chunks(tmp_path):
    root = kb.write_project(tmp_path / "project")
    page = root / "knowledge" / "docs" / "returns.html"
    page.write_text("<html><body><h1>Returns</h1><p>Returns are accepted within 30 days.</p></body></html>", "utf-8")
    with kb.engine_for(root) as engine:
        assert engine.ingest(progress=False).failures == []
        stored = set(engine.manifest.chunks("knowledge/docs/returns.html"))
        page.write_text(nested_html(100_000), "utf-8")
        report = engine.ingest(progress=False)
        assert report.failures == [("knowledge/docs/returns.html", report.failures[0][1])]
        assert "nested more than 256 deep" in report.failures[0][1] and report.complete
        assert engine.store.existing_ids(list(stored)) == stored
        hits = engine.retrieve("How many days do I have to return it?", top_k=3).hits
        assert "knowledge/docs/returns.html" in [hit.payload["source"] for hit in hits]


# --------------------------------------------------------------------------- each limit


def test_the_bombs_structures_are_valid_when_small(tmp_path):
    """The bombs above are refused for their size, not their shape: small, they parse."""
    write_docx(tmp_path / "small.docx", 10_000)
    write_xlsx(tmp_path / "small.xlsx", 10_000)
    docx = load_file(tmp_path / "small.docx", max_bytes=MiB)
    assert docx.blocks and docx.blocks[0].text == "The bomb goes on."
    xlsx = load_file(tmp_path / "small.xlsx", max_bytes=MiB)
    assert len(xlsx.faq_items) > 10 and xlsx.faq_items[0].answer == "Bigger than you think."


def test_a_zip_entry_compressed_past_the_ratio_is_refused_before_parsing(tmp_path):
    path = tmp_path / "ratio.docx"
    write_docx(path, 50 * MiB)  # under max_unzipped_mb, but compressed about 1000 times
    with pytest.raises(LoaderError, match=r"'word/document.xml' is compressed [\d,]+ times, over the limit of 100"):
        load_file(path, max_bytes=MiB)


def test_a_zip_with_too_many_entries_is_refused(tmp_path):
    path = tmp_path / "entries.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        for number in range(12):
            archive.writestr(f"part{number}.xml", "<x/>")
    with pytest.raises(LoaderError, match=r"12 entries, over the limit of 10 \(ingest.max_zip_entries\)"):
        load_file(path, max_bytes=MiB, limits=IngestSettings(max_zip_entries=10))


def test_a_sheet_over_the_cell_limit_fails_and_a_false_dimension_does_not_pad_rows(tmp_path):
    path = tmp_path / "cells.xlsx"
    write_xlsx(path, 20_000)  # about 200 rows of 2 cells
    with pytest.raises(LoaderError, match=r"over 100 cells \(ingest.max_xlsx_cells\)"):
        load_file(path, max_bytes=MiB, limits=IngestSettings(max_xlsx_cells=100))
    # A sheet claiming every row and column of Excel holds a few rows: read as those, not 17 billion cells.
    false = tmp_path / "dimension.xlsx"
    write_xlsx(false, 2000, dimension="A1:XFD1048576")
    head, unit, _ = sheet_xml("A1:XFD1048576")
    started = time.monotonic()
    items = load_file(false, max_bytes=MiB, limits=IngestSettings(max_xlsx_cells=1000)).faq_items
    assert len(items) == (2000 - len(head)) // len(unit) and time.monotonic() - started < 30


def test_text_over_the_limit_fails(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("A sentence of text.\n\n" * 100, "utf-8")
    with pytest.raises(LoaderError, match=r"1,900 characters of text, over the limit of 1,000"):
        load_file(path, max_bytes=MiB, limits=IngestSettings(max_text_chars=1000))


def test_pdf_text_over_the_limit_stops_at_the_page_that_passes_it(tmp_path):
    path = tmp_path / "pages.pdf"
    write_many_pages_pdf(path, 50)
    with pytest.raises(LoaderError, match=r"the text runs past 200 characters"):
        load_file(path, max_bytes=MiB, limits=IngestSettings(max_text_chars=200))


def test_html_depth_at_the_limit_parses_and_past_it_fails(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(nested_html(200), "utf-8")
    assert [b.text for b in load_file(path, max_bytes=MiB).blocks] == ["deep text", "After."]
    path.write_text(nested_html(300), "utf-8")
    with pytest.raises(LoaderError, match=r"nested more than 256 deep"):
        load_file(path, max_bytes=MiB)


def test_a_recursion_error_in_a_loader_fails_that_file(tmp_path):
    """With the depth limit lifted, the HTML walker itself runs out of stack: a clear failure."""
    path = tmp_path / "nested.html"
    path.write_text(nested_html(100_000), "utf-8")
    with pytest.raises(LoaderError, match=r"nested too deeply for the parser \(RecursionError\)"):
        load_file(path, max_bytes=10 * MiB, limits=IngestSettings(max_html_depth=10**9))


# --------------------------------------------------------------------------- the parser child


def slow_html(path: Path) -> Path:
    """About 4.5 MB of paragraphs: a few seconds of parsing."""
    path.write_text("<html><body>" + "<p>A paragraph of a long page.</p>" * 100_000 + "</body></html>", "utf-8")
    return path


def test_a_file_parsed_too_long_is_stopped_and_the_next_file_parses(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("Small and quick.", "utf-8")
    parser = ParserProcess(IngestSettings(max_parse_seconds=1))
    try:
        assert parser.load(small).blocks  # the child is up (its start is not timed)
        started = time.monotonic()
        with pytest.raises(LoaderError, match=r"parsing took longer than 1 s \(ingest.max_parse_seconds\)"):
            parser.load(slow_html(tmp_path / "slow.html"))
        assert time.monotonic() - started < 10
        assert parser.load(small).blocks[0].text == "Small and quick."
    finally:
        parser.close()


def test_a_parser_over_its_memory_fails_that_file(tmp_path):
    parser = ParserProcess(IngestSettings(max_parse_mb=256))  # the child's imports take about 180 MB
    try:
        with pytest.raises(LoaderError, match=r"ran out of memory \(it may use 256 MB: ingest.max_parse_mb\)"):
            parser.load(slow_html(tmp_path / "big.html"))
        good = tmp_path / "good.md"
        good.write_text("# Fine\n\nStill parsing.", "utf-8")
        assert parser.load(good).blocks[0].text == "Still parsing."
    finally:
        parser.close()


def test_a_parser_child_that_dies_fails_its_file_and_a_new_one_takes_over(tmp_path):
    """The child is killed for real (as the kernel's OOM killer would) while it parses."""
    parser = ParserProcess(IngestSettings())
    small = tmp_path / "small.txt"
    small.write_text("Small and quick.", "utf-8")
    try:
        parser.load(small)
        child = parser._process.pid
        killer = threading.Timer(0.5, os.kill, (child, signal.SIGKILL))
        killer.start()
        with pytest.raises(LoaderError, match=r"the parser process died \(signal SIGKILL\)"):
            parser.load(slow_html(tmp_path / "slow.html"))
        killer.join()
        assert parser.load(small).blocks and parser._process.pid != child
    finally:
        parser.close()


def test_no_parser_child_outlives_a_run(tmp_path):
    root = kb.write_project(tmp_path / "project")
    with kb.engine_for(root) as engine:
        engine.ingest(progress=False)
    assert not [c for c in psutil.Process().children(recursive=True) if "parser_process" in " ".join(c.cmdline())]


# --------------------------------------------------------------------------- resuming after a kill


def faq_rows(n: int) -> list[tuple[str, str, str, str, str]]:
    return [
        (f"item-{i}", f"How do I set up feature number {i}?",
         f"Open Settings, choose Features, then turn on feature {i} and press Save.", "nimbus-note", "setup")
        for i in range(n)
    ]


def journaled(root: Path) -> int:
    """Chunks the manifest lists (the journal of what is stored), read beside the running ingestion."""
    try:
        with sqlite3.connect(f"file:{root / '.bot' / 'bot.db'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("select count(*) from chunks").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or busy
        return 0


def test_a_killed_ingestion_resumes_without_embedding_again(tmp_path):
    total = 500
    root = kb.write_project(tmp_path / "project", knowledge=False)
    (root / "knowledge" / "faq.csv").write_text(kb.faq_csv(faq_rows(total)), "utf-8")
    command = [str(BOT), "--root", str(root), "ingest", "--json"]
    first = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while journaled(root) < 96 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before it could be killed: use a larger corpus"
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    stored_before = journaled(root)
    assert 96 <= stored_before < total

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    print(f"killed after {stored_before} of {total} chunks were stored; the next run embedded {report['embedded']}")
    assert report["complete"] and report["failures"] == []
    assert report["embedded"] == total - stored_before
    assert report["chunks"]["unchanged"] == stored_before and report["chunks"]["added"] == total - stored_before
    with kb.engine_for(root) as engine:
        assert engine.store.count() == total and len(engine.manifest.chunks()) == total
        document = engine.manifest.documents()["knowledge/faq.csv"]
        assert document.sha256 and document.n_chunks == total
        top = engine.retrieve("How do I set up feature number 7?", top_k=1).hits[0]  # stored by the killed run
        assert top.payload["item_id"] == "item-7"
        assert engine.ingest(progress=False).embedded == 0
