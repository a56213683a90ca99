"""The chunker: token bounds, sentence boundaries, sections, tables, FAQ items, ids."""

from __future__ import annotations

import re

from bot.ingest.chunking import chunk_document, chunk_id
from bot.ingest.documents import Block, FaqItem, ParsedDocument, Table
from bot.lang import estimate_tokens

SENTENCE_END = ("。", "！", "？", "；", "…", ".", "!", "?")

ZH_PARAGRAPH = (
    "云序笔记提供免费版、进阶版和团队版三种套餐。免费版提供 2 GB 存储空间，最多可以同时在两台设备上登录！"
    "进阶版每月 18 元，年付 168 元，提供 100 GB 存储空间；团队版按成员计费，每人每月 38 元。"
    "所有套餐都不限笔记数量，也都可以随时导出全部数据。为什么团队版最少三人起购？"
    "因为团队工作区需要至少一位所有者、一位管理员和一位成员……这样才能完成权限设置。"
    "年付套餐在付款之日起七天内可以无理由全额退款，超过七天按未使用的完整月数比例退款。"
    "月付套餐不支持退款，重复扣费和系统错误造成的扣款除外。退款申请会在两个工作日内审核完毕。"
) * 3

EN_PARAGRAPH = (
    "Nimbus Note comes in three plans. Free is for personal notes and includes 2 GB of storage! "
    "Plus costs US$3.99 per month and adds 100 GB of storage, unlimited devices and 90 days of history. "
    "Why does Team need at least three members? A workspace needs an owner, an admin and a member. "
    "Annual plans can be fully refunded within 7 days of payment, no questions asked. "
    "After that, refunds are prorated by the number of unused whole months left in the year. "
    "Monthly plans are not refundable, except for duplicate charges and billing errors on our side. "
) * 3


def chunk(doc: ParsedDocument, *, max_tokens: int = 300, doc_id: str = "docs/pricing.md"):
    return chunk_document(doc, doc_id=doc_id, source="knowledge/docs/pricing.md",
                          count_tokens=estimate_tokens, max_tokens=max_tokens)


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_long_paragraphs_are_cut_between_sentences_within_the_bound():
    for paragraph in (ZH_PARAGRAPH, EN_PARAGRAPH):
        chunks = chunk(ParsedDocument(title="Pricing", blocks=(Block(text=paragraph),)), max_tokens=60)
        assert len(chunks) > 3
        for piece in chunks:
            assert estimate_tokens(piece.text) <= 60
            assert piece.text.endswith(SENTENCE_END), piece.text
            assert piece.kind == "passage"
        assert squeeze("".join(c.text for c in chunks)) == squeeze(paragraph)  # nothing lost or repeated


def test_short_paragraphs_of_one_section_are_packed_together():
    blocks = tuple(Block(section_path=("Plans",), text=f"Paragraph {i} is short.") for i in range(5))
    [packed] = chunk(ParsedDocument(title="Pricing", blocks=blocks))
    assert packed.text == "\n\n".join(block.text for block in blocks)
    assert packed.section == "Plans"


def test_packing_respects_the_token_bound():
    blocks = tuple(Block(text=sentence) for sentence in EN_PARAGRAPH.split(". ") if sentence)
    chunks = chunk(ParsedDocument(title="Pricing", blocks=blocks), max_tokens=50)
    assert len(chunks) > 1
    assert all(estimate_tokens(c.text) <= 50 for c in chunks)


def test_a_new_section_starts_a_new_chunk():
    doc = ParsedDocument(
        title="Pricing",
        blocks=(
            Block(section_path=("Plans",), text="Free costs nothing."),
            Block(section_path=("Plans",), text="Plus costs $3.99."),
            Block(section_path=("Plans", "Team"), text="Team costs $7.99 per member."),
            Block(section_path=("Refunds",), text="Annual plans are refundable within 7 days."),
        ),
    )
    chunks = chunk(doc)
    assert [(c.section, c.text) for c in chunks] == [
        ("Plans", "Free costs nothing.\n\nPlus costs $3.99."),
        ("Plans > Team", "Team costs $7.99 per member."),
        ("Refunds", "Annual plans are refundable within 7 days."),
    ]
    assert all(c.title == "Pricing" and c.item_id == c.id and c.doc == "docs/pricing.md" for c in chunks)
    assert all(c.source == "knowledge/docs/pricing.md" and c.question == "" for c in chunks)


def test_a_sentence_longer_than_the_bound_falls_back_to_clauses_then_windows():
    clauses = "，".join(f"第{i}条规则规定会员在续费前需要确认账户信息" for i in range(12)) + "。"
    chunks = chunk(ParsedDocument(title="规则", blocks=(Block(text=clauses),)), max_tokens=50)
    assert all(estimate_tokens(c.text) <= 50 for c in chunks)
    assert all(c.text.endswith(("，", "。")) for c in chunks)
    assert squeeze("".join(c.text for c in chunks)) == squeeze(clauses)

    unbroken = "云" * 130  # no punctuation, no spaces: fixed windows
    chunks = chunk(ParsedDocument(title="t", blocks=(Block(text=unbroken),)), max_tokens=50)
    assert [len(c.text) for c in chunks] == [50, 50, 30]

    words = " ".join(["storage"] * 100)  # no punctuation: cut at spaces, words stay whole
    chunks = chunk(ParsedDocument(title="t", blocks=(Block(text=words),)), max_tokens=20)
    assert all(estimate_tokens(c.text) <= 20 and set(c.text.split()) == {"storage"} for c in chunks)
    assert sum(len(c.text.split()) for c in chunks) == 100


