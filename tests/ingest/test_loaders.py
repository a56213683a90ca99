"""Loaders on real files written at test time, and on the bad inputs users bring."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import openpyxl
import pytest
from docx import Document
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfgen import canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table as PdfTable, TableStyle

from bot.errors import LoaderError
from bot.ingest.documents import Table
from bot.ingest.loaders import SUPPORTED_SUFFIXES, load_file
from bot.lang import detect_language

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 50 * 1024 * 1024


def load(path: Path):
    return load_file(path, max_bytes=LIMIT)


def texts(doc) -> list[str]:
    return [block.text for block in doc.blocks if block.table is None]


def tables(doc) -> list[Table]:
    return [block.table for block in doc.blocks if block.table is not None]


def write_pricing_pdf(path: Path) -> None:
    """Two pages with a running footer, headings, paragraphs and a ruled table."""
    styles = getSampleStyleSheet()

    def footer(page: canvas.Canvas, _doc) -> None:
        page.setFont("Helvetica", 8)
        page.drawString(72, 30, f"Acme Cloud - page {page.getPageNumber()} of 2")

    grid = PdfTable([
        ["Plan", "Monthly price", "Storage"],
        ["Free", "$0", "5 GB"],
        ["Plus", "$18", "50 GB"],
        ["Team", "$49", "1 TB"],
    ])
    grid.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    template = SimpleDocTemplate(str(path), pagesize=A4, title="Acme Cloud Pricing")
    template.build([
        Paragraph("Acme Cloud Pricing", styles["Title"]),
        Paragraph("Plans", styles["Heading1"]),
        Paragraph(
            "Acme Cloud offers three plans. Every plan includes end-to-end encryption, automatic "
            "backups and access from any device. You can upgrade or downgrade at any time from the "
            "account page.",
            styles["BodyText"],
        ),
        Paragraph("Prices are billed monthly. Annual billing saves two months.", styles["BodyText"]),
        grid,
        PageBreak(),
        Paragraph("Refunds", styles["Heading1"]),
        Paragraph("If you cancel within 14 days of purchase, we refund the full amount.", styles["BodyText"]),
    ], onFirstPage=footer, onLaterPages=footer)


# --- formats -------------------------------------------------------------------------------


def test_text_splits_paragraphs_on_blank_lines(tmp_path):
    path = tmp_path / "会员说明.txt"
    path.write_text(
        "Plus 会员每月 18 元，年付 168 元。\n会员可以在账户页随时取消。\n\n\n"
        "Members can cancel at any time.\r\n\r\n   \n最后一段。\n",
        encoding="utf-8",
    )
    doc = load(path)
    assert doc.title == "会员说明"
    assert texts(doc) == [
        "Plus 会员每月 18 元，年付 168 元。\n会员可以在账户页随时取消。",
        "Members can cancel at any time.",
        "最后一段。",
    ]
    assert all(block.section_path == () for block in doc.blocks)


def test_text_in_utf16_with_bom_and_in_gb18030(tmp_path):
    content = "退款政策：购买后 14 天内可以全额退款。\n\nRefunds within 14 days."
    (tmp_path / "a.txt").write_bytes(content.encode("utf-16"))
    (tmp_path / "b.txt").write_bytes(content.encode("gb18030"))
    for name in ("a.txt", "b.txt"):
        assert texts(load(tmp_path / name)) == ["退款政策：购买后 14 天内可以全额退款。", "Refunds within 14 days."]


def test_markdown_sections_lists_tables_links_and_images(tmp_path):
    path = tmp_path / "pricing.md"
    path.write_text(
        """# 价格与套餐

