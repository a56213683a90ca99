"""The doors' rate limiter and their refusals."""

from __future__ import annotations

from bot.doors import refusal_body, sender_language
from bot.ratelimit import RateLimiter


class Clock:
    """Time that moves only when the test says (the limiter's clock is a parameter)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_budget_then_waits_for_the_refill():
    clock = Clock()
    limiter = RateLimiter(per_minute=3, clock=clock)
    assert [limiter.allow("c1") for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("c1") == 20  # one token every 20 s
    assert limiter.allow("c2"), "another key has its own budget"
    clock.now += 20
    assert limiter.allow("c1") and not limiter.allow("c1")


def test_the_budget_never_exceeds_one_minute_of_tokens():
    clock = Clock()
    limiter = RateLimiter(per_minute=2, clock=clock)
    clock.now += 3600
    assert [limiter.allow("c") for _ in range(3)] == [True, True, False]


def test_refused_requests_do_not_extend_the_wait():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, clock=clock)
    for _ in range(60):
        assert limiter.allow("c")
    for _ in range(100):
        assert not limiter.allow("c")
    clock.now += 1
    assert limiter.allow("c")


def test_memory_is_bounded_to_the_most_recent_keys():
    limiter = RateLimiter(per_minute=1, max_keys=100)
    for index in range(1000):
        limiter.allow(f"client-{index}")
    assert len(limiter._buckets) == 100
    assert not limiter.allow("client-999"), "a recent key keeps its empty bucket"


def test_refusals_are_one_plain_sentence_in_the_senders_language():
    zh = refusal_body("too_many_requests", sender_language("退款要多久？"), seconds=5)
    en = refusal_body("request_too_large", sender_language(None, {"accept-language": "en-US"}), limit="64 KB")
    assert zh == {"error": "too_many_requests", "message": "消息发得太快了，请 5 秒后再试。"}
    assert en["error"] == "request_too_large" and "64 KB" in en["message"] and en["message"].startswith("That message")
    assert sender_language(None, {"accept-language": "zh-CN,zh;q=0.9"}) == "zh"
