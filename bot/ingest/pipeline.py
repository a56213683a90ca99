"""Ingestion: files -> chunks -> vectors -> store, incremental and verified.

    report = Ingestor(store, manifest, dense, sparse, settings.ingest, root).run([Path("knowledge")])
    print(report.summary())

- Unchanged files (same sha256, all chunks still stored) are not even parsed.
- A changed file is re-chunked; only chunks with new ids (or a changed payload) are embedded,
  its chunks that disappeared are deleted.
- A file that is gone from a scanned folder has its chunks deleted.
- Files are parsed in a child process under the limits of ``IngestSettings`` (zip sizes, depth,
  pages, cells, text, time, memory: :mod:`bot.ingest.parser_process`). A file that cannot be
  parsed, for whatever reason, is reported with it; the others go on, and whatever was stored
  for it before stays.
- Chunks are journaled in the manifest as they are stored: a run killed midway is resumed by
  the next, which finds them stored with the same payload hash and does not embed them again.
- At the end every chunk the manifest lists is looked up in the store; the missing are reported.
- Approved generated questions (``ingest.enhanced_questions``, written by ``bot enhance``) join
  their chunks' question side. A document's fingerprint covers its bytes and its approved
  questions, so approving questions re-embeds exactly the chunks they belong to.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from bot.config import IngestSettings
from bot.embed.base import DenseEncoder, SparseEncoder
from bot.errors import LoaderError
from bot.ingest.chunking import chunk_document
from bot.ingest.documents import Chunk
from bot.ingest.manifest import ChunkRecord, Manifest
from bot.ingest.parser_process import ParserProcess
from bot.store.base import CollectionSchema, StoredPoint, VectorStore

__all__ = ["Ingestor", "IngestReport", "collection_schema", "chunk_payload", "read_approved_questions"]

log = logging.getLogger(__name__)

#: Approved generated questions: source -> chunk id -> questions.
ApprovedQuestions = dict[str, dict[str, tuple[str, ...]]]

KEYWORD_INDEXES = ("doc", "source", "item_id", "language", "kind")
_VERIFY_BATCH = 1000
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class IngestReport:
    """What a run did, in documents and chunks."""

    documents: Counter = field(default_factory=Counter)
    chunks: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Documents whose text reads like instructions to the assistant (source, the phrase found):
    #: prompts treat passages as data, but such text deserves a look before users see it.
    instructions: list[tuple[str, str]] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """True when every chunk the manifest lists was found in the store."""
        return not self.missing

    def summary(self) -> str:
        """A few lines for the terminal."""
        keys = ("added", "updated", "removed", "unchanged", "failed")
        lines = [
            "documents: " + ", ".join(f"{self.documents[k]} {k}" for k in keys),
            "chunks:    " + ", ".join(f"{self.chunks[k]} {k}" for k in keys),
            f"embedded {self.embedded} chunks in {self.seconds:.1f} s",
        ]
        lines += [_printable(f"FAILED {source}: {reason}") for source, reason in self.failures]
        lines += [_printable(f"WARNING {warning}") for warning in self.warnings]
        lines += [
            _printable(f"INSTRUCTIONS {source}: reads like an instruction to the assistant: {phrase!r}")
            for source, phrase in self.instructions
        ]
        lines.append(
            "verified: every chunk is in the store"
            if self.complete
            else f"INCOMPLETE: {len(self.missing)} chunks listed in the manifest are not in the store; "
            "run `bot ingest` again (or `bot ingest --rebuild`)"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The report as plain data (for ``--json``)."""
        return {
            "documents": dict(self.documents),
            "chunks": dict(self.chunks),
            "failures": [{"source": s, "reason": r} for s, r in self.failures],
            "missing": len(self.missing),
            "warnings": list(self.warnings),
            "instructions": [{"source": s, "phrase": p} for s, p in self.instructions],
            "embedded": self.embedded,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
        }


def collection_schema(dense: DenseEncoder, sparse: SparseEncoder) -> CollectionSchema:
    """The four named vectors: question and content side, each dense and sparse."""
    return CollectionSchema(
        dense={"question_dense": dense.dim, "content_dense": dense.dim},
        sparse={"question_sparse": sparse.uses_idf, "content_sparse": sparse.uses_idf},
        keyword_indexes=KEYWORD_INDEXES,
    )


def chunk_payload(chunk: Chunk) -> dict:
    """What the store keeps with a chunk's vectors; metadata is nested to keep names apart."""
    return {
        "item_id": chunk.item_id,
        "doc": chunk.doc,
        "source": chunk.source,
        "kind": chunk.kind,
        "title": chunk.title,
        "section": chunk.section,
        "question": chunk.question,
        "text": chunk.text,
        "language": chunk.language,
        "metadata": chunk.metadata,
        "generated_questions": list(chunk.generated_questions),
    }


