"""Knowledge enhancement: LLM-written questions for FAQ items and document chunks, for review.

``bot enhance`` asks the LLM, for every chunk of the knowledge files, for questions from several
angles that the chunk answers, and appends one JSON line per chunk to a review file
(``ingest.enhanced_questions``). A reviewer sets ``"approved": true`` on the entries to keep;
``bot ingest`` then adds the approved questions to the question side of their chunks.

    report = enhance(engine, output=Path("knowledge/enhanced_questions.jsonl"), per_item=3)
    print(report.summary())

A run resumes: chunks whose id is already in the output file are skipped, and every entry is
written (and flushed) as soon as it is made, so an interrupted run keeps its work. Several
chunks are asked about at a time (``workers``); entries are written in the order they finish.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Sequence

from tqdm import tqdm

from bot.errors import LLMError
from bot.ingest.documents import Chunk
from bot.llm.client import LLMClient
from bot.llm.prompts import Prompts

__all__ = ["EnhanceReport", "enhance", "ask_questions", "parse_questions", "entry_for"]

#: Characters of a chunk's text shown in the review file.
PREVIEW_CHARS = 200
#: Characters of a chunk's text sent to the LLM (a long FAQ answer must still fit the context).
MAX_PROMPT_CHARS = 2000
#: Reply budget per requested question.
TOKENS_PER_QUESTION = 48
#: Longest line still taken for a question.
MAX_QUESTION_CHARS = 200

_LEADER = re.compile(
    r"^(?:[-*•·●▪◦–—>]+|#+|\(?\d{1,2}[.)、:：．](?!\d)|[（(]\d{1,2}[）)]|[一二三四五六七八九十]{1,3}[、.．]"
    r"|[a-zA-Z][.)](?=\s)|(?:q|question|问题?)\s*(?:\d+\s*)?[:：.、])\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’「」『』`*"
_EN_ASKING = re.compile(
    r"^(?:how|what|why|when|where|which|who|whom|whose|is|are|am|was|were|do|does|did|can|could|"
    r"will|would|should|shall|may|might|must|have|has|had|if)\b",
    re.IGNORECASE,
)
_ZH_ASKING = re.compile(r"吗|呢|什么|怎么|怎样|如何|为什么|为何|哪|几|多少|多久|多长|是否|能否|可否|有没有|是不是|能不能|可不可以")
_PREAMBLE = re.compile(r"^(?:以下|下面|这里|好的|当然|here (?:are|is)|sure\b|certainly\b|below\b)", re.IGNORECASE)
_END_MARKS = " ?？.。!！"


@dataclass
class EnhanceReport:
    """What a run did, in chunks."""

    output: Path
    written: int = 0
    skipped: int = 0
    remaining: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    file_failures: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"chunks: {self.written} done, {self.skipped} skipped (already in {self.output}), "
            f"{len(self.failed)} failed"
            + (f", {self.remaining} left for a later run (--limit)" if self.remaining else "")
        ]
        lines += [f"FAILED chunk {chunk}: {reason}" for chunk, reason in self.failed]
        lines += [f"FAILED file {source}: {reason}" for source, reason in self.file_failures]
        return "\n".join(lines)


def enhance(
    engine,
    paths: Sequence[Path] | None = None,
    *,
    output: Path,
    per_item: int = 3,
    limit: int | None = None,
    workers: int = 4,
    progress: bool = True,
) -> EnhanceReport:
    """Append generated questions for the chunks under ``paths`` (default: ``ingest.paths``)
    that ``output`` does not hold yet; at most ``limit`` chunks per run, ``workers`` requests
    to the LLM at a time (vLLM batches them: 4 at a time write about three times as fast as one)."""
    report = EnhanceReport(output=output)
    done = done_chunk_ids(output)
    on_failure = lambda source, reason: report.file_failures.append((source, reason))  # noqa: E731
    chunks = [c for file in engine.iter_chunks(paths, on_failure=on_failure) for c in file]
    todo = [c for c in chunks if c.id not in done]
    report.skipped = len(chunks) - len(todo)
    if limit is not None:
        todo, rest = todo[:limit], todo[limit:]
        report.remaining = len(rest)
    output.parent.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        asked = {pool.submit(ask_questions, engine.llm, engine.prompts, c, per_item): c for c in todo}
        with _appender(output) as out:
            finished = as_completed(asked)
            for future in tqdm(finished, total=len(asked), desc="enhancing", unit="chunk", disable=not progress):
                chunk = asked[future]
                try:
                    questions = future.result()
                except LLMError as exc:
                    report.failed.append((_label(chunk), str(exc)))
                    continue
                if not questions:
                    report.failed.append((_label(chunk), "the LLM's reply held no usable question"))
                    continue
                out.write(json.dumps(entry_for(chunk, questions), ensure_ascii=False) + "\n")
                out.flush()
                report.written += 1
    finally:  # an interrupted run stops asking at once; what was written stays
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def ask_questions(llm: LLMClient, prompts: Prompts, chunk: Chunk, count: int) -> list[str]:
    """The LLM's questions for ``chunk`` (at most ``count``), cleaned by :func:`parse_questions`."""
    # An FAQ item's heading is its question, already on the question side: shown it, the model
    # mostly rewords it; shown the answer alone, it asks about what the answer says.
    heading = "" if chunk.kind == "faq" else chunk.heading
    prompt = prompts.chat("enhance", chunk.language, text=chunk.text[:MAX_PROMPT_CHARS], heading=heading, count=count)
    completion = llm.complete(prompt.messages, max_tokens=TOKENS_PER_QUESTION * count + 16, temperature=0.2)
    return parse_questions(completion.text, original=chunk.question)[:count]


