"""Reranker on a cross-encoder TEST model (MiniLM with a random head): mechanics, not quality."""

from __future__ import annotations

import pytest

from bot.errors import ModelNotFoundError
from bot.rerank import Reranker

QUERY = "How do I reset my password?"
PASSAGES = [
    "Click 'Forgot password' on the sign-in page and follow the link we email you.",
    "Our office is closed on public holidays.",
    "Refunds reach your account within seven working days.",
    "Passwords must have at least twelve characters.",
]


@pytest.fixture(scope="module")
def reranker(reranker_test_model):
    return Reranker(reranker_test_model)


def test_scores_are_between_0_and_1(reranker):
    scores = reranker.score(QUERY, PASSAGES)
    assert len(scores) == len(PASSAGES)
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert reranker.score(QUERY, []) == []


def test_scores_are_deterministic_and_keep_order(reranker):
    scores = reranker.score(QUERY, PASSAGES)
    assert reranker.score(QUERY, PASSAGES) == scores
    assert reranker.score(QUERY, PASSAGES[2:3])[0] == pytest.approx(scores[2], abs=1e-5)


def test_rerank_sorts_best_first_by_score(reranker):
    items = [{"id": i, "text": text} for i, text in enumerate(PASSAGES)]
    ranked = reranker.rerank(QUERY, items, text_of=lambda item: item["text"])
    scores = reranker.score(QUERY, PASSAGES)
    assert [score for _, score in ranked] == sorted(scores, reverse=True)
    assert all(scores[item["id"]] == score for item, score in ranked)
    assert {item["id"] for item, _ in ranked} == set(range(len(PASSAGES)))


def test_missing_folder_says_what_to_configure(tmp_path):
    with pytest.raises(ModelNotFoundError) as error:
        Reranker(tmp_path / "bge-reranker-base")
    message = str(error.value)
    assert str(tmp_path / "bge-reranker-base") in message and "rerank.model_path" in message
    assert "huggingface-cli download" in message