All plans include **encryption**. See the [pricing page](https://acme.example/pricing).

## 套餐

![套餐对比图](images/plans.png)

| 套餐 | 月费 | 存储空间 |
|------|------|----------|
| 免费版 | ¥0 | 5 GB |
| Plus | ¥18 | 50 GB |

- 随时升级
- 随时降级，差价按天退还

1. Open *Settings*
2. Choose `Billing`

### 支付方式

> 支持支付宝和微信支付。

```
curl https://acme.example/api/plans
```

# Appendix

Contact [support][help].

[help]: mailto:help@acme.example
""",
        encoding="utf-8",
    )
    doc = load(path)
    assert doc.title == "价格与套餐"
    by_text = {block.text: block.section_path for block in doc.blocks if block.table is None}
    assert by_text == {
        "All plans include encryption. See the [pricing page](https://acme.example/pricing).": (),
        "![套餐对比图](images/plans.png)": ("套餐",),
        "- 随时升级\n- 随时降级，差价按天退还": ("套餐",),
        "1. Open Settings\n2. Choose Billing": ("套餐",),
        "支持支付宝和微信支付。": ("套餐", "支付方式"),
        "curl https://acme.example/api/plans": ("套餐", "支付方式"),
        "Contact [support](mailto:help@acme.example).": ("Appendix",),
    }
    [table] = tables(doc)
    assert table.header == ("套餐", "月费", "存储空间")
    assert table.rows == (("免费版", "¥0", "5 GB"), ("Plus", "¥18", "50 GB"))
    assert [block.section_path for block in doc.blocks if block.table] == [("套餐",)]


def test_markdown_without_leading_title_uses_the_file_name(tmp_path):
    path = tmp_path / "notes.markdown"
    path.write_text("Intro first.\n\n# Later heading\n\nBody.\n", encoding="utf-8")
    doc = load(path)
    assert doc.title == "notes"
    assert [(b.section_path, b.text) for b in doc.blocks] == [((), "Intro first."), (("Later heading",), "Body.")]


def test_html_drops_page_furniture_and_keeps_links_as_markdown(tmp_path):
    path = tmp_path / "help.html"
    path.write_text(
        """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>帮助中心 - Acme</title>
<style>p { color: red; }</style><script>var tracking = "secret";</script></head>
<body>
<header><div class="logo">Acme header</div></header>
<nav><a href="/">首页</a> <a href="/about">关于我们</a></nav>
<main>
  <h1>帮助中心</h1>
  <p>如需帮助，请访问<a href="https://acme.example/support">支持页面</a>。
     Or e-mail us.</p>
  <h2>Accounts</h2>
  <p>To reset your password, open <b>Settings</b><br>then click <i>Reset</i>.</p>
  <p><img src="/img/reset.png" alt="Reset button"></p>
  <ul><li>Use 12 characters or more</li><li>不要重复使用旧密码</li></ul>
  <div>Loose text in a div.</div>
  <h3>Billing</h3>
  <table><caption>套餐价格</caption>
    <tr><th>套餐</th><th>月费</th></tr>
    <tr><td>Plus</td><td>¥18</td></tr>
    <tr><td>Team</td><td>¥49</td></tr>
  </table>
  <pre>line one
  line two</pre>
  <aside>Related: ads</aside>
  <form><input name="q"><button>搜索</button></form>
</main>
<footer>© 2024 Acme footer</footer>
</body></html>""",
        encoding="utf-8",
    )
    doc = load(path)
    assert doc.title == "帮助中心 - Acme"
    assert [(b.section_path, b.text) for b in doc.blocks if b.table is None] == [
        (("帮助中心",), "如需帮助，请访问[支持页面](https://acme.example/support)。 Or e-mail us."),
        (("帮助中心", "Accounts"), "To reset your password, open Settings\nthen click Reset."),
        (("帮助中心", "Accounts"), "![Reset button](/img/reset.png)"),
        (("帮助中心", "Accounts"), "- Use 12 characters or more\n- 不要重复使用旧密码"),
        (("帮助中心", "Accounts"), "Loose text in a div."),
        (("帮助中心", "Accounts", "Billing"), "line one\n  line two"),
    ]
    everything = " ".join(b.text for b in doc.blocks)
    for dropped in ("tracking", "color: red", "Acme header", "关于我们", "ads", "搜索", "footer"):
        assert dropped not in everything
    [table] = tables(doc)
    assert table == Table(header=("套餐", "月费"), rows=(("Plus", "¥18"), ("Team", "¥49")), caption="套餐价格")


def test_pdf_paragraphs_headings_and_table_without_duplicated_text(tmp_path):
    path = tmp_path / "pricing.pdf"
    write_pricing_pdf(path)
    doc = load(path)
    assert doc.title == "Acme Cloud Pricing"
    assert texts(doc) == [
        "Acme Cloud offers three plans. Every plan includes end-to-end encryption, automatic backups and "
        "access from any device. You can upgrade or downgrade at any time from the account page.",
        "Prices are billed monthly. Annual billing saves two months.",
        "If you cancel within 14 days of purchase, we refund the full amount.",
    ]
    assert [b.section_path for b in doc.blocks] == [("Plans",)] * 3 + [("Refunds",)]
    [table] = tables(doc)
    assert table.header == ("Plan", "Monthly price", "Storage")
    assert table.rows == (("Free", "$0", "5 GB"), ("Plus", "$18", "50 GB"), ("Team", "$49", "1 TB"))
    assert doc.blocks[2].table == table  # in reading order, after the text above it
    assert not any("$18" in text or "Monthly price" in text for text in texts(doc))  # table text kept apart
    assert not any("page 1 of 2" in text for text in texts(doc))  # running footer dropped


def test_chinese_pdf_from_the_knowledge_base():
    path = ROOT / "knowledge" / "docs" / "pricing_and_plans.pdf"
    assert path.exists(), f"{path} is part of the demo knowledge base"
    doc = load(path)
    content = "\n".join(texts(doc)) + "".join(cell for t in tables(doc) for row in (t.header, *t.rows) for cell in row)
    assert detect_language(content) == "zh"
    assert "(cid:" not in content  # glyphs without a Unicode mapping would show up like this
    assert doc.title


def test_docx_title_headings_lists_and_tables_in_document_order(tmp_path):
    path = tmp_path / "handbook.docx"
    document = Document()
    document.add_paragraph("员工手册", style="Title")
    document.add_paragraph("This handbook explains leave and expenses.")
    document.add_heading("休假", level=1)
    document.add_paragraph("每位员工每年有 15 天带薪年假。")
    document.add_paragraph("提前三天申请", style="List Bullet")
    document.add_paragraph("主管审批后生效", style="List Bullet")
    document.add_heading("Sick leave", level=2)
    document.add_paragraph("Bring a doctor's note after two days.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(table.rows, [("类型", "天数"), ("年假", "15"), ("病假", "10")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_heading("Expenses", level=1)
    document.add_paragraph("")  # empty paragraphs are skipped
    document.add_paragraph("Submit receipts within 30 days.")
    document.save(path)

    doc = load(path)
    assert doc.title == "员工手册"
    assert [(b.section_path, b.text or b.table) for b in doc.blocks] == [
        ((), "This handbook explains leave and expenses."),
        (("休假",), "每位员工每年有 15 天带薪年假。"),
        (("休假",), "- 提前三天申请\n- 主管审批后生效"),
        (("休假", "Sick leave"), "Bring a doctor's note after two days."),
        (("休假", "Sick leave"), Table(header=("类型", "天数"), rows=(("年假", "15"), ("病假", "10")))),
        (("Expenses",), "Submit receipts within 30 days."),
    ]


def test_xlsx_faq_with_chinese_headers(tmp_path):
    path = tmp_path / "客服问答.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["编号", "标准问题", "答案", "分类", "备注"])
    sheet.append([101, "如何重置密码？", "在登录页点击“忘记密码”，按提示操作即可。", "账户", None])
    sheet.append([None, "会员每月多少钱？", "Plus 会员每月 18 元。", "价格", "2024 年价格"])
    sheet.append([None, None, None, None, None])  # blank: ignored
    sheet.append(["x", "只有问题没有答案？", None, "其他", None])  # skipped and counted
    sheet.append([None, "What payment methods do you accept?", "Alipay, WeChat Pay and cards.", None, None])
    workbook.create_sheet("Other").append(["question", "answer"])
    workbook.save(path)

    doc = load(path)
    assert doc.metadata["skipped_rows"] == 1
    assert [(i.id, i.question, i.answer, i.metadata) for i in doc.faq_items] == [
        ("101", "如何重置密码？", "在登录页点击“忘记密码”，按提示操作即可。", {"分类": "账户"}),
        ("客服问答-3", "会员每月多少钱？", "Plus 会员每月 18 元。", {"分类": "价格", "备注": "2024 年价格"}),
        ("客服问答-6", "What payment methods do you accept?", "Alipay, WeChat Pay and cards.", {}),
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_faq_in_utf8_and_gb18030(tmp_path, encoding):
    path = tmp_path / "faq.csv"
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "Question", "Answer", "Category"])
        writer.writerow(["pw-1", "如何重置密码？", "在登录页点击“忘记密码”，然后按提示操作，即可重置。", "账户"])
        writer.writerow(["", "退款需要多久？", "退款会在 3 到 5 个工作日内原路退回。", "支付"])
        writer.writerow(["en-1", "How do I cancel?", "Open Settings, then Billing, then Cancel.\nThat's it.", ""])
    doc = load(path)
    assert doc.title == "faq"
    assert doc.metadata == {"skipped_rows": 0}
    assert [(i.id, i.question, i.answer, i.metadata) for i in doc.faq_items] == [
        ("pw-1", "如何重置密码？", "在登录页点击“忘记密码”，然后按提示操作，即可重置。", {"Category": "账户"}),
        ("faq-3", "退款需要多久？", "退款会在 3 到 5 个工作日内原路退回。", {"Category": "支付"}),
        ("en-1", "How do I cancel?", "Open Settings, then Billing, then Cancel.\nThat's it.", {}),
    ]


def test_csv_with_semicolons_is_sniffed(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("q;a\nWhat is Plus?;Our paid plan, with 50 GB.\n", encoding="utf-8")
    [item] = load(path).faq_items
    assert (item.question, item.answer) == ("What is Plus?", "Our paid plan, with 50 GB.")


def test_jsonl_faq_items_and_passages(tmp_path):
    path = tmp_path / "kb.jsonl"
    records = [
        {"id": "covid-0", "question": "What is a novel coronavirus?", "answer": "A new coronavirus.", "source": "cdc"},
        {"id": "esun-1-0", "doc": "esun-1", "question": "什麼是網路金融卡收款?", "answer": "消費者透過讀卡機轉帳支付。"},
        {"id": "cmrc-1", "title": "泡泡战士", "text": "基于《跑跑卡丁车》开发的游戏。", "lang": "zh"},
        {"question": "No answer here", "answer": ""},
        {"title": "Untitled passage without id", "text": "Some text.", "doc": "d-9"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    doc = load(path)
    assert doc.metadata["skipped_rows"] == 1
    items = {item.id: item for item in doc.faq_items}
    assert list(items) == ["covid-0", "esun-1-0", "cmrc-1", "kb-5"]
    assert items["covid-0"].metadata == {"source": "cdc"}
    assert items["esun-1-0"].doc == "esun-1"
    passage = items["cmrc-1"]
    assert (passage.question, passage.answer) == ("", "基于《跑跑卡丁车》开发的游戏。")
    assert passage.metadata == {"title": "泡泡战士", "lang": "zh"}
    assert (items["kb-5"].doc, items["kb-5"].metadata["title"]) == ("d-9", "Untitled passage without id")


# --- bad inputs ----------------------------------------------------------------------------


def reason(path: Path, **kwargs) -> str:
    with pytest.raises(LoaderError) as caught:
        load_file(path, max_bytes=kwargs.get("max_bytes", LIMIT))
    assert caught.value.path == str(path)
    return caught.value.reason


def test_random_bytes_named_pdf_is_corrupt(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(random.Random(1).randbytes(4096))
    assert "not a readable PDF" in reason(path)


def test_truncated_pdf_is_corrupt(tmp_path):
    whole = tmp_path / "whole.pdf"
    write_pricing_pdf(whole)
    path = tmp_path / "truncated.pdf"
    path.write_bytes(whole.read_bytes()[:400])
    assert "not a readable PDF" in reason(path)


def test_scanned_pdf_without_text_layer(tmp_path):
    path = tmp_path / "scan.pdf"
    page = canvas.Canvas(str(path))
    page.rect(100, 100, 300, 400, fill=1)
    page.save()
    assert "no text layer; OCR is not supported" in reason(path)


def test_corrupt_docx_and_xlsx(tmp_path):
    for name in ("report.docx", "faq.xlsx"):
        path = tmp_path / name
        path.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
        assert "corrupt" in reason(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    assert "empty" in reason(path)


def test_file_with_no_text_after_parsing(tmp_path):
    path = tmp_path / "blank.html"
    path.write_text("<html><body><nav>menu</nav><script>x()</script></body></html>", encoding="utf-8")
    assert "no text found" in reason(path)


def test_random_bytes_are_a_bad_encoding(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(random.Random(7).randbytes(4096))
    assert "bad encoding" in reason(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "slides.pptx"
    path.write_bytes(b"something")
    text = reason(path)
    assert "unsupported file type '.pptx'" in text
    assert all(suffix in text for suffix in SUPPORTED_SUFFIXES)


def test_file_over_the_size_limit(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * (3 * 1024 * 1024 + 200_000))
    assert reason(path, max_bytes=2 * 1024 * 1024) == "file is 3.19 MB, over the 2 MB limit (ingest.max_file_mb)"


def test_faq_csv_without_an_answer_column(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("id,question,category\n1,How do I pay?,billing\n", encoding="utf-8")
    text = reason(path)
    assert "missing the answer column" in text
    assert "'id', 'question', 'category'" in text
    assert "answer, a, 答案, 回答" in text


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_text('{"id": "1", "question": "Q?", "answer": "A."}\n{"id": "2", "question": \n', encoding="utf-8")
    assert reason(path).startswith("line 2 is not valid JSON")


def test_csv_round_trips_rows_written_by_python_csv(tmp_path):
    """Quotes, delimiters and line breaks inside answers must not shift or split rows, even when
    the first rows have none (a dialect guessed from them would not expect doubled quotes)."""
    import csv as csv_module
    import random

    rng = random.Random(7)
    pieces = ['他说"可以"', "a, b; c | d", "第一行\n第二行", "tab\there", "plain", '"quoted"', "¥168, 7 天"]
    plain = [(f"id-{i}", f"问题 {i}？", f"答案 {i}，没有引号。" * 5) for i in range(300)]
    tricky = [
        (f"id-x{i}", f"问题 {i}？ " + rng.choice(pieces), " ".join(rng.choice(pieces) for _ in range(3)))
        for i in range(300)
    ]
    rows = plain + tricky
    path = tmp_path / "faq.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["id", "question", "answer"])
        writer.writerows(rows)
    items = load_file(path, max_bytes=10**7).faq_items
    assert [(item.id, item.question, item.answer) for item in items] == [
        (i, q.strip(), a.strip()) for i, q, a in rows
    ]
