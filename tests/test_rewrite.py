"""Which follow-ups lean on the conversation (the rewriter's fallback), and the history it sees."""

import asyncio

import pytest

from bot.llm.client import LLMClient
from bot.llm.prompts import Prompts
from bot.rewrite import QueryRewriter, recent_history, refers_back


@pytest.mark.parametrize(
    "question",
    ["How long does its battery last?", "Does it include encryption?", "And the Team plan?",
     "what about shipping to Canada?", "它的电池能用多久？", "这个要多少钱？", "那团队版呢？", "还有别的颜色吗？"],
)  # fmt: skip
def test_follow_ups_that_refer_back(question):
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    ["How long does the pen battery last?", "Is there a plan that includes SSO?", "Italy shipping times?",
     "云序智能笔的电池能用多久？", "进阶版多少钱？"],
)  # fmt: skip
def test_standalone_questions(question):
    assert not refers_back(question)


def test_history_keeps_the_last_turns_and_cuts_long_messages():
    history = [{"role": "user", "content": f"q{i}"} if i % 2 == 0 else {"role": "assistant", "content": "a" * 1000}
               for i in range(10)]  # fmt: skip
    recent = recent_history(history + [{"role": "system", "content": "x"}], turns=2)
    assert [m["content"][:2] for m in recent] == ["q6", "aa", "q8", "aa"]
    assert all(len(m["content"]) <= 300 for m in recent)


def _rewriter_without_server(when: str = "referring") -> QueryRewriter:
    """A rewriter whose LLM cannot be reached (nothing listens on port 9): every call fails."""
    client = LLMClient(base_url="http://127.0.0.1:9/v1", model="none", connect_timeout=0.5, max_retries=0)
    return QueryRewriter(client, Prompts(), when=when)


HISTORY = [
    {"role": "user", "content": "How do I pair the Nimbus Pen?"},
    {"role": "assistant", "content": "Hold the power button for 3 seconds [1]."},
]


def test_a_standalone_question_is_left_alone():
    assert asyncio.run(_rewriter_without_server().rewrite("How much is Plus?", HISTORY)) == "How much is Plus?"


def test_a_follow_up_falls_back_to_the_previous_question_when_the_llm_fails():
    rewritten = asyncio.run(_rewriter_without_server().rewrite("How long does its battery last?", HISTORY))
    assert rewritten == "How do I pair the Nimbus Pen? How long does its battery last?"
    assert asyncio.run(_rewriter_without_server().rewrite("How long does its battery last?")) == (
        "How long does its battery last?"  # no history: nothing to lean on
    )
