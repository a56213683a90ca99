"""Run the Rasa assistant: train the model if its inputs changed, ingest the knowledge if it
changed, bring up the LLM and the action server, then a channel (``rasa shell`` or ``rasa run``).

    with assistant_services(settings, use_llm=True, announce=print) as supervisor:
        with supervisor.in_background():  # a server that dies meanwhile is restarted
            subprocess.run(rasa_command("shell", "--model", str(model_path(settings.root))))

Everything started here is stopped when the block ends.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import socket
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import yaml

from bot.config import Settings
from bot.errors import EncoderMismatchError, ServiceError
from bot.process import ManagedProcess, port_in_use
from bot.supervisor import Supervisor

__all__ = [
    "ACTION_PORT",
    "action_port",
    "action_token",
    "action_server",
    "assistant_services",
    "engine_ready",
    "listen",
    "ingest_if_changed",
    "model_path",
    "rasa_command",
    "rasa_environment",
    "rasa_ready",
    "rasa_server",
    "train_if_changed",
    "training_fingerprint",
]

#: The action server's port when endpoints.yml's action_endpoint names none.
ACTION_PORT = 5055
#: What a Rasa model is trained from, relative to the project root.
RASA_INPUTS = ("config.yml", "domain.yml", "data")
MODEL_NAME = "assistant"

Announce = Callable[[str], None]


def action_port(settings: Settings) -> int:
    """The port of ``action_endpoint.url`` in endpoints.yml, where Rasa will call the actions."""
    endpoints = yaml.safe_load((settings.root / "endpoints.yml").read_text("utf-8")) or {}
    url = (endpoints.get("action_endpoint") or {}).get("url") or ""
    return urlsplit(url).port or ACTION_PORT


def model_path(root: Path) -> Path:
    """The trained Rasa model (``rasa train --fixed-model-name assistant``)."""
    return root / "models" / f"{MODEL_NAME}.tar.gz"


def rasa_command(*args: str) -> list[str]:
    """``rasa ARGS`` from this Python environment."""
    return [str(Path(sys.executable).parent / "rasa"), *args]


def action_token(settings: Settings) -> str:
    """The token Rasa sends to the action server (endpoints.yml ``action_endpoint.token``):
    bot.yml's ``serving.action_token`` (``BOT_ACTION_TOKEN``) when set, else one made once for
    this process, so that the Rasa and action servers it starts share it."""
    return settings.serving.action_token or _process_token()


@functools.lru_cache(maxsize=1)
def _process_token() -> str:
    return secrets.token_urlsafe(32)


def rasa_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for Rasa processes: offline, no telemetry, this project's root, and the
    action server's token (:func:`action_token`; Rasa stops at start-up without it)."""
    env = dict(os.environ)
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        BOT_ROOT=str(settings.root),
        BOT_ACTION_TOKEN=action_token(settings),
    )
    env.update(extra)
    return env


def training_fingerprint(root: Path) -> str:
    """A hash of everything a Rasa model is trained from (file names and contents)."""
    digest = hashlib.sha256()
    for name in RASA_INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def train_if_changed(settings: Settings, announce: Announce, *, force: bool = False) -> bool:
    """Train the Rasa model when ``config.yml``, ``domain.yml`` or ``data/`` changed since the
    last training (or no model exists); returns whether it trained. Rasa's output is shown."""
    root = settings.root
    model, stamp = model_path(root), settings.data_dir / "rasa-model.sha256"
    fingerprint = training_fingerprint(root)
    if not force and model.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return False
    announce("training the Rasa model (data/, domain.yml or config.yml changed, or no model yet)")
    command = rasa_command(
        "train", "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
        "--out", str(model.parent), "--fixed-model-name", MODEL_NAME,
    )  # fmt: skip
    result = subprocess.run(command, cwd=root, env=rasa_environment(settings))
    if result.returncode != 0 or not model.is_file():
        raise ServiceError(f"rasa train failed (exit code {result.returncode}); its output is above")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    return True


def ingest_if_changed(settings: Settings, announce: Announce) -> None:
    """Bring the knowledge collection in line with ``knowledge/`` (unchanged files are skipped),
    then let go of the store so the action server can own it."""
    from bot.engine import Engine

    announce("checking knowledge/ for changes")
    with Engine(settings) as engine:
        try:
            report = engine.ingest(progress=True)
        except EncoderMismatchError as exc:  # the collection is derived from knowledge/: remake it
            announce(f"{exc.args[0].split('; ')[0]}: rebuilding it from knowledge/")
            report = engine.ingest(rebuild=True, progress=True)
    announce(report.summary())


