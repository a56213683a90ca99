"""The ``bot`` command: chat, serve, ingest, search, eval, calibrate, ask, enhance, traces, serve-llm.
Known errors become one clean line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from functools import wraps
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from bot.config import load_settings
from bot.errors import BotError
from bot.lang import shorten

__all__ = ["main", "cli"]


def _version() -> str:
    try:
        return version("rasa-knowledge-bot")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "source"


def _clean_errors(command):
    """Turn the engine's own errors into a message and exit status 1, not a traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BotError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _engine(ctx: click.Context, collection: str | None = None):
    from bot.engine import Engine

    return Engine(load_settings(ctx.obj["root"]), collection=collection)


@click.group()
@click.version_option(_version(), prog_name="bot")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder holding bot.yml and endpoints.yml (default: found from the current folder).",
)
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """Grounded knowledge question answering for Rasa assistants."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    ctx.obj = {"root": root}


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Drop the collection and ingest everything again.")
@click.option("--collection", default=None, help="Collection to fill (default: the configured one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@_clean_errors
def ingest(ctx, paths, rebuild, collection, as_json):
    """Index files and folders (default: ingest.paths in bot.yml, i.e. knowledge/).

    Incremental: unchanged files are skipped, changed files replace their chunks,
    deleted files lose theirs. Ends by verifying every chunk is in the store.
    """
    with _engine(ctx, collection) as engine:
        report = engine.ingest(list(paths) or None, rebuild=rebuild, progress=not as_json)
    click.echo(json.dumps(report.as_dict(), ensure_ascii=False) if as_json else report.summary())
    if not report.complete:
        sys.exit(1)


@cli.command()
@click.argument("query")
@click.option("--top-k", type=int, default=None, help="How many hits to show.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    help="Keep hits whose metadata NAME equals VALUE (repeat; VALUE may be a,b for any of).",
)
@click.option("--collection", default=None, help="Collection to search.")
@click.option("--json", "as_json", is_flag=True, help="Print hits and decision as JSON.")
@click.pass_context
@_clean_errors
def search(ctx, query, top_k, filters, collection, as_json):
    """Show the fused hits for QUERY with each route's score, and the decision."""
    with _engine(ctx, collection) as engine:
        retrieval = engine.retrieve(query, _parse_filters(filters), top_k)
        decision = engine.decide(retrieval)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "query": query,
                    "fusion": retrieval.fusion,
                    "decision": decision.as_dict(),
                    "hits": [hit.as_dict() for hit in retrieval.hits],
                    "timings_ms": {k: round(v * 1000, 2) for k, v in retrieval.timings.items()},
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    score = "n/a" if decision.score is None else f"{decision.score:.4f}"
    click.echo(f"decision: {decision.level.value} ({decision.signal} {score})")
    click.echo(f"fusion: {retrieval.fusion}")
    for hit in retrieval.hits:
        routes = "  ".join(f"{name}={value:.3f}" for name, value in sorted(hit.route_scores.items()))
        click.echo(f"\n[{hit.rank}] {hit.title or hit.source}  ({hit.item_id})  fused={hit.fused_score:.4f}")
        click.echo(f"    {routes}" + (f"  rerank={hit.rerank_score:.3f}" if hit.rerank_score is not None else ""))
        if hit.question:
            click.echo(f"    Q: {hit.question}")
        click.echo(f"    {shorten(hit.text, 160)}")
        click.echo(f"    source: {hit.source}")


