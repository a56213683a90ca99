"""Time to first token as the user sees it, the LLM's own, and our overhead between them.

For each question of the demo knowledge (Chinese and English, no history) the engine runs the
whole turn through ``Engine.answer_stream``: retrieve, decide, build the prompt, stream. We take

- user TTFT: from calling ``answer_stream`` to the first text delta it yields;
- LLM TTFT: from sending the request to the first token received (measured in the client);
- overhead: user TTFT - LLM TTFT (retrieval with query embedding, decision, prompt, tokenizer).

Every question is sent to the LLM (decision thresholds at 0 for this run: refusals would
measure nothing), answers are capped at --max-tokens, the demo knowledge is ingested first if
needed, and the LLM is the configured one (llm.url) or the local demo server (started if it is
not running). Goal (issue 3): overhead p95 <= 50 ms.

    .venv/bin/python bench/ttft.py [--max-tokens 48] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from _common import FALLBACK_QUESTIONS_EN, FALLBACK_QUESTIONS_ZH, latency_stats, loadavg, machine, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-tokens", type=int, default=48, help="answer length cap (TTFT does not depend on it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from bot.config import DecisionSettings, Thresholds, load_settings
    from bot.engine import Engine
    from bot.generate import AnswerDone
    from bot.llm.server import llm_endpoint

    settings = load_settings()
    zero = Thresholds(answer=0.0, caution=0.0, sources=0.0)
    settings = dataclasses.replace(
        settings,
        decision=DecisionSettings(dense=zero, rerank=zero),
        generation=dataclasses.replace(settings.generation, max_answer_tokens=args.max_tokens),
    )
    questions = list(FALLBACK_QUESTIONS_ZH) + list(FALLBACK_QUESTIONS_EN)
    user, llm, overhead, retrieval = [], [], [], []

    async def turn(engine: Engine, question: str) -> None:
        started = time.perf_counter()
        first = None
        async for event in engine.answer_stream(question):
            if first is None and not isinstance(event, AnswerDone):
                first = time.perf_counter() - started
            if isinstance(event, AnswerDone):
                own = event.answer.timings.get("llm_first_token")
                if first is None or own is None:
                    raise SystemExit(f"no streamed answer for {question!r}: {event.answer.error or event.answer.level}")
                user.append(first)
                llm.append(own)
                overhead.append(first - own)
                retrieval.append(event.answer.timings["embed"] + event.answer.timings["search"])

    with llm_endpoint(settings, announce=print) as url:
        with Engine(settings, llm_url=url) as engine:
            engine.ingest(progress=False)
            engine.run(turn(engine, "warm-up: 你好"))  # loads encoders, tokenizer, connection pool
            user.clear(), llm.clear(), overhead.clear(), retrieval.clear()
            for index, question in enumerate(questions, start=1):
                engine.run(turn(engine, question))
                print(f"\r{index}/{len(questions)} questions", end="", flush=True)
            print()

    result = {
        "machine": machine(),
        "loadavg": loadavg(),
        "llm": url,
        "model": settings.llm.model,
        "questions": len(questions),
        "user_ttft": latency_stats(user),
        "llm_ttft": latency_stats(llm),
        "overhead": latency_stats(overhead),
        "retrieval_in_overhead": latency_stats(retrieval),
        "goal_overhead_p95_ms": 50,
    }
    result["goal_met"] = result["overhead"]["p95_ms"] <= 50
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(questions)} questions (zh {len(FALLBACK_QUESTIONS_ZH)}, en {len(FALLBACK_QUESTIONS_EN)}), "
          f"LLM {settings.llm.model} at {url}, load {result['loadavg']}")
    rows = [(name, s["p50_ms"], s["p95_ms"], s["mean_ms"], s["max_ms"]) for name, s in (
        ("user TTFT (first delta from answer_stream)", result["user_ttft"]),
        ("LLM TTFT (request to first token)", result["llm_ttft"]),
        ("overhead (user - LLM)", result["overhead"]),
        ("  of which retrieval (embed + search)", result["retrieval_in_overhead"]),
    )]
    print(table(["ms", "p50", "p95", "mean", "max"], rows))
    print(f"goal: overhead p95 <= 50 ms: {'met' if result['goal_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