def action_server(settings: Settings, *, port: int = ACTION_PORT, use_llm: bool = True) -> ManagedProcess:
    """The action server (``rasa run actions``), not yet started; its log is ``.bot/actions.log``.
    It listens on bot.yml's ``serving.action_host`` (our rasa-sdk plugin sees to it) and checks
    the token of :func:`rasa_environment` on every ``/webhook`` call."""
    return ManagedProcess(
        "action server",
        rasa_command("run", "actions", "--actions", "actions", "--port", str(port)),
        log_path=settings.data_dir / "actions.log",
        env=rasa_environment(settings, BOT_USE_LLM="true" if use_llm else "false"),
        cwd=settings.root,
    )


def engine_ready(port: int) -> Callable[[httpx.Client], bool]:
    """A readiness check for the action server: true once its engine is built; raises
    :class:`ServiceError` at once when the build failed (e.g. the store is locked)."""

    def check(client: httpx.Client) -> bool:
        response = client.get(f"http://127.0.0.1:{port}/knowledge/ready")
        body = response.json()
        if body.get("error"):
            raise ServiceError(f"the action server cannot build the knowledge engine: {body['error']}")
        return response.status_code == 200

    return check


def rasa_server(
    settings: Settings,
    *,
    port: int,
    model: Path | None = None,
    endpoints: Path | None = None,
    listener: socket.socket | None = None,
) -> ManagedProcess:
    """``rasa run`` with the channels in ``credentials.yml`` (REST, socket.io), not yet started.

    With ``listener`` (a socket listening on ``port``, see :func:`listen`) Rasa serves on it
    (``bot.rasa_run``): it stays open while Rasa restarts, so messages wait instead of being refused.
    """
    arguments = [
        "run", "--model", str(model or model_path(settings.root)), "--port", str(port),
        "--credentials", "credentials.yml", "--endpoints", str(endpoints or "endpoints.yml"), "--cors", "*",
    ]  # fmt: skip
    if listener is None:
        command, fds = rasa_command(*arguments), ()
    else:
        command = [sys.executable, "-m", "bot.rasa_run", "--listen-fd", str(listener.fileno()), *arguments]
        fds = (listener.fileno(),)
    return ManagedProcess(
        "Rasa server",
        command,
        log_path=settings.data_dir / "rasa.log",
        env=rasa_environment(settings),
        cwd=settings.root,
        pass_fds=fds,
    )


def listen(port: int, host: str = "0.0.0.0") -> socket.socket:
    """A socket listening on ``host:port`` for :func:`rasa_server` (a queue of 1,024 connections)."""
    try:
        return socket.create_server((host, port), backlog=1024)
    except OSError as exc:
        raise ServiceError(f"cannot listen on port {port}: {exc} (is another bot or rasa run using it?)") from exc


def rasa_ready(port: int) -> Callable[[httpx.Client], bool]:
    """A readiness check for ``rasa run``: the REST channel answers (the model is loaded first)."""
    return lambda client: client.get(f"http://127.0.0.1:{port}/webhooks/rest/").status_code == 200


@contextmanager
def assistant_services(
    settings: Settings,
    *,
    use_llm: bool = True,
    announce: Announce = lambda message: None,
    startup_timeout: float = 300.0,
) -> Iterator[Supervisor]:
    """Train if needed, ingest if needed, start the LLM (unless ``use_llm`` is false) and the
    action server (on endpoints.yml's action_endpoint port); stop what was started when the block ends.
    Yields the :class:`Supervisor` that restarts what was started here if it dies (once the
    caller runs it), to which the caller adds its own servers."""
    from bot.llm.server import llm_endpoint

    port = action_port(settings)
    if port_in_use("127.0.0.1", port):
        raise ServiceError(
            f"port {port} (action_endpoint in endpoints.yml) is in use: is another action server "
            "running? Stop it first (the bot starts its own, which owns the embedded knowledge store)"
        )
    train_if_changed(settings, announce)
    ingest_if_changed(settings, announce)
    supervisor = Supervisor(announce, startup_timeout=startup_timeout)
    with ExitStack() as stack:
        if use_llm:
            stack.enter_context(llm_endpoint(settings, announce, supervisor))
        actions = action_server(settings, port=port, use_llm=use_llm)
        announce(f"starting the action server on port {port} (log: {actions.log_path})")
        actions.start()
        stack.callback(actions.stop)
        seconds = actions.wait_ready(engine_ready(port), startup_timeout)
        announce(f"action server ready in {seconds:.0f} s")
        supervisor.watch(actions, engine_ready(port))
        yield supervisor