def _payload_hash(chunk: Chunk) -> str:
    """The hash of a chunk's payload; an empty ``generated_questions`` is left out, so chunks
    stored before generated questions existed keep their hash."""
    payload = chunk_payload(chunk)
    if not payload["generated_questions"]:
        del payload["generated_questions"]
    return _hash(payload)


@dataclass
class _Pending:
    """A parsed document waiting for its new chunks to be written."""

    source: str
    sha256: str
    size: int
    title: str
    records: list[ChunkRecord]
    stale: list[str]
    status: str


class Ingestor:
    """Brings a collection in line with the files under some paths."""

    def __init__(
        self,
        store: VectorStore,
        manifest: Manifest,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        settings: IngestSettings,
        root: Path,
        *,
        instructions: Callable[[str], str | None] | None = None,
    ):
        self.store, self.manifest = store, manifest
        self.dense, self.sparse = dense, sparse
        self.settings, self.root = settings, root
        self.instructions = instructions  # the instruction-like phrase in a text, or None
        self._parser = ParserProcess(settings)

    def _instruction_like(self, chunks: Sequence[Chunk]) -> str | None:
        """The first instruction-like phrase in the chunks' text, if the check is on."""
        if self.instructions is None:
            return None
        for chunk in chunks:
            phrase = self.instructions(f"{chunk.question}\n{chunk.text}")
            if phrase:
                return phrase
        return None

    def prepare(self) -> None:
        """Create or check the collection and the encoders it was built with."""
        self.manifest.check_encoders(self.dense.name, self.dense.dim, self.sparse.name)
        self.store.ensure_collection(collection_schema(self.dense, self.sparse))

    def run(self, paths: Sequence[Path] | None = None, *, progress: bool = True) -> IngestReport:
        """Ingest ``paths`` (files or folders; default: the configured ones)."""
        try:
            return self._run(paths, progress)
        finally:
            self._parser.close()

    def _run(self, paths: Sequence[Path] | None, progress: bool) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        self.prepare()
        paths = [Path(p) for p in (paths or self.settings.paths)]
        files = self._scan(paths)
        approved, report.warnings = read_approved_questions(self.settings.enhanced_questions)
        known = self.manifest.documents()
        manifest_chunks = self.manifest.chunks()
        stored = self._existing(list(manifest_chunks))
        pending: list[_Pending] = []
        to_write: list[Chunk] = []

        for path in tqdm(files, desc="parsing", unit="file", disable=not progress):
            source = self._source(path)
            if not _storable(source):
                report.documents["failed"] += 1
                report.failures.append((_printable(source), "the file name is not valid UTF-8; rename the file"))
                continue
            questions = approved.get(source, {})
            record = known.get(source)
            old = self.manifest.chunks(source) if record else {}
            try:
                data = _read(path, self._max_bytes())
                sha = _fingerprint(data, questions) if data is not None else ""
                if record and record.sha256 == sha and set(old) <= stored:
                    report.documents["unchanged"] += 1
                    report.chunks["unchanged"] += len(old)
                    if record.error:
                        self.manifest.clear_error(source)
                    continue
                chunks = self._parse(path, source, questions)
            except LoaderError as exc:
                report.documents["failed"] += 1
                report.failures.append((source, exc.reason))
                self.manifest.record_failure(source, exc.reason)
                continue
            phrase = self._instruction_like(chunks)
            if phrase:
                report.instructions.append((source, phrase))
            records, stale, new = self._diff(chunks, old, stored, report)
            to_write.extend(new)
            status = "updated" if record and (record.sha256 or record.n_chunks) else "added"
            pending.append(
                _Pending(source, sha, len(data or b""), chunks[0].title if chunks else "", records, stale, status)
            )

        self._parser.close()  # its memory is free while embedding
        records = {r.chunk_id: r for doc in pending for r in doc.records}
        report.embedded = self._write(to_write, records, progress)
        for doc in pending:
            self.store.delete(doc.stale)
            self.manifest.record_document(
                doc.source, sha256=doc.sha256, size=doc.size, title=doc.title, chunks=doc.records
            )
            report.documents[doc.status] += 1
        self._remove_deleted(paths, files, known, report)
        commit = getattr(self.store, "commit", None)
        if commit:
            commit()
        report.missing = self._verify()
        report.chunks["failed"] = len(report.missing)
        report.seconds = time.perf_counter() - started
        return report

    def iter_chunks(
        self,
        paths: Sequence[Path] | None = None,
        *,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> Iterator[list[Chunk]]:
        """The chunks of each file under ``paths`` (default: the configured ones), as ingestion
        cuts them but without generated questions. Files that cannot be parsed are skipped
        (``on_failure(source, reason)`` hears of them). Needs neither the store nor the manifest."""
        try:
            for path in self._scan([Path(p) for p in (paths or self.settings.paths)]):
                source = self._source(path)
                try:
                    chunks = self._parse(path, source, {})
                except LoaderError as exc:
                    if on_failure:
                        on_failure(source, exc.reason)
                    continue
                yield chunks
        finally:
            self._parser.close()

    def rebuild(self) -> None:
        """Drop the collection and forget its manifest, so the next run starts afresh."""
        self.store.drop()
        self.manifest.reset()

    def _max_bytes(self) -> int:
        return int(self.settings.max_file_mb * 1024 * 1024)

    def _parse(self, path: Path, source: str, questions: dict[str, tuple[str, ...]]) -> list[Chunk]:
        """The file's chunks with their approved questions; :class:`LoaderError` for any failure."""
        try:
            return _with_questions(self._chunks(path, source), questions)
        except LoaderError:
            raise
        except Exception as exc:  # a bug on odd input fails this file, not the run
            log.debug("cannot cut %s into chunks", _printable(source), exc_info=True)
            raise LoaderError(source, f"cannot be cut into chunks: {type(exc).__name__}: {str(exc)[:200]}") from exc

    def _chunks(self, path: Path, source: str) -> list[Chunk]:
        document = self._parser.load(path)
        chunks = chunk_document(
            document,
            doc_id=source,
            source=source,
            count_tokens=self.dense.count_tokens,
            max_tokens=self.settings.chunk_max_tokens,
        )
        if not chunks:
            raise LoaderError(source, "no text to index after parsing")
        return chunks

    def _diff(
        self, chunks: list[Chunk], old: dict[str, ChunkRecord], stored: set[str], report: IngestReport
    ) -> tuple[list[ChunkRecord], list[str], list[Chunk]]:
        records, new = [], []
        for chunk in chunks:
            digest = _payload_hash(chunk)
            records.append(ChunkRecord(chunk.id, chunk.item_id, digest))
            previous = old.get(chunk.id)
            if previous is None or chunk.id not in stored:
                report.chunks["added"] += 1
                new.append(chunk)
            elif previous.payload_hash != digest:
                report.chunks["updated"] += 1
                new.append(chunk)
            else:
                report.chunks["unchanged"] += 1
        stale = sorted(set(old) - {r.chunk_id for r in records})
        report.chunks["removed"] += len(stale)
        return records, stale, new

    def _write(self, chunks: list[Chunk], records: dict[str, ChunkRecord], progress: bool) -> int:
        """Embed and store ``chunks`` batch by batch, journaling each stored batch (``records``:
        the chunks' manifest records by id)."""
        size = self.settings.batch_size
        with tqdm(total=len(chunks), desc="embedding", unit="chunk", disable=not progress) as bar:
            for start in range(0, len(chunks), size):
                batch = chunks[start : start + size]
                self.store.upsert(self._points(batch))
                stored: dict[str, list[ChunkRecord]] = {}
                for chunk in batch:
                    stored.setdefault(chunk.source, []).append(records[chunk.id])
                self.manifest.record_embedded(stored)
                bar.update(len(batch))
        return len(chunks)

    def _points(self, chunks: list[Chunk]) -> list[StoredPoint]:
        contents = [c.content_for_embedding for c in chunks]
        asked = [c for c in chunks if c.question_side]
        # An FAQ item is never split: a long answer is embedded densely on its first chunk_max_tokens
        # tokens (the encoder would otherwise pool window after window of it); the lexical side keeps it all.
        limit = self.settings.chunk_max_tokens
        content_dense = self.dense.embed_batch([self.dense.truncate(c, limit) for c in contents], is_query=False)
        content_sparse = self.sparse.encode_batch(contents, is_query=False)
        questions = [c.question_side for c in asked]
        question_dense = dict(zip((c.id for c in asked), self.dense.embed_batch(questions, is_query=True)))
        question_sparse = dict(
            zip((c.id for c in asked), self.sparse.encode_batch(questions, is_query=False))
        )
        points = []
        for i, chunk in enumerate(chunks):
            dense = {"content_dense": content_dense[i].tolist()}
            sparse = {"content_sparse": content_sparse[i]}
            if chunk.id in question_dense:
                dense["question_dense"] = question_dense[chunk.id].tolist()
                sparse["question_sparse"] = question_sparse[chunk.id]
            points.append(StoredPoint(chunk.id, dense, sparse, chunk_payload(chunk)))
        return points

    def _remove_deleted(
        self, paths: Sequence[Path], files: list[Path], known: dict, report: IngestReport
    ) -> None:
        """Forget documents under a scanned folder that are gone (or now excluded)."""
        present = {self._source(f) for f in files}
        folders = [p.resolve() for p in paths if p.is_dir()]
        for source in known:
            if source in present or not any(_under(self._path_of(source), f) for f in folders):
                continue
            gone = list(self.manifest.chunks(source))
            self.store.delete(gone)
            self.manifest.remove_document(source)
            report.documents["removed"] += 1
            report.chunks["removed"] += len(gone)

    def _verify(self) -> list[str]:
        expected = list(self.manifest.chunks())
        return sorted(set(expected) - self._existing(expected))

    def _existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _VERIFY_BATCH):
            found |= self.store.existing_ids(ids[start : start + _VERIFY_BATCH])
        return found

    def _scan(self, paths: Iterable[Path]) -> list[Path]:
        files: list[Path] = []
        generated = self.settings.enhanced_questions
        generated = generated.resolve() if generated else None
        for path in paths:
            if not path.exists():
                raise LoaderError(str(path), "no such file or folder")
            if path.is_file():
                if path.resolve() == generated:
                    raise LoaderError(
                        str(path),
                        "this is the generated questions file (ingest.enhanced_questions): its approved "
                        "questions are added to their chunks when their documents are ingested",
                    )
                files.append(path.resolve())
                continue
            root = path.resolve()
            for candidate in sorted(root.rglob("*")):
                if candidate.is_file() and candidate != generated and not self._excluded(candidate, [root]):
                    files.append(candidate)
        return files

    def _excluded(self, path: Path, roots: list[Path]) -> bool:
        for root in roots:
            if not _under(path, root):
                continue
            relative = path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in Path(relative).parts):
                return True
            if any(fnmatch.fnmatch(relative, pattern) for pattern in self.settings.exclude):
                return True
        return False

    def _source(self, path: Path) -> str:
        path = path.resolve()
        return path.relative_to(self.root).as_posix() if _under(path, self.root) else path.as_posix()

    def _path_of(self, source: str) -> Path:
        path = Path(source)
        return path if path.is_absolute() else self.root / path