def test_whitespace_is_normalized_and_empty_text_dropped():
    doc = ParsedDocument(
        title="t",
        blocks=(Block(text="  Plus   costs\t $3.99.  \n\n\n\n  Cancel　anytime.  "), Block(text=" \n\t ")),
    )
    [only] = chunk(doc)
    assert only.text == "Plus costs $3.99.\n\nCancel anytime."


def test_table_rows_repeat_the_header():
    table = Table(
        header=("Plan", "Monthly price", "Storage"),
        rows=(("Free", "¥0", "5 GB"), ("Plus", "¥18", ""), ("Plan", "Monthly price", "Storage"), ("", "", "")),
        caption="Plans 2025",
    )
    doc = ParsedDocument(title="Pricing", blocks=(Block(section_path=("Plans",), table=table),))
    chunks = chunk(doc)
    assert [c.text for c in chunks] == [
        "Plans 2025\nPlan: Free; Monthly price: ¥0; Storage: 5 GB",
        "Plans 2025\nPlan: Plus; Monthly price: ¥18",
    ]
    assert all(c.kind == "table_row" and c.section == "Plans" for c in chunks)

    headless = Table(header=(), rows=(("进阶版", "¥18"),))
    [row] = chunk(ParsedDocument(title="价格", blocks=(Block(table=headless),)))
    assert row.text == "Column 1: 进阶版; Column 2: ¥18"
    assert row.language == "zh"


def test_tables_and_paragraphs_keep_their_order():
    table = Table(header=("Plan", "Price"), rows=(("Plus", "$3.99"),))
    doc = ParsedDocument(
        title="Pricing",
        blocks=(Block(text="Before the table."), Block(table=table), Block(text="After the table.")),
    )
    assert [(c.kind, c.text) for c in chunk(doc)] == [
        ("passage", "Before the table."),
        ("table_row", "Plan: Plus; Price: $3.99"),
        ("passage", "After the table."),
    ]


def test_faq_items_stay_whole_even_when_long():
    long_answer = ZH_PARAGRAPH * 2
    doc = ParsedDocument(
        title="faq_zh",
        faq_items=(
            FaqItem("faq-zh-001", "云序笔记有哪些套餐？", long_answer, metadata={"topic": "pricing"}),
            FaqItem("esun-1-0", "什麼是網路金融卡收款?", "消費者透過讀卡機轉帳支付。", doc="esun-1"),
        ),
        metadata={"skipped_rows": 2, "owner": "support"},
    )
    first, second = chunk(doc, max_tokens=50, doc_id="faq/faq_zh.csv")
    assert estimate_tokens(first.text) > 50
    assert (first.kind, first.question, first.text) == ("faq", "云序笔记有哪些套餐？", long_answer.strip())
    assert (first.item_id, first.doc, first.section) == ("faq-zh-001", "faq/faq_zh.csv", "")
    assert first.metadata == {"owner": "support", "topic": "pricing"}
    assert (second.item_id, second.doc, second.language) == ("esun-1-0", "esun-1", "zh")


def test_passage_records_keep_their_id_doc_and_title():
    doc = ParsedDocument(
        title="cmrc",
        faq_items=(
            FaqItem("cmrc-TRIAL_800", "", ZH_PARAGRAPH, doc="cmrc-doc", metadata={"title": "泡泡战士", "lang": "zh"}),
            FaqItem("short-1", "", "A short passage."),
        ),
    )
    chunks = chunk(doc, max_tokens=80, doc_id="eval/knowledge.jsonl")
    long_pieces, [short] = chunks[:-1], chunks[-1:]
    assert len(long_pieces) > 1
    for piece in long_pieces:
        assert (piece.kind, piece.item_id, piece.doc, piece.title) == ("passage", "cmrc-TRIAL_800", "cmrc-doc", "泡泡战士")
        assert piece.metadata == {"lang": "zh"} and piece.question == ""
        assert estimate_tokens(piece.text) <= 80
    assert len({piece.id for piece in long_pieces}) == len(long_pieces)
    assert (short.item_id, short.doc, short.title, short.language) == ("short-1", "eval/knowledge.jsonl", "cmrc", "en")


def test_ids_are_deterministic_and_follow_content():
    def doc(text: str) -> ParsedDocument:
        return ParsedDocument(
            title="Pricing",
            blocks=(Block(text=text),),
            faq_items=(FaqItem("q1", "How much is Plus?", "$3.99 a month."),),
        )

    first, again = chunk(doc("Plus costs $3.99.")), chunk(doc("Plus costs $3.99."))
    assert [c.id for c in first] == [c.id for c in again]
    changed = chunk(doc("Plus costs $4.99."))
    assert changed[0].id != first[0].id
    assert changed[1].id == first[1].id  # the unchanged FAQ item keeps its id
    assert chunk(doc("Plus costs $3.99."), doc_id="other.md")[0].id != first[0].id
    assert first[0].id == chunk_id("docs/pricing.md", "passage", "Plus costs $3.99.", 0)


def test_identical_paragraphs_in_one_document_get_distinct_ids():
    blocks = (
        Block(section_path=("Free",), text="Contact support@nimbus.example."),
        Block(section_path=("Plus",), text="Contact support@nimbus.example."),
    )
    chunks = chunk(ParsedDocument(title="Pricing", blocks=blocks))
    assert [c.text for c in chunks] == ["Contact support@nimbus.example."] * 2
    assert chunks[0].id != chunks[1].id
    assert chunks[1].id == chunk_id("docs/pricing.md", "passage", "Contact support@nimbus.example.", 1)
