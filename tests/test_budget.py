"""Token budgets (bot/llm/budget.py) and how Generator packs passages into prompts (bot/generate.py).

The real tokenizer is the local model's: models/qwen2.5-coder-0.5b-instruct (``make install``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from bot.config import GenerationSettings
from bot.generate import Generator, Passage
from bot.lang import estimate_tokens
from bot.llm.budget import TokenCounter
from bot.llm.prompts import Prompts
from bot.retrieve import Hit

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "qwen2.5-coder-0.5b-instruct"

TEXTS = [
    "",
    "hello world",
    "退款将在七个工作日内原路退回。",
    "Mixed 中文 and English, 123 tokens [1].",
    "<|im_start|>user\nhi<|im_end|>",
    "  leading and trailing spaces  \n\n",
    "emoji 😀 and symbols → ≤ …",
]
LONG_EN = "The quick brown fox jumps over the lazy dog. " * 20
LONG_ZH = "退款将在七个工作日内原路退回，请耐心等待。" * 10


@pytest.fixture(scope="module")
def reference() -> Tokenizer:
    assert (MODEL_DIR / "tokenizer.json").is_file(), f"{MODEL_DIR} is missing: run `make install`"
    return Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))


@pytest.fixture(scope="module")
def exact(reference) -> TokenCounter:
    return TokenCounter(MODEL_DIR)


@pytest.fixture(scope="module")
def estimate() -> TokenCounter:
    return TokenCounter(None)


# --- TokenCounter with the model's tokenizer -------------------------------------------------------


def test_exact_from_folder_or_file(exact):
    assert exact.exact is True
    assert TokenCounter(MODEL_DIR / "tokenizer.json").exact is True


@pytest.mark.parametrize("text", TEXTS + [LONG_EN, LONG_ZH], ids=range(len(TEXTS) + 2))
def test_exact_counts_match_the_tokenizer(exact, reference, text):
    assert exact.count(text) == len(reference.encode(text, add_special_tokens=False).ids)


def test_exact_counts_are_not_estimates(exact):
    # the Qwen tokenizer merges common English words: far fewer tokens than the estimate
    assert exact.count(LONG_EN) != TokenCounter(None).count(LONG_EN)
    assert exact.count("hello world") == 2


@pytest.mark.parametrize("text", ["short", "退款很快。", LONG_EN], ids=["short", "zh", "long"])
def test_exact_truncate_leaves_short_text_unchanged(exact, text):
    assert exact.truncate(text, exact.count(text)) == text
    assert exact.truncate(text, 10_000) == text


@pytest.mark.parametrize("text", [LONG_EN, LONG_ZH], ids=["en", "zh"])
@pytest.mark.parametrize("budget", [2, 5, 10, 37, 100])
def test_exact_truncate_is_a_prefix_ending_in_ellipsis(exact, text, budget):
    cut = exact.truncate(text, budget)
    assert cut.endswith("…")
    assert text.startswith(cut[:-1])
    assert len(cut) < len(text)
    # within the budget, and not much shorter than it
    assert budget // 2 <= exact.count(cut) <= budget


@pytest.mark.parametrize("text", [LONG_EN, LONG_ZH], ids=["en", "zh"])
def test_exact_truncate_stays_within_the_budget(exact, text):
    for budget in (1, 5, 37, 100):
        assert exact.count(exact.truncate(text, budget)) <= budget


def test_truncate_to_nothing(exact, estimate):
    assert exact.truncate(LONG_EN, 0) == ""
    assert estimate.truncate(LONG_EN, -3) == ""


# --- TokenCounter without a tokenizer ------------------------------------------------------------


@pytest.mark.parametrize("path", [None, Path("/nonexistent/model"), Path("/nonexistent/tokenizer.json")])
def test_without_tokenizer_counts_are_estimates(path):
    counter = TokenCounter(path)
    assert counter.exact is False
    for text in TEXTS + [LONG_EN, LONG_ZH]:
        assert counter.count(text) >= estimate_tokens(text)
    assert counter.count(LONG_ZH) > estimate_tokens(LONG_ZH)


def test_folder_without_tokenizer_json_is_an_estimate(tmp_path):
    assert TokenCounter(tmp_path).exact is False


@pytest.mark.parametrize("text", [LONG_EN, LONG_ZH], ids=["en", "zh"])
@pytest.mark.parametrize("budget", [1, 5, 10, 37, 100])
def test_estimate_truncate_respects_the_budget(estimate, text, budget):
    cut = estimate.truncate(text, budget)
    assert cut.endswith("…")
    assert text.startswith(cut[:-1])
    assert estimate.count(cut) <= budget
    # the longest such prefix: one more character would not fit (or is whitespace)
    grown = text[: len(cut)]
    assert estimate.count(grown) > budget or grown.endswith(" ")


def test_estimate_truncate_leaves_short_text_unchanged(estimate):
    assert estimate.truncate("short text", 100) == "short text"
    assert estimate.truncate("退款很快。", estimate.count("退款很快。")) == "退款很快。"


# --- Generator.passages and Generator.batches, no LLM ---------------------------------------------


def _hit(rank: int, text: str, **payload) -> Hit:
    payload = {"text": text, "title": f"Doc {rank}", "section": f"Part {rank}", "source": f"docs/{rank}.md", **payload}
    return Hit(f"id-{rank}", rank, 1.0 / rank, {"content_dense": 1.0 / rank}, payload)


def _generator(exact: TokenCounter, **settings) -> Generator:
    defaults = dict(max_context_tokens=600, max_answer_tokens=100)
    return Generator(
        client=None, prompts=Prompts(), counter=exact, settings=GenerationSettings(**{**defaults, **settings})
    )


TEMPLATE_TOKENS = 50
BUDGET = 600 - 100 - TEMPLATE_TOKENS - 16  # context - answer - template - margin


def _cost(counter: TokenCounter, passage: Passage) -> int:
    return counter.count(f"[{passage.number}] {passage.heading}\n{passage.text}\n")


def _numbers(batches: list[list[Passage]]) -> list[list[int]]:
    return [[p.number for p in batch] for batch in batches]


def test_passages_headings_and_numbers(exact):
    hits = [
        _hit(1, "Refunds take 7 days.", question="How long do refunds take?"),
        _hit(2, "Hold the button."),
        Hit("id-3", 3, 0.3, {}, {"title": "Only title", "text": "x"}),
        Hit("id-4", 4, 0.2, {}, {"section": "Only section", "text": "y"}),
    ]
    passages = _generator(exact).passages(hits)
    assert [p.number for p in passages] == [1, 2, 3, 4]
    assert [p.heading for p in passages] == ["How long do refunds take?", "Doc 2 > Part 2", "Only title", "Only section"]
    assert [p.text for p in passages] == ["Refunds take 7 days.", "Hold the button.", "x", "y"]
    assert [p.hit for p in passages] == hits


def test_stuff_packs_what_fits_in_rank_order_and_stops(exact):
    generator = _generator(exact, strategy="stuff")
    passages = generator.passages([_hit(rank, f"word{rank} " * 40) for rank in range(1, 8)])
    costs = [_cost(exact, p) for p in passages]
    fitting = max(k for k in range(len(costs) + 1) if sum(costs[:k]) <= BUDGET)
    assert 1 < fitting < len(passages)  # the test is only meaningful when some, not all, fit
    batches = generator.batches(passages, TEMPLATE_TOKENS)
    assert _numbers(batches) == [list(range(1, fitting + 1))]
    assert batches[0] == passages[:fitting]  # untouched, not trimmed
    assert sum(_cost(exact, p) for p in batches[0]) <= BUDGET


def test_stuff_stops_at_the_first_passage_that_does_not_fit(exact):
    generator = _generator(exact, strategy="stuff")
    hits = [_hit(1, "alpha " * 150), _hit(2, "beta " * 300), _hit(3, "short.")]
    passages = generator.passages(hits)
    assert _cost(exact, passages[0]) <= BUDGET < _cost(exact, passages[0]) + _cost(exact, passages[1])
    assert _numbers(generator.batches(passages, TEMPLATE_TOKENS)) == [[1]]


def test_everything_fits_in_one_batch(exact):
    generator = _generator(exact, strategy="refine")
    passages = generator.passages([_hit(rank, f"Short passage {rank}.") for rank in range(1, 6)])
    assert _numbers(generator.batches(passages, TEMPLATE_TOKENS)) == [[1, 2, 3, 4, 5]]


@pytest.mark.parametrize("strategy", ["stuff", "refine"])
def test_best_passage_alone_too_long_is_trimmed_and_first(exact, strategy):
    generator = _generator(exact, strategy=strategy)
    passages = generator.passages([_hit(1, "alpha beta gamma delta " * 300), _hit(2, "A short second passage.")])
    assert _cost(exact, passages[0]) > BUDGET
    batches = generator.batches(passages, TEMPLATE_TOKENS)
    first = batches[0][0]
    assert first.number == 1 and first.heading == "Doc 1 > Part 1" and first.hit is passages[0].hit
    assert first.text.endswith("…") and passages[0].text.startswith(first.text[:-1])
    assert _cost(exact, first) <= BUDGET
    assert _cost(exact, first) >= BUDGET - 48  # it uses the budget, not a token or two of it
    if strategy == "stuff":
        assert _numbers(batches) == [[1]]
    else:  # the second passage goes to a refine batch, whole
        assert _numbers(batches) == [[1], [2]] and batches[1][0] == passages[1]


def test_refine_batches_keep_rank_numbers_up_to_the_limit(exact):
    generator = _generator(exact, strategy="refine", refine_batches=2)
    passages = generator.passages([_hit(rank, f"word{rank} " * 40) for rank in range(1, 13)])
    per_batch = max(k for k in range(1, 13) if sum(_cost(exact, p) for p in passages[:k]) <= BUDGET)
    assert 2 * per_batch < len(passages)  # more than two batches' worth
    batches = generator.batches(passages, TEMPLATE_TOKENS)
    assert len(batches) == 2
    flat = [p.number for batch in batches for p in batch]
    assert flat == list(range(1, len(flat) + 1))  # rank order, numbers unchanged
    assert _numbers(batches)[0] == list(range(1, per_batch + 1))
    for batch in batches:
        assert sum(_cost(exact, p) for p in batch) <= BUDGET
        assert all(p == passages[p.number - 1] for p in batch)  # whole passages


def test_refine_uses_up_to_refine_batches(exact):
    generator = _generator(exact, strategy="refine", refine_batches=3)
    passages = generator.passages([_hit(rank, f"word{rank} " * 40) for rank in range(1, 30)])
    batches = generator.batches(passages, TEMPLATE_TOKENS)
    assert len(batches) == 3
    assert [p.number for batch in batches for p in batch] == list(range(1, sum(map(len, batches)) + 1))
    one = _generator(exact, strategy="refine", refine_batches=1).batches(passages, TEMPLATE_TOKENS)
    assert _numbers(one) == _numbers(batches)[:1]


def test_template_tokens_shrink_the_budget(exact):
    generator = _generator(exact, strategy="stuff")
    passages = generator.passages([_hit(rank, f"word{rank} " * 40) for rank in range(1, 8)])
    roomy = generator.batches(passages, TEMPLATE_TOKENS)
    tight = generator.batches(passages, TEMPLATE_TOKENS + 2 * _cost(exact, passages[0]))
    assert len(tight[0]) < len(roomy[0])


def test_no_passages_no_batches(exact):
    assert _generator(exact).batches([], TEMPLATE_TOKENS) == []
