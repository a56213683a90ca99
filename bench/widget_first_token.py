"""Time to the first token in the browser (the web widget), against the LLM's own time to first token.

For each question (answerable ones from ``bench/demo_queries.jsonl``, Chinese and English
alternating, each in a new widget session so there is no history) a headless Chromium page
with the widget sends the question over Rasa's socket.io channel, ``--settle`` seconds after the
widget is ready (default 1 s: a person reads and types; the browser runs on the server's own
two cores here, and its page load would otherwise compete with Rasa), and records, with the
page's clock:

- browser first token: from emitting the message to the first ``delta`` of the live stream
  (server-sent events from the action server) written into the answer bubble;
- send -> start: from emitting the message to the stream's ``start`` event (socket.io to Rasa,
  NLU, policies, the call to the action server, the SSE hop back).

The LLM's own time to first token (request sent -> first token received, measured by the LLM
client and traced as ``timings.llm_first_token`` of the turn) is read from SQL by turn id.
Only turns that reached the LLM (level answer or cautious) count; others are skipped and
listed. Goal (web widget issue): p95 of (browser first token - LLM TTFT) <= 100 ms.

The stack is real: vLLM on CPU (the demo model; a running one on ``local_llm.port`` is reused),
the action server and ``rasa run``, started on a temporary copy of the project (answers
capped at ``--max-tokens``; TTFT does not depend on it), or those of a running ``bot serve``:

    .venv/bin/python bench/widget_first_token.py [--questions 20] [--max-tokens 48] [--json]
    .venv/bin/python bench/widget_first_token.py --rasa-url http://localhost:5005 \\
        --action-url http://localhost:5055 [--project .]     # SQL of that project's endpoints.yml
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from _common import REPO, exit_cleanly_on_sigterm, is_chinese, latency_stats, loadavg, machine, read_jsonl, table

CHROMIUM = Path("/usr/bin/chromium")
#: What the assistant needs to run (like tests/assistant_project.py), plus the widget.
PROJECT_FILES = (
    "config.yml", "domain.yml", "credentials.yml", "bot.yml", "endpoints.yml",
    "data", "actions", "rasa_sdk_plugins", "knowledge", "channels", "widget",
)  # fmt: skip
GOAL_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=20, help="answered questions to time")
    parser.add_argument("--warmup", type=int, default=2, help="questions asked first, not timed")
    parser.add_argument("--max-tokens", type=int, default=48, help="answer length cap of the temporary stack")
    parser.add_argument(
        "--settle", type=float, default=1.0,
        help="seconds between the widget being ready and sending (a person types; 0: at once)",
    )  # fmt: skip
    parser.add_argument("--rasa-url", help="a running rasa run (socket.io), e.g. http://localhost:5005")
    parser.add_argument("--action-url", help="its action server, e.g. http://localhost:5055")
    parser.add_argument("--project", type=Path, default=REPO, help="the running stack's project (for SQL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    if not CHROMIUM.exists():
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")
    if bool(args.rasa_url) != bool(args.action_url):
        raise SystemExit("give both --rasa-url and --action-url, or neither (a temporary stack is started)")

    questions = candidate_questions()
    load_start = loadavg()
    if args.rasa_url:
        from bot.config import load_settings
        from bot.db.engine import connect

        settings = load_settings(args.project.resolve())
        sql = connect(settings.sql.url, settings.root)
        rows, skipped, model = run(args, questions, args.rasa_url.rstrip("/"), args.action_url.rstrip("/"), sql)
        llm_url = settings.llm.url or f"local demo server, port {settings.local_llm.port}"
    else:
        with tempfile.TemporaryDirectory(prefix="bench-widget-") as temp:
            with temporary_stack(Path(temp), args.max_tokens) as (rasa_url, action_url, sql, llm_url):
                rows, skipped, model = run(args, questions, rasa_url, action_url, sql)
    report(args, rows, skipped, model, llm_url, load_start)


def candidate_questions() -> list[str]:
    """Answerable demo questions (a non-empty ``expected``), Chinese and English alternating."""
    zh, en = [], []
    for row in read_jsonl(REPO / "bench" / "demo_queries.jsonl"):
        if row.get("expected"):
            (zh if is_chinese(row["query"]) else en).append(row["query"])
    mixed = []
    for pair in zip(zh, en):
        mixed.extend(pair)
    return mixed + zh[len(en) :] + en[len(zh) :]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class temporary_stack:
    """vLLM (reused on ``local_llm.port`` when it serves the model) + action server + rasa run
    on a copy of the project in ``root``; yields (rasa URL, action server URL, SQL, LLM URL)."""

    def __init__(self, root: Path, max_tokens: int):
        self.root, self.max_tokens = root / "project", max_tokens
        self.stops = []

    def __enter__(self):
        from bot.assistant import (
            action_server, engine_ready, ingest_if_changed, model_path, rasa_ready, rasa_server, train_if_changed,
        )  # fmt: skip
        from bot.config import load_settings
        from bot.db.engine import connect
        from bot.llm.server import LLMServer

        repo_settings = load_settings(REPO)
        train_if_changed(repo_settings, print)
        llm = LLMServer.from_settings(repo_settings, log_path=self.root.parent / "vllm.log")
        if not llm.serves_model():
            print(f"starting the demo LLM (vLLM on CPU, port {llm.port}); about a minute")
            llm.start()
            self.stops.append(llm.stop)
            llm.wait_ready()
        action_port, rasa_port = free_port(), free_port()
        self.root.mkdir(parents=True)
        for name in PROJECT_FILES:
            source = REPO / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, self.root / name)
        (self.root / "models").symlink_to(REPO / "models")  # the tokenizer for prompt budgets
        endpoints = (self.root / "endpoints.yml").read_text("utf-8")
        endpoints = endpoints.replace("http://localhost:5055/webhook", f"http://localhost:{action_port}/webhook")
        endpoints = re.sub(r"(?m)^  url:\s*$", f"  url: {llm.url}", endpoints)
        (self.root / "endpoints.yml").write_text(endpoints, "utf-8")
        bot_yml = (self.root / "bot.yml").read_text("utf-8")
        bot_yml = re.sub(r"(?m)^(  max_answer_tokens:)\s*\d+", rf"\g<1> {self.max_tokens}", bot_yml)
        (self.root / "bot.yml").write_text(bot_yml, "utf-8")
        settings = load_settings(self.root)
        ingest_if_changed(settings, print)
        actions = action_server(settings, port=action_port)
        rasa = rasa_server(settings, port=rasa_port, model=model_path(REPO))
        try:
            print(f"starting the action server (port {action_port}) and rasa run (port {rasa_port})")
            actions.start()
            self.stops.insert(0, actions.stop)
            actions.wait_ready(engine_ready(action_port), 600)
            rasa.start()
            self.stops.insert(0, rasa.stop)
            rasa.wait_ready(rasa_ready(rasa_port), 600)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        sql = connect(settings.sql.url, settings.root)
        return f"http://127.0.0.1:{rasa_port}", f"http://127.0.0.1:{action_port}", sql, llm.url

    def __exit__(self, *exc) -> None:
        for stop in self.stops:
            stop()
        self.stops.clear()


def run(args, questions: list[str], rasa_url: str, action_url: str, sql):
    """Ask until ``args.questions`` answered turns are timed; returns (rows, skipped, model)."""
    from playwright.sync_api import sync_playwright

    from bot.traces import get_turn

    rows, skipped, model = [], [], ""
    url = f"{action_url}/widget/index.html?" + urlencode(
        {"server": rasa_url, "actions": action_url, "open": "1", "record": "1", "lang": "en"}
    )
    pool = iter(questions * 3)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        asked = 0
        while len(rows) < args.questions:
            question = next(pool, None)
            if question is None:
                raise SystemExit(f"only {len(rows)} of the questions were answered by the LLM; skipped: {skipped}")
            context = browser.new_context()  # a new widget session: no history, no rewrite
            try:
                page = context.new_page()
                page.goto(url)
                page.locator(".kbw-input:enabled").wait_for(timeout=60_000)
                time.sleep(args.settle)  # the browser shares the server's two cores: let the page load settle
                timing = ask(page, question)
            finally:
                context.close()
            turn = None
            deadline = time.monotonic() + 60
            while timing["turn_id"] and time.monotonic() < deadline:
                turn = get_turn(sql, timing["turn_id"])
                if turn is not None:
                    break
                time.sleep(0.2)
            asked += 1
            if asked <= args.warmup:
                continue
            own = ((turn or {}).get("timings") or {}).get("llm_first_token")
            if turn is None or own is None or timing["first_delta"] is None:
                why = (turn or {}).get("level") or ("no trace" if timing["turn_id"] else "canned answer, no knowledge turn")
                skipped.append(f"{question} ({why})")
                continue
            model = turn.get("model") or model
            stages = turn.get("timings") or {}
            rows.append(
                {
                    "question": question,
                    "turn_id": timing["turn_id"],
                    "level": turn.get("level"),
                    "browser_first": timing["first_delta"] / 1000,
                    "send_to_start": timing["start"] / 1000 if timing["start"] is not None else None,
                    "llm_ttft": own,
                    "difference": timing["first_delta"] / 1000 - own,
                    "engine_before_llm": sum(stages.get(k, 0.0) for k in ("rewrite", "embed", "search", "rerank")),
                }
            )
            row = rows[-1]
            if row["send_to_start"] is not None:  # prompt building, and the first delta's way to the page
                row["rest"] = row["difference"] - row["send_to_start"] - row["engine_before_llm"]
            if not args.json:
                print(f"\r{len(rows)}/{args.questions} answered ({len(skipped)} skipped)", end="", flush=True)
        browser.close()
    if not args.json:
        print()
    return rows, skipped, model


def ask(page, question: str) -> dict:
    """Send ``question`` in the widget; the page's timings (ms from sending) once it is answered."""
    page.locator(".kbw-input").fill(question)
    page.locator(".kbw-input").press("Enter")
    page.locator(".kbw-final, .kbw-canned, .kbw-error").first.wait_for(timeout=300_000)
    recorded = page.evaluate("window.__kbEvents")
    sent = next(e["t"] for e in recorded if e["kind"] == "send")
    start = next((e for e in recorded if e["kind"] == "sse" and e.get("type") == "start"), None)
    first = next((e for e in recorded if e["kind"] == "first_delta_rendered"), None)
    final = next((e for e in recorded if e["kind"] == "final_rendered"), None)
    return {
        "turn_id": (final or start or {}).get("turn_id"),
        "start": start["t"] - sent if start else None,
        "first_delta": first["t"] - sent if first else None,
    }