@cli.command("eval")
@click.option("--knowledge", type=click.Path(exists=True, path_type=Path), required=True, help="Knowledge JSONL (or any ingestible file or folder).")
@click.option("--queries", type=click.Path(exists=True, path_type=Path), multiple=True, required=True, help="Queries JSONL (repeat to add must-refuse sets).")
@click.option("--fusion", type=click.Choice(["learned", "rrf", "dbsf"]), default=None, help="Override retrieval.fusion.")
@click.option("--rebuild", is_flag=True, help="Re-embed the knowledge (after changing encoders or chunking).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--answers", is_flag=True, help="Generate the answers (real LLM) and score them against the queries' references; see below.")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=4, show_default=True, help="--answers: questions answered at a time.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="--answers: a seeded sample of N questions.")
@click.option("--seed", type=int, default=13, show_default=True, help="--answers: the sample's seed.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None, help="--answers: folder for report.html, answers.jsonl, summary.json [default: .bot/answer-eval].")
@click.option("--judge", is_flag=True, help="--answers: also grade answers with the LLM at endpoints.yml judge.url.")
@click.pass_context
@_clean_errors
def eval_command(ctx, knowledge, queries, fusion, rebuild, as_json, answers, workers, limit, seed, output, judge):
    """Measure retrieval and refusal on labelled queries.

    KNOWLEDGE is ingested into a collection of its own (incrementally: a second run embeds
    nothing). Reports hit@1, hit@5, MRR@10 (fused and per route) and the answered and
    refused rates at the configured thresholds.

    With --answers, every question is answered through the real path (the LLM of llm.url, else
    the local demo server) and scored: answered / declined / refused against what was expected,
    reference containment and token F1 ("answers" / "answer" in the queries), required facts
    ("must_include"), citation of an expected item, groundedness, latency and tokens.
    """
    if answers:
        from bot.answer_eval.command import run_answer_eval

        return run_answer_eval(ctx.obj["root"], knowledge, queries, as_json=as_json, workers=workers, limit=limit,
                               seed=seed, output=output, judge=judge, rebuild=rebuild, fusion=fusion)  # fmt: skip
    report = _run_eval(ctx, knowledge, queries, fusion, as_json, rebuild=rebuild)
    metrics = report.as_dict()
    if as_json:
        click.echo(json.dumps(metrics, ensure_ascii=False))
        return
    click.echo(
        f"{metrics['n_answerable']} answerable, {metrics['n_refuse']} must-refuse; signal: {metrics['signal']}"
    )
    click.echo(f"fusion: {metrics['fusion']}")
    click.echo(f"{'route':<16}{'hit@1':>8}{'hit@5':>8}{'MRR@10':>8}")
    for name, row in [("fused", metrics), *metrics["routes"].items()]:
        if not row["queries_with_hits"]:
            click.echo(f"{name:<16}{'-':>8}{'-':>8}{'-':>8}  (nothing to search: no record has this side)")
            continue
        click.echo(f"{name:<16}{row['hit_at_1']:>8.3f}{row['hit_at_5']:>8.3f}{row['mrr_at_10']:>8.3f}")
    click.echo(
        f"answered among answerable: {metrics['answered_rate']:.3f}   "
        f"refused among must-refuse: {metrics['refused_rate']:.3f}   levels: {metrics['levels']}"
    )


@cli.command()
@click.option("--knowledge", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--queries", type=click.Path(exists=True, path_type=Path), multiple=True, help="Queries JSONL with answerable and must-refuse questions (repeat; `bot traces export` writes one).")
@click.option("--enhanced", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Review file of `bot enhance` whose unapproved questions are answerable examples [default: ingest.enhanced_questions].")
@click.option("--no-generic-refuse", is_flag=True, help="Leave out the shipped everyday off-topic questions (must-refuse examples).")
@click.option("--answer-rate", type=float, default=0.95, show_default=True, help="Share of answerable questions that must still be answered.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG path (default: .bot/calibration-<signal>.png).")
@click.option("--dry-run", is_flag=True, help="Show the thresholds and models without writing bot.yml or the models.")
@click.pass_context
@_clean_errors
def calibrate(ctx, knowledge, queries, enhanced, no_generic_refuse, answer_rate, plot, dry_run):
    """Fit the learned fusion and the answerable probability for KNOWLEDGE's collection, and
    choose the refusal thresholds.

    \b
    Examples: --queries files (labelled questions), the LLM-written questions of `bot enhance`
    that were not approved into the index, and shipped everyday off-topic questions (must refuse).
    The models are saved under .bot/fusion/ for KNOWLEDGE's evaluation collection, and for the
    bot's own collection when KNOWLEDGE is what it ingests (ingest.paths). With --queries, the
    dense thresholds (used without a model) are also chosen and written to bot.yml.
    """
    from bot.calibrate import enhanced_questions, fit_for_engine, generic_refuse, plot_scores
    from bot.decide import level_for
    from bot.evaluate import evaluate, read_queries
    from bot.fusion import model_path, save_models

    settings = load_settings(ctx.obj["root"])
    labelled = read_queries(queries)
    with _eval_engine(settings, knowledge, quiet=False) as (engine, chunks, identical):
        if queries:
            report = evaluate(engine, labelled, identical=identical, fusion="rrf")
            _calibrate_dense(settings, report, answer_rate, plot, dry_run)
        enhanced = enhanced or settings.ingest.enhanced_questions
        generated = enhanced_questions(enhanced, {chunk.item_id for chunk in chunks})
        generic = [] if no_generic_refuse else generic_refuse()
        examples = labelled + generated + generic
        if not any(q.answerable for q in examples):
            raise click.ClickException(
                "calibration needs answerable questions: --queries with expected ids, or questions written by "
                f"`bot enhance` for this knowledge (none usable in {enhanced})"
            )
        click.echo(
            f"examples: {sum(q.answerable for q in labelled)} answerable and {sum(not q.answerable for q in labelled)} "
            f"must-refuse from --queries, {len(generated)} LLM-written answerable from {enhanced}, "
            f"{len(generic)} generic off-topic must-refuse"
        )
        models, yes, no = fit_for_engine(engine, examples, identical=identical, answer_rate=answer_rate, knowledge=str(knowledge))
    click.echo(f"fusion: {replace(models, default=False).describe()}")
    if models.answerable is None:
        click.echo("note: no must-refuse examples, so no answerable model: refusal keeps the dense thresholds")
    else:
        thresholds = models.thresholds
        path = plot if plot and not queries else settings.data_dir / "calibration-answerable.png"
        plot_scores(yes, no, thresholds, path, signal="answerable (probability)")
        answered = sum(level_for(p, thresholds).answers for p in yes)
        refused = sum(not level_for(p, thresholds).answers for p in no)
        click.echo(
            f"answerable thresholds: answer >= {thresholds.answer}, caution >= {thresholds.caution}, sources >= {thresholds.sources}"
        )
        click.echo(f"answered {answered}/{len(yes)} answerable, refused {refused}/{len(no)} must-refuse (training examples); plot: {path}")
    if dry_run:
        return
    for collection in _model_collections(settings, knowledge, engine.collection):
        saved = save_models(replace(models, info={**models.info, "collection": collection}), model_path(settings, collection))
        click.echo(f"model for collection {collection} written to {saved}")


def _calibrate_dense(settings, report, answer_rate: float, plot, dry_run: bool) -> None:
    """Dense (or rerank) thresholds from the --queries, as used when no fitted model applies."""
    from bot.calibrate import plot_scores, write_thresholds
    from bot.decide import level_for
    from bot.evaluate import choose_thresholds

    if not report.refuse_scores:
        click.echo("note: no must-refuse questions (expected: []); the answer threshold equals caution")
    thresholds = choose_thresholds(report.answerable_scores, report.refuse_scores, answer_rate=answer_rate)
    path = plot or settings.data_dir / f"calibration-{report.signal}.png"
    plot_scores(report.answerable_scores, report.refuse_scores, thresholds, path, signal=report.signal)
    answered = sum(level_for(s, thresholds).answers for s in report.answerable_scores)
    refused = sum(not level_for(s, thresholds).answers for s in report.refuse_scores)
    click.echo(
        f"{report.signal} thresholds: answer >= {thresholds.answer}, caution >= {thresholds.caution}, "
        f"sources >= {thresholds.sources}"
    )
    click.echo(
        f"answered {answered}/{len(report.answerable_scores)} answerable, "
        f"refused {refused}/{len(report.refuse_scores)} must-refuse; plot: {path}"
    )
    if not dry_run:
        write_thresholds(settings.config_file, report.signal, thresholds)
        click.echo(f"written to {settings.config_file} (decision.thresholds.{report.signal})")


def _model_collections(settings, knowledge: Path, eval_collection: str) -> list[str]:
    """The evaluation collection, and the bot's own when ``knowledge`` is what it ingests."""
    served = {path.resolve() for path in settings.ingest.paths}
    return [eval_collection] + ([settings.store.collection] if knowledge.resolve() in served else [])


@cli.command()
@click.argument("question", required=False)
@click.option("--filter", "filters", multiple=True, metavar="NAME=VALUE", help="Metadata filter (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as one JSON object (no streaming).")
@click.pass_context
@_clean_errors
def ask(ctx, question, filters, as_json):
    """Answer QUESTION from the knowledge, streaming; without QUESTION, chat (history is kept).

    Uses llm.url from endpoints.yml, else the local demo LLM (started for the session if it
    is not running). In the chat, /clear forgets the history and /quit (or Ctrl-D) leaves.
    """
    parsed = _parse_filters(filters)
    with _engine_with_llm(load_settings(ctx.obj["root"])) as engine:
        if question:
            _ask_once(engine, question, [], parsed, as_json)
        else:
            _chat(engine, parsed, as_json)


def _chat(engine, filters: dict, as_json: bool) -> None:
    """Questions from stdin until /quit or end of input; each turn sees the history."""
    history: list[dict[str, str]] = []
    click.echo("Ask a question (/clear forgets the history, /quit leaves).", err=True)
    while True:
        try:
            line = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            click.echo(err=True)
            return
        if line in ("/quit", "/exit"):
            return
        if line == "/clear":
            history.clear()
            click.echo("history cleared", err=True)
        elif line:
            answer = _ask_once(engine, line, history, filters, as_json)
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": answer.text}]

@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Review file to append to (default: ingest.enhanced_questions in bot.yml).")
@click.option("--per-item", type=click.IntRange(min=1), default=3, show_default=True, help="Questions to ask for per chunk.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Enhance at most N new chunks in this run.")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=4, show_default=True, help="Requests to the LLM at a time.")
@click.pass_context
@_clean_errors
def enhance(ctx, paths, output, per_item, limit, workers):
    """Write LLM-generated questions for FAQ items and document chunks into a review file.

    Covers the files under PATHS (default: ingest.paths). Chunks already in the file are
    skipped, so a run can be interrupted and resumed. Approved entries ("approved": true)
    are added to the question side of their chunks by the next `bot ingest`.
    """
    from bot.enhance import enhance as run_enhance

    settings = load_settings(ctx.obj["root"])
    output = output or settings.ingest.enhanced_questions
    if output is None:
        raise click.UsageError("ingest.enhanced_questions is not set in bot.yml: pass --output FILE")
    with _engine_with_llm(settings) as engine:
        report = run_enhance(
            engine, list(paths) or None, output=output, per_item=per_item, limit=limit, workers=workers
        )
    click.echo(report.summary())
    click.echo(
        f'Review {output}: set "approved": true on the entries to keep (edit or delete their '
        "questions as needed), then run `bot ingest` to add them to the question side."
    )


@contextmanager
def _engine_with_llm(settings):
    """An engine whose LLM is up for the block: llm.url, or the local server (started if needed)."""
    from bot.engine import Engine
    from bot.llm.server import llm_endpoint

    with llm_endpoint(settings, announce=lambda message: click.echo(message, err=True)) as url:
        with Engine(settings, llm_url=url) as engine:
            yield engine


def _ask_once(engine, question: str, history: list, filters: dict, as_json: bool):
    from bot.generate import AnswerDone

    if as_json:
        answer = engine.answer(question, history=history, filters=filters)
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
        return answer

    async def run():
        shown = ""
        async for event in engine.answer_stream(question, history=history, filters=filters):
            if isinstance(event, AnswerDone):
                return event.answer, shown
            shown += event.text
            click.echo(event.text, nl=False)
            sys.stdout.flush()

    answer, shown = engine.run(run())
    if answer.text != shown:  # not streamed (sources only, refusal) or replaced after an LLM failure
        click.echo(("\n" if shown else "") + answer.text, nl=False)
    click.echo()
    _print_answer_footer(answer, engine.generator.sources_block(answer))
    return answer


def _print_answer_footer(answer, sources: str) -> None:
    if sources:
        click.echo("\n" + sources)
    decision = answer.decision
    score = "none" if decision.score is None else f"{decision.score:.3f}"
    parts = [f"decision: {answer.level.value} ({decision.signal} {score})"]
    if answer.query != answer.question:
        parts.append(f"searched: {answer.query}")
    if "llm_first_token" in answer.timings:
        parts.append(f"first token {answer.timings['llm_first_token']:.2f} s")
    parts.append(f"total {answer.timings.get('total', 0):.2f} s")
    if answer.error:
        parts.append(f"LLM error: {answer.error}")
    click.secho(" · ".join(parts), fg="bright_black", err=True)


@cli.command()
@click.option("--no-llm", is_flag=True, help="Run without an LLM: knowledge answers list their sources.")
@click.option("--retrain", is_flag=True, help="Train the Rasa model even if its inputs did not change.")
@click.option("--port", type=int, default=5005, show_default=True, help="Port of the Rasa server behind the shell.")
@click.pass_context
@_clean_errors
def chat(ctx, no_llm, retrain, port):
    """Chat with the assistant in this terminal (rasa shell).

    Trains the Rasa model if data/, domain.yml or config.yml changed, ingests knowledge/ if it
    changed, starts the LLM (unless --no-llm) and the action server, restarts them if they die,
    and stops them on exit.
    """
    from bot.assistant import assistant_services, model_path, rasa_command, rasa_environment, train_if_changed

    settings = load_settings(ctx.obj["root"])
    if retrain:
        train_if_changed(settings, _announce, force=True)
    with assistant_services(settings, use_llm=not no_llm, announce=_announce) as supervisor:
        _announce("opening rasa shell: type a message, /stop (or Ctrl-C) to leave")
        shell = rasa_command(
            "shell", "--model", str(model_path(settings.root)), "--endpoints", "endpoints.yml", "--port", str(port)
        )
        try:
            with supervisor.in_background():
                subprocess.run(shell, cwd=settings.root, env=rasa_environment(settings))
        except KeyboardInterrupt:
            pass
    _announce("stopped")


@cli.command()
@click.option("--port", type=int, default=5005, show_default=True, help="Port of Rasa's channels (REST, socket.io).")
@click.option("--no-llm", is_flag=True, help="Run without an LLM: knowledge answers list their sources.")
@click.pass_context
@_clean_errors
def serve(ctx, port, no_llm):
    """Serve the assistant on the channels in credentials.yml (rasa run), until Ctrl-C.

    Prepares and starts everything as `bot chat` does, then `rasa run` instead of the shell.
    A server that dies (rasa run, the action server, the local LLM) is restarted after 1 s,
    then 2, 4, ... up to 60 s while it keeps dying; the others keep serving. The port stays
    open meanwhile: a message sent while rasa run restarts waits for it instead of being refused.
    """
    from bot.assistant import action_port, assistant_services, listen, rasa_ready, rasa_server

    settings = load_settings(ctx.obj["root"])
    with assistant_services(settings, use_llm=not no_llm, announce=_announce) as supervisor, listen(port) as listener:
        server = rasa_server(settings, port=port, listener=listener)  # a restarted Rasa serves the same socket
        server.start()
        try:
            server.wait_ready(rasa_ready(port), timeout=300)
            supervisor.watch(server, rasa_ready(port))
            actions = f"http://localhost:{action_port(settings)}"
            _announce(f"web widget: {actions}/widget/index.html; review page: {actions}/review (token: BOT_REVIEW_TOKEN)")
            _announce(f"serving at http://localhost:{port} (REST: /webhooks/rest/webhook); Ctrl-C stops")
            supervisor.run()
        except KeyboardInterrupt:
            return
        finally:
            server.stop()


def _announce(message: str) -> None:
    click.secho(f"[bot] {message}", fg="cyan", err=True)


@cli.command("serve-llm")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None, help="Hugging Face model folder [default: bot.yml local_llm.model_dir].")
@click.option("--served-name", default=None, help="Model name clients ask for [default: endpoints.yml llm.model].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="[default: bot.yml local_llm.port, 8010]")
@click.option("--max-model-len", type=int, default=None, help="Context length, prompt + answer [default: local_llm.max_model_len].")
@click.option("--dtype", default=None, help="auto, bfloat16, float16 (GPU), ... [default: local_llm.dtype].")
@click.option("--gpu-memory-utilization", type=float, default=None, help="GPU only: share of GPU memory vLLM may use (e.g. 0.9).")
@click.option("--quantization", default=None, help="GPU only: awq, gptq, fp8, ... (the model must match).")
@click.option("--tensor-parallel-size", type=int, default=1, show_default=True, help="GPU only: GPUs to shard the model over.")
@click.option("--eager/--compiled", default=None, help="Eager mode starts in ~35 s on CPU; compiled runs faster after a longer start [default: local_llm.enforce_eager].")
@click.option("--python", "python", type=click.Path(path_type=Path), default=None, help="Python of the vLLM environment (default: .venv-llm, made by make install).")
@click.pass_context
@_clean_errors
def serve_llm(ctx, model_dir, served_name, host, port, max_model_len, dtype, gpu_memory_utilization, quantization, tensor_parallel_size, eager, python):
    """Run a vLLM OpenAI-compatible server until interrupted (Ctrl-C stops it).

    On a CPU-only machine this serves the demo model assembled by scripts/install_llm.sh.
    On a GPU host, point --python at a GPU build of vLLM and --model at your model.
    """
    from bot.llm.server import LLMServer

    server = LLMServer.from_settings(
        load_settings(ctx.obj["root"]),
        model_dir=model_dir,
        served_name=served_name,
        host=host,
        port=port,
        max_model_len=max_model_len,
        dtype=dtype,
        enforce_eager=eager,
        gpu_memory_utilization=gpu_memory_utilization,
        quantization=quantization,
        tensor_parallel_size=tensor_parallel_size,
        python=python,
    )
    with server:
        click.echo(f"serving {server.served_name} at {server.url} (log: {server.log_path}); Ctrl-C stops it")
        try:
            while server.running():
                time.sleep(1)
        except KeyboardInterrupt:
            click.echo("stopping")
            return
        raise click.ClickException(f"the server exited on its own:\n{server.log_tail()}")


# ---------------------------------------------------------------- traces

_LEVELS = ("answer", "cautious", "sources_only", "refuse")  # bot.decide.Level (not imported: startup time)


class _Moment(click.ParamType):
    """YYYY-MM-DD, an ISO datetime (local time unless it has an offset), or an age: 30m, 24h, 7d, 2w."""

    name = "DATE"

    def __init__(self, *, end: bool = False):
        self.end = end

    def convert(self, value, param, ctx):
        from datetime import datetime

        from bot.traces.timespec import parse_moment

        if isinstance(value, datetime):
            return value
        try:
            return parse_moment(value, end=self.end)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _sql(ctx: click.Context):
    """The settings and the SQL database that holds the traces (the vector store is not opened)."""
    from bot.db import connect

    settings = load_settings(ctx.obj["root"])
    return settings, connect(settings.sql.url, settings.root)


def _turn_id(sql, given: str) -> str:
    from bot.traces.lookup import TurnNotFound, resolve_turn_id

    try:
        return resolve_turn_id(sql, given)
    except TurnNotFound as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group()
def traces() -> None:
    """Review what the bot did: list and show turns, label them, export labels for calibration.

    Every answered turn is traced to the SQL database (sql.url in endpoints.yml) unless
    traces.enabled is false in bot.yml. These commands read that database only, so they
    work while the bot is running. A turn id may be shortened to any unique prefix.
    """


@traces.command("list", short_help="List turns (filter by level, feedback, labels, time, ...).")
@click.option("--level", type=click.Choice(_LEVELS), default=None, help="What the user got.")
@click.option("--kind", type=click.Choice(["knowledge", "canned"]), default=None, help="Knowledge turns, or canned responses to sensitive intents.")
@click.option("--intent", default=None, metavar="I", help="The NLU intent of the turn.")
@click.option("--feedback", type=click.Choice(["negative", "positive", "any"]), default=None, help="Turns with net thumbs down, net thumbs up, or any rating.")
@click.option("--labelled/--unlabelled", default=None, help="Turns a reviewer labelled, or not yet.")
@click.option("--max-score", type=float, default=None, metavar="X", help="The decision's relevance score at most X (borderline refusals).")
@click.option("--since", type=_Moment(), default=None, help="From DATE: YYYY-MM-DD, ISO datetime (local time) or an age (30m, 24h, 7d).")
@click.option("--until", type=_Moment(end=True), default=None, help="Before DATE (a bare date includes that day).")
@click.option("--conversation", default=None, metavar="ID", help="One conversation (sender id).")
@click.option("--text", default=None, metavar="S", help="Questions containing S.")
@click.option("--guard", type=click.Choice(["attack", "sensitive", "downgraded", "any", "none"]), default=None, help="The guard's decision: an attack or a sensitive message given a canned response, an answer downgraded to its sources; any of them, or none.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, metavar="N", help="Newest N turns.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (full turn ids, times in UTC).")
@click.pass_context
@_clean_errors
def traces_list(ctx, level, kind, intent, feedback, labelled, max_score, since, until, conversation, text, guard, limit, as_json):
    """List traced turns, newest first: time (local), turn id, kind, level, score, feedback,
    verdict and question."""
    from bot.traces import TurnFilter, list_turns
    from bot.traces.render import to_json, turn_table

    _, sql = _sql(ctx)
    where = TurnFilter(
        level=level, kind=kind, intent=intent, feedback=feedback, labelled=labelled, max_score=max_score,
        since=since, until=until, conversation_id=conversation, text=text, guard=guard,
    )
    rows = list_turns(sql, where, limit=limit)
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no turns match", err=True)
        return
    click.echo(turn_table(rows))
    if len(rows) == limit:
        click.echo(f"(the newest {limit}; --limit N shows more)", err=True)


@traces.command("stats", short_help="Turns per day by level and guard, thumbs, latency, unanswered questions.")
@click.option("--since", type=_Moment(), default="7d", show_default=True, help="From DATE: YYYY-MM-DD, ISO datetime (local time) or an age (30m, 24h, 7d).")
@click.option("--until", type=_Moment(end=True), default=None, help="Before DATE (a bare date includes that day).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, metavar="N", help="Unanswered questions listed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
@_clean_errors
def traces_stats(ctx, since, until, top, as_json):
    """What the bot did over a period: turns per day by level and by guard decision, thumbs up
    and down, the share of LLM answers that declined, p50 / p95 latency per stage, and the
    questions most often refused or declined (candidates for new FAQ items)."""
    from bot.traces.stats import stats_tables, trace_stats

    _, sql = _sql(ctx)
    stats = trace_stats(sql, since=since, until=until, top=top)
    click.echo(json.dumps(stats.as_dict(), ensure_ascii=False, indent=2) if as_json else stats_tables(stats))


@traces.command("show", short_help="Show one turn's whole trace.")
@click.argument("turn_id")
@click.option("--json", "as_json", is_flag=True, help="Print the stored trace as JSON.")
@click.pass_context
@_clean_errors
def traces_show(ctx, turn_id, as_json):
    """Show one turn's whole trace: question, intent, decision and thresholds, fused hits with
    each route's score, routes, prompt, answer, citations, timings, feedback and labels."""
    from bot.traces import get_turn
    from bot.traces.render import render_turn, to_json

    _, sql = _sql(ctx)
    turn = get_turn(sql, _turn_id(sql, turn_id))
    click.echo(to_json(turn) if as_json else render_turn(turn))


@traces.command("label", short_help="Label a turn: answer with ITEM_ID, or refuse.")
@click.argument("turn_id")
@click.option("--answer", "expected", multiple=True, metavar="ITEM_ID", help="The bot should have answered with this item (FAQ id, item id or document path; repeat for several).")
@click.option("--refuse", is_flag=True, help="The bot should have refused: nothing in the knowledge answers it.")
@click.option("--note", default=None, help="Why, for the next reviewer.")
@click.option("--force", is_flag=True, help="Accept item ids that the knowledge does not hold (not checked).")
@click.pass_context
@_clean_errors
def traces_label(ctx, turn_id, expected, refuse, note, force):
    """Record what the bot should have done for TURN_ID. The latest label of a turn counts;
    `bot traces export` turns labels into queries for `bot calibrate` and `bot eval`."""
    from bot.traces import get_turn, label_turn
    from bot.traces.lookup import unknown_item_ids

    if bool(expected) == refuse:
        raise click.UsageError("give either --answer ITEM_ID (repeatable) or --refuse")
    settings, sql = _sql(ctx)
    turn = get_turn(sql, _turn_id(sql, turn_id))
    if expected and not force:
        unknown = unknown_item_ids(sql, settings.store.collection, expected, turn)
        if unknown:
            raise click.ClickException(
                f"not in the knowledge (collection {settings.store.collection!r}): {', '.join(unknown)}; "
                "use the item ids `bot traces show` or `bot search` print, or --force"
            )
    try:
        label_turn(sql, turn["turn_id"], "refuse" if refuse else "answer", expected=expected, note=note)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    verdict = "refuse" if refuse else f"answer with {', '.join(expected)}"
    click.echo(f"labelled turn {turn['turn_id']}: {verdict}")
    if turn["labels"]:
        click.echo(f"(it had the verdict {turn['labels'][-1]['verdict']!r}: the latest counts, the history is kept)")


@traces.command("export", short_help="Labelled questions as queries JSONL for calibrate and eval.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSONL file to write (default: standard output).")
@click.option("--from-feedback", is_flag=True, help="Also thumbs-up turns nobody labelled that the LLM answered with citations, as answerable with the cited items (for `bot eval`; biased for calibration: they were all answered).")
@click.pass_context
@_clean_errors
def traces_export(ctx, output, from_feedback):
    """Write labelled questions as evaluation queries ({"query", "expected"}; expected [] means
    must refuse), one line per question (the latest label wins), ready for:

    \b
        bot calibrate --knowledge knowledge --queries FILE
        bot eval --knowledge knowledge --queries FILE
    """
    from bot.traces.export import export_queries

    _, sql = _sql(ctx)
    export = export_queries(sql, from_feedback=from_feedback)
    if not export.records:
        raise click.ClickException(
            "no labelled turns to export: label some with `bot traces label TURN_ID --answer ITEM_ID` or `--refuse`"
        )
    if output is None:
        click.echo(export.jsonl(), nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(export.jsonl(), "utf-8")
    click.echo(f"exported {export.summary()}" + (f" to {output}" if output else ""), err=True)
    if not export.answerable:
        click.echo("note: no answerable questions; bot calibrate needs some (label with --answer ITEM_ID)", err=True)
    elif not export.refuse:
        click.echo("note: no must-refuse questions; calibration is better with some (label with --refuse)", err=True)


@traces.command("purge", short_help="Delete turns older than DAYS.")
@click.option("--older-than", "days", type=click.IntRange(min=1), default=None, metavar="DAYS", help="Delete turns older than DAYS [default: traces.retention_days in bot.yml].")
@click.pass_context
@_clean_errors
def traces_purge(ctx, days):
    """Delete old turns with their labels and feedback (the bot also does this daily)."""
    from datetime import datetime, timedelta, timezone

    from bot.traces import purge_older_than
    from bot.traces.timespec import local_time

    settings, sql = _sql(ctx)
    days = days or settings.traces.retention_days
    if not days:
        raise click.ClickException("traces.retention_days is 0 in bot.yml (traces are kept): pass --older-than DAYS")
    cutoff = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=days)
    removed = purge_older_than(sql, cutoff)
    click.echo(f"deleted {removed} turns older than {days} days (before {local_time(cutoff)}), with their labels and feedback")


def _run_eval(ctx, knowledge: Path, queries, fusion, quiet: bool, *, rebuild: bool = False):
    from bot.evaluate import evaluate, read_queries

    labelled = read_queries(queries)
    settings = load_settings(ctx.obj["root"])
    with _eval_engine(settings, knowledge, quiet, rebuild=rebuild) as (engine, _, identical):
        overrides = {"fusion": fusion} if fusion else {}
        return evaluate(engine, labelled, progress=not quiet, identical=identical, **overrides)


@contextmanager
def _eval_engine(settings, knowledge: Path, quiet: bool, *, rebuild: bool = False):
    """An engine on KNOWLEDGE's own collection, ingested, with its chunks and identical records."""
    from bot.engine import Engine
    from bot.evaluate import eval_collection_name, identical_records

    with Engine(settings, collection=eval_collection_name(knowledge)) as engine:
        ingest_report = engine.ingest([knowledge], rebuild=rebuild, progress=not quiet)
        if not quiet:
            click.echo(ingest_report.summary(), err=True)
        chunks = [chunk for chunks in engine.iter_chunks([knowledge]) for chunk in chunks]
        yield engine, chunks, identical_records(chunks)


def _parse_filters(pairs) -> dict:
    filters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--filter")
        filters[name.strip()] = value.split(",") if "," in value else value
    return filters


@cli.command()
@click.argument("url", required=False)
@click.option("--messages", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="One message a line, or JSONL: {\"turns\": [...]} scripts, {\"query\": ...} or {\"message\": ...}.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None, help="Users in a closed loop [default: 1].")
@click.option("--rate", type=float, default=None, help="Open loop instead: conversations started per second.")
@click.option("--sweep", default=None, metavar="N,N,...", help="One closed-loop point per concurrency, e.g. 1,4,16,64.")
@click.option("--duration", type=float, default=20.0, show_default=True, help="Seconds per point (at most 600).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Turns per point at most (--llm: requests per point).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG of latency against throughput [default with --sweep: .bot/loadtest.png].")
@click.option("--llm", is_flag=True, help="Load the LLM endpoint alone (endpoints.yml llm.url, else the local demo server).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True, help="--llm: tokens per completion.")
@click.option("--allow-remote", is_flag=True, help="Allow a target that is not on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
@_clean_errors
def loadtest(ctx, url, messages, concurrency, rate, sweep, duration, count, plot, llm, max_tokens, allow_remote, as_json):
    """Load-test a running assistant's REST channel (URL, default http://127.0.0.1:5005).

    Each simulated user holds its own conversation; prints turns/s, latency p50 / p95 / p99,
    errors by kind and the kinds of replies (knowledge level, canned, guard) per point.
    With --llm, measures the LLM endpoint alone: requests/s, time to first token, tokens/s.
    """
    import asyncio

    from bot import loadtest as lt

    settings = load_settings(ctx.obj["root"])
    points = [int(n) for n in sweep.split(",")] if sweep else [concurrency or 1]
    scripts = lt.read_scripts(messages) if messages else None
    echo = (lambda line: None) if as_json else click.echo
    progress = None if as_json else (lambda line: click.echo(f"  ... {line}", err=True))
    if llm:
        from bot.llm.server import LLMServer

        url = url or settings.llm.url or LLMServer.from_settings(settings).url
        lt.check_target(url, allow_remote=allow_remote)
        prompts = [s.turns[0] for s in scripts] if scripts else list(lt.DEFAULT_LLM_PROMPTS)
        reports = []
        for n in points:
            report = asyncio.run(lt.llm_load(url, settings.llm.model, prompts, concurrency=n, requests=count or 4 * n,
                                             max_tokens=max_tokens, api_key=settings.llm.api_key))  # fmt: skip
            reports.append(report.as_dict())
            echo(lt.format_llm_point(reports[-1]))
        if plot or sweep:
            path = lt.plot_sweep([(r["requests_per_s"], (r["ttft_p50_ms"] or 0) / 1000, (r["ttft_p90_ms"] or 0) / 1000)
                           for r in reports], plot or settings.data_dir / "loadtest-llm.png",
                          title=f"{settings.llm.model}: time to first token", throughput="requests/s",
                          labels=("TTFT p50", "TTFT p90"))  # fmt: skip
            echo(f"plot: {path}")
    else:
        if scripts is None:
            raise click.UsageError("--messages FILE is required (the messages to send)")
        url = url or "http://127.0.0.1:5005"
        lt.check_target(url, allow_remote=allow_remote)
        reports = []
        for n in points:
            load = {"rate": rate} if rate and not sweep else {"concurrency": n}
            result = asyncio.run(lt.chat_load(url, scripts, duration=duration, max_turns=count, progress=progress, **load))
            reports.append(result)
            echo(result.summary())
        if plot or sweep:
            path = lt.plot_sweep([(r.as_dict()["turns_per_s"], r.percentile(50), r.percentile(95)) for r in reports],
                                 plot or settings.data_dir / "loadtest.png", title=f"{url}: latency against throughput")  # fmt: skip
            echo(f"plot: {path}")
        reports = [r.as_dict() for r in reports]
    if as_json:
        click.echo(json.dumps(reports if sweep else reports[0], ensure_ascii=False))


def main() -> None:
    """Console entry point. SIGTERM exits like Ctrl-C does, so servers this command started
    (``serve-llm``, the local LLM of ``ask``) are stopped on the way out, never orphaned."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cli()