def _read(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it is over the size limit (its parse reports that)."""
    try:
        return path.read_bytes() if path.stat().st_size <= max_bytes else None
    except OSError as exc:
        raise LoaderError(str(path), f"cannot be read: {exc.strerror or exc}") from exc


def _storable(source: str) -> bool:
    """Whether a name can be stored: file names that are not UTF-8 reach Python as lone surrogates."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` on one line: control characters and undecodable bytes as escapes (``\\n``, ``\\udcff``)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _fingerprint(data: bytes, questions: dict[str, tuple[str, ...]]) -> str:
    """A document's version: sha256 of its bytes, plus its approved questions when it has any."""
    digest = hashlib.sha256(data)
    if questions:
        digest.update(b"\0approved questions\0")
        digest.update(json.dumps(questions, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def _with_questions(chunks: list[Chunk], questions: dict[str, tuple[str, ...]]) -> list[Chunk]:
    """The chunks with their approved generated questions."""
    if not questions:
        return chunks
    return [replace(c, generated_questions=questions[c.id]) if c.id in questions else c for c in chunks]


def read_approved_questions(path: Path | None) -> tuple[ApprovedQuestions, list[str]]:
    """The approved entries of a ``bot enhance`` file (source -> chunk id -> questions), and a
    warning for every line that cannot be used. Unapproved entries are ignored; no file, no questions."""
    approved: ApprovedQuestions = {}
    warnings: list[str] = []
    if path is None or not path.is_file():
        return approved, warnings
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"{path}: cannot read the generated questions ({exc}); none were added")
        lines = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry, problem = _approved_entry(line)
        if problem:
            warnings.append(f"{path.name} line {number}: {problem}; skipped")
        elif entry and entry[2]:
            source, chunk_id, questions = entry
            known = approved.setdefault(source, {}).get(chunk_id, ())
            approved[source][chunk_id] = tuple(dict.fromkeys((*known, *questions)))
    for warning in warnings:
        log.warning("%s", warning)
    return approved, warnings


def _approved_entry(line: str) -> tuple[tuple[str, str, tuple[str, ...]] | None, str]:
    """``((source, chunk_id, questions), "")`` for an approved line, ``(None, "")`` for an
    unapproved one, ``(None, problem)`` for a line that cannot be used."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg})"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    approved = entry.get("approved", False)
    if not isinstance(approved, bool):
        return None, f'"approved" must be true or false, not {approved!r}'
    if not approved:
        return None, ""
    source, chunk_id, questions = entry.get("source"), entry.get("chunk_id"), entry.get("questions")
    if not (isinstance(source, str) and source and isinstance(chunk_id, str) and chunk_id):
        return None, 'an approved entry needs "source" and "chunk_id"'
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        return None, '"questions" must be a list of strings'
    return (source, chunk_id, tuple(q.strip() for q in questions if q.strip())), ""