def report(args, rows: list[dict], skipped: list[str], model: str, llm_url: str, load_start) -> None:
    browser_first = latency_stats([r["browser_first"] for r in rows])
    llm = latency_stats([r["llm_ttft"] for r in rows])
    difference = latency_stats([r["difference"] for r in rows])
    send_to_start = latency_stats([r["send_to_start"] for r in rows if r["send_to_start"] is not None])
    engine = latency_stats([r["engine_before_llm"] for r in rows])
    rest = latency_stats([r["rest"] for r in rows if "rest" in r])
    met = difference["p95_ms"] <= GOAL_MS
    result = {
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "llm": llm_url,
        "model": model,
        "settle_s": args.settle,
        "questions": len(rows),
        "zh": sum(is_chinese(r["question"]) for r in rows),
        "skipped": skipped,
        "browser_first_token": browser_first,
        "llm_ttft": llm,
        "difference": difference,
        "send_to_stream_start": send_to_start,
        "engine_before_llm": engine,
        "rest": rest,
        "p95_browser_minus_p95_llm_ms": round(browser_first["p95_ms"] - llm["p95_ms"], 3),
        "goal_ms": GOAL_MS,
        "goal_met": met,
        "turns": rows,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    print(f"machine: {result['machine']}")
    print(f"load average at start {load_start}, at end {result['loadavg_end']}")
    print(f"LLM: {llm_url} ({model}); {len(rows)} answered questions ({result['zh']} Chinese), {len(skipped)} skipped")
    print(f"each question sent {args.settle:g} s after its widget was ready")
    for line in skipped:
        print(f"  skipped (not sent to the LLM): {line}")
    print("difference = send -> stream start (socket.io, Rasa: NLU, language slot action, policies, the")
    print("action call, the SSE hop) + engine before the LLM (rewrite, embed, search) + rest")
    names = [
        ("browser first token", browser_first),
        ("LLM TTFT (its own)", llm),
        ("difference (paired)", difference),
        ("  send -> stream start", send_to_start),
        ("  engine before the LLM", engine),
        ("  rest (prompt, SSE hop)", rest),
    ]
    print(table(["ms", "p50", "p95", "mean", "max"], [[n, s["p50_ms"], s["p95_ms"], s["mean_ms"], s["max_ms"]] for n, s in names]))
    print(f"p95(browser first token) - p95(LLM TTFT) = {result['p95_browser_minus_p95_llm_ms']:.1f} ms")
    verdict = "GOAL MET" if met else "GOAL MISSED"
    print(f"{verdict}: p95(browser first token - LLM TTFT) = {difference['p95_ms']:.1f} ms (goal <= {GOAL_MS:.0f} ms)")


if __name__ == "__main__":
    main()