def parse_questions(reply: str, *, original: str = "") -> list[str]:
    """One question per line of ``reply``: numbering, bullets and quotes stripped; empty lines,
    lines that do not ask anything, repeats and the ``original`` question dropped."""
    seen = {_key(original)} if original.strip() else set()
    questions = []
    for line in reply.splitlines():
        question = _clean(line)
        key = _key(question)
        if not question or key in seen or not _asks(question):
            continue
        seen.add(key)
        questions.append(question)
    return questions


def entry_for(chunk: Chunk, questions: Iterable[str]) -> dict:
    """The review file's line for ``chunk`` (unapproved)."""
    return {
        "chunk_id": chunk.id,
        "item_id": chunk.item_id,
        "source": chunk.source,
        "kind": chunk.kind,
        "language": chunk.language,
        "heading": chunk.heading,
        "text": chunk.text[:PREVIEW_CHARS],
        "questions": list(questions),
        "approved": False,
    }


def done_chunk_ids(path: Path) -> set[str]:
    """The chunk ids ``path`` already holds (lines that cannot be read are ignored)."""
    if not path.is_file():
        return set()
    ids = set()
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("chunk_id"), str):
            ids.add(entry["chunk_id"])
    return ids


def _appender(path: Path) -> IO[str]:
    """``path`` opened for appending, after ending a line an interrupted run may have cut."""
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as existing:
            existing.seek(-1, 2)
            cut = existing.read(1) != b"\n"
        if cut:
            with path.open("a", encoding="utf-8") as out:
                out.write("\n")
    return path.open("a", encoding="utf-8")


def _clean(line: str) -> str:
    text = line.strip()
    for _ in range(3):  # "1. - "Question?"" has several layers
        stripped = _LEADER.sub("", text).strip().strip(_QUOTES).strip()
        if stripped == text:
            break
        text = stripped
    return text if len(text) <= MAX_QUESTION_CHARS else ""


def _asks(text: str) -> bool:
    """True for a line that reads like a question (not "Here are three questions:")."""
    if _PREAMBLE.match(text) or text.endswith((":", "：")):
        return False
    if text.endswith(("?", "？")):
        return True
    return bool(_EN_ASKING.match(text) or _ZH_ASKING.search(text))


def _key(text: str) -> str:
    """What makes two questions the same: case, spaces and end marks aside."""
    return " ".join(text.casefold().split()).rstrip(_END_MARKS)


def _label(chunk: Chunk) -> str:
    return f"{chunk.source} ({chunk.item_id if chunk.kind == 'faq' else chunk.id})"
