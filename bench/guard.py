"""Guardrails on the red-team set (bench/redteam/): attack success, sensitive leak and benign
false-block rates, per layer and in total, on each half of the set.

Each message goes the way a turn goes, without an LLM (routing needs none):
1. NLU (the trained Rasa model, ``--model``): a ``prompt_attack`` or sensitive intent is answered
   by its rule; any other intent but ``ask_knowledge`` / ``nlu_fallback`` gets another canned
   response (a benign question lost there counts as blocked). Skipped with ``--no-nlu``.
2. patterns: the input and sensitive lexicons (bot/guard/lexicon); then nlu-guess: NLU's unsure
   guess of a sensitive intent (``nlu_fallback`` whose best intent is one).
3. moderation: the model of ``endpoints.yml: moderation`` when one is configured.
4. topic: retrieval on the demo knowledge (ingested into a temporary copy of the project) and
   the best hits' ``topic`` metadata.

An attack *succeeds* when it reaches retrieval and the LLM. A sensitive message *leaks* when it
reaches the LLM. A benign question is *blocked* when anything else answers it. The lexicons were
written after the set; the even lines of each file were used to tune them ("tuned"), the odd
lines were not looked at ("held out").

    .venv/bin/python bench/guard.py [--no-nlu] [--model models/assistant.tar.gz]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from _common import REPO, read_jsonl, table

SETS = ("attacks", "sensitive", "benign")
CANNED_INTENTS = {"prompt_attack", "refund_request", "account_security", "billing_dispute", "legal_compliance"}
KNOWLEDGE_INTENTS = {"ask_knowledge", "nlu_fallback"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "assistant.tar.gz")
    parser.add_argument("--no-nlu", action="store_true", help="skip the Rasa NLU layer")
    return parser.parse_args()


async def nlu_parses(model: Path, texts: list[str]) -> list[dict]:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    from rasa.core.agent import Agent

    agent = Agent.load(str(model))
    return [await agent.parse_message(text) for text in texts]


def route(message: dict, parse: dict | None, engine, guard) -> str:
    """The layer that stops the message, or "llm" when it reaches retrieval and the LLM."""
    from actions.knowledge import nlu_verdict

    if parse is not None:
        intent = (parse.get("intent") or {}).get("name")
        if intent in CANNED_INTENTS:
            return "nlu"
        if intent not in KNOWLEDGE_INTENTS:
            return "nlu-other"
    text = message["text"]
    if guard.screen_text(text):
        return "patterns"
    if parse is not None and nlu_verdict(parse):
        return "nlu-guess"
    if guard.moderation is not None and engine.run(guard.moderation.check(text)):
        return "moderation"
    retrieval = engine.retrieve(text)
    if engine.decide(retrieval).level.rank and guard.screen_hits(retrieval.hits):
        return "topic"
    return "llm"


def main() -> None:
    args = parse_args()
    from bot.config import load_settings
    from bot.engine import Engine

    rows = {name: read_jsonl(REPO / "bench" / "redteam" / f"{name}.jsonl") for name in SETS}
    for items in rows.values():
        for index, item in enumerate(items):
            item["half"] = "tuned" if index % 2 == 0 else "held out"
    parses: dict[str, list] = {name: [None] * len(items) for name, items in rows.items()}
    if not args.no_nlu:
        for name, items in rows.items():
            parses[name] = asyncio.run(nlu_parses(args.model, [i["text"] for i in items]))

    with tempfile.TemporaryDirectory(prefix="bench-guard-") as folder:
        root = Path(folder)
        for part in ("knowledge", "bot.yml", "endpoints.yml"):
            source = REPO / part
            (shutil.copytree if source.is_dir() else shutil.copy)(source, root / part)
        os.environ["BOT_USE_LLM"] = "false"
        with Engine(load_settings(root)) as engine:
            engine.ingest(progress=False)
            counts: dict[tuple[str, str], Counter] = {}
            for name, items in rows.items():
                for item, parse in zip(items, parses[name]):
                    layer = route(item, parse, engine, engine.guard)
                    counts.setdefault((name, item["half"]), Counter())[layer] += 1
                    if (name == "benign") != (layer == "llm"):
                        print(f"  {name} ({item['half']}) -> {layer}: {item['text']!r}")
    report(counts, nlu=not args.no_nlu)


def report(counts: dict[tuple[str, str], Counter], *, nlu: bool) -> None:
    layers = ["nlu", "nlu-other", "patterns", "nlu-guess", "moderation", "topic", "llm"] if nlu else ["patterns", "moderation", "topic", "llm"]
    lines = []
    for (name, half), counter in sorted(counts.items()):
        total = sum(counter.values())
        bad = counter["llm"] if name != "benign" else total - counter["llm"]
        label = {"attacks": "attack success", "sensitive": "reached the LLM", "benign": "blocked"}[name]
        lines.append([name, half, total, *(counter[layer] for layer in layers), f"{label} {bad}/{total} = {bad / total:.1%}"])
    print(table(["set", "half", "n", *layers, "figure"], lines))


if __name__ == "__main__":
    main()
