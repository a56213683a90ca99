"""The lexical route: jieba tokens, stop words and synonyms, as BM25-weighted sparse vectors.

Traditional Chinese is converted to Simplified first (OpenCC ``t2s``): jieba's dictionary
is Simplified, and 「發卡」 and 「发卡」 must be the same term. English words are stemmed
(Snowball): "symptoms" and "symptom", "closed" and "closes" are one term.

Documents get BM25's saturated term frequency ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``,
queries get 1 per distinct term, and Qdrant's IDF modifier supplies the IDF factor
server-side: the dot product is then BM25.

Table formats (both UTF-8, ``#`` starts a comment, blank lines ignored):

- stop words: one word per line; a stop word never scores.
- synonyms: one group per line, comma-separated, the first term canonical:
  ``退款,退钱,退费``. Every term of a group is indexed and searched as the canonical one.
  Terms are single tokens (a Chinese word, or one English word); Chinese terms are
  added to jieba's dictionary so they are never split.
"""

from __future__ import annotations

import logging
import re
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from bot.embed.base import SparseEncoder, SparseVector
from bot.errors import ConfigError

__all__ = ["Lexicon", "LexicalEncoder", "term_id"]

_TOKEN = re.compile(r"[0-9a-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", re.IGNORECASE)


@lru_cache(maxsize=200_000)
def _stem(term: str) -> str:
    """The Snowball English stem of an English word; other terms as they are."""
    return _english_stemmer().stemWord(term) if term.isascii() and term.isalpha() else term


@lru_cache(maxsize=1)
def _english_stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def term_id(term: str) -> int:
    """The sparse-vector index of a term: a stable 32-bit hash, no vocabulary to keep."""
    return zlib.crc32(term.encode("utf-8"))


@dataclass(frozen=True)
class Lexicon:
    """Stop words and the synonym map (variant -> canonical), all lowercased."""

    stopwords: frozenset[str] = frozenset()
    synonyms: dict[str, str] | None = None

    @classmethod
    def load(cls, stopwords: Path | None, synonyms: Path | None) -> "Lexicon":
        """Read the two tables; a configured path that does not exist is an error."""
        return cls(
            stopwords=frozenset(_simplified(term) for term in _table_lines(stopwords)),
            synonyms={
                _simplified(variant): _simplified(canonical)
                for variant, canonical in _synonym_map(synonyms).items()
            },
        )

    def canonical(self, term: str) -> str:
        """The canonical form of a term (itself when it has no synonym group)."""
        return (self.synonyms or {}).get(term, term)


@lru_cache(maxsize=1)
def _converter():
    import opencc

    return opencc.OpenCC("t2s")


def _simplified(text: str) -> str:
    """Traditional Chinese characters as Simplified; other text unchanged."""
    return _converter().convert(text)


def _table_lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    if not path.exists():
        raise ConfigError(f"lexicon table {path} does not exist; create it or set its path to null in bot.yml")
    lines = []
    for raw in path.read_text("utf-8").splitlines():
        line = raw.split("#", 1)[0].strip().lower()
        if line:
            lines.append(line)
    return lines


def _synonym_map(path: Path | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for line in _table_lines(path):
        terms = [term.strip() for term in line.split(",") if term.strip()]
        for term in terms:
            if " " in term:
                raise ConfigError(f"{path}: synonym {term!r} has a space; each term must be one token")
            mapping[term] = terms[0]
    return mapping


class LexicalEncoder(SparseEncoder):
    """jieba-tokenized, stop-word-filtered, synonym-normalized term vectors."""

    name = "lexical/jieba-bm25-snowball"
    uses_idf = True

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        avg_doc_tokens: float = 40.0,
    ):
        with warnings.catch_warnings():  # jieba imports the deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            import jieba
        jieba.setLogLevel(logging.WARNING)  # not its dictionary-building chatter

        self.lexicon = lexicon or Lexicon()
        self.k1, self.b, self.avg_doc_tokens = k1, b, avg_doc_tokens
        self._jieba = jieba.Tokenizer()
        for term in (self.lexicon.synonyms or {}):
            if not term.isascii():
                self._jieba.add_word(term)

    def tokenize(self, text: str) -> list[str]:
        """Lowercased terms in order, stop words dropped, synonyms made canonical."""
        terms = []
        for token in self._jieba.cut_for_search(_simplified(text.lower())):
            token = token.strip()
            if not token or not _TOKEN.search(token) or token in self.lexicon.stopwords:
                continue
            terms.append(_stem(self.lexicon.canonical(token)))
        return terms

    def encode_batch(self, texts: Sequence[str], *, is_query: bool) -> list[SparseVector]:
        """BM25 document weights, or binary query weights."""
        return [self._encode(text, is_query) for text in texts]

    def _encode(self, text: str, is_query: bool) -> SparseVector:
        terms = self.tokenize(text)
        counts = Counter(terms)
        weights: dict[int, float] = {}
        norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_doc_tokens)
        for term, count in counts.items():
            weight = 1.0 if is_query else count * (self.k1 + 1) / (count + norm)
            index = term_id(term)
            weights[index] = weights.get(index, 0.0) + weight
        indices = sorted(weights)
        return SparseVector(indices=indices, values=[float(weights[i]) for i in indices])
