"""A local vLLM server in its own process, for CPU-only machines with no LLM URL configured.

vLLM lives in its own environment (``.venv-llm``, made by ``scripts/install_llm.sh``), so this
module never imports it: it starts ``python -m vllm.entrypoints.openai.api_server`` from that
environment and talks to it over HTTP (OpenAI-compatible API).

    with LLMServer(model_dir=Path("models/qwen2.5-coder-0.5b-instruct"),
                   served_name="qwen2.5-coder-0.5b", port=8010) as server:   # ready here
        httpx.post(f"{server.url}/chat/completions", json={"model": server.served_name, ...})
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterator, Mapping, Sequence

import httpx

from bot.config import Settings, find_project_root
from bot.errors import ConfigError, LLMServerError
from bot.process import ManagedProcess, log_tail, port_in_use
from bot.supervisor import Supervisor

__all__ = ["LLMServer", "LLMServerError", "INSTALL_HINT", "llm_endpoint"]

INSTALL_HINT = "run scripts/install_llm.sh from the project root"

#: Environment the server always gets: nothing may be fetched from a hub or phoned home.
_FORCED_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


class LLMServer:
    """One vLLM OpenAI-compatible server process, started from ``.venv-llm``.

    Relative paths are resolved against the project root. Use it as a context manager (starts,
    waits until ready, stops), or call ``start()``, ``wait_ready()`` and ``stop()`` yourself.
    """

    name = "LLM server"

    def __init__(
        self,
        *,
        model_dir: Path,
        served_name: str,
        port: int,
        host: str = "127.0.0.1",
        max_model_len: int = 4096,
        dtype: str = "bfloat16",
        enforce_eager: bool = True,
        gpu_memory_utilization: float | None = None,
        quantization: str | None = None,
        tensor_parallel_size: int = 1,
        python: Path | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        root = find_project_root()
        self.model_dir = _resolve(model_dir, root)
        self.served_name = served_name
        self.host = host
        self.port = port
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.enforce_eager = enforce_eager
        self.gpu_memory_utilization = gpu_memory_utilization
        self.quantization = quantization
        self.tensor_parallel_size = tensor_parallel_size
        self.python = _resolve(python, root) if python else root / ".venv-llm" / "bin" / "python"
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = _resolve(log_path, root) if log_path else root / ".bot" / "llm.log"
        self.startup_timeout = startup_timeout
        self._root = root
        self._service: ManagedProcess | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> "LLMServer":
        """The local server ``bot.yml`` (``local_llm``) and ``endpoints.yml`` (``llm.model``)
        describe; keyword arguments that are not None override them."""
        local = settings.local_llm
        options = dict(
            model_dir=local.model_dir,
            served_name=settings.llm.model,
            port=local.port,
            max_model_len=local.max_model_len,
            dtype=local.dtype,
            enforce_eager=local.enforce_eager,
            startup_timeout=local.startup_timeout,
            python=settings.root / ".venv-llm" / "bin" / "python",
            log_path=settings.data_dir / "llm.log",
        )
        options.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**options)

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8010/v1``."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._service.pid if self._service else None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--host", self.host,
            "--port", str(self.port),
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
        ]  # fmt: skip
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.quantization:
            cmd += ["--quantization", self.quantization]
        if self.tensor_parallel_size != 1:
            cmd += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """The server's environment: ours, plus the vLLM CPU settings, offline."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        # vLLM's CPU settings, unless the caller's environment sets them: 2 GiB of KV cache,
        # OpenMP threads bound to the CPUs this process may use (e.g. "0-1").
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_bind())
        env.update(_FORCED_ENV)
        env["VIRTUAL_ENV"] = str(self.python.parent.parent)
        env.update(self.env)
        return env

    def start(self) -> LLMServer:
        """Start the server process (returns at once; see ``wait_ready``)."""
        if self.running():
            raise LLMServerError(f"the LLM server is already running (pid {self.pid})")
        self._check_installed()
        if port_in_use(self.host, self.port):
            raise LLMServerError(
                f"port {self.port} on {self.host} is already in use: stop what listens there or pick another port"
            )
        self._service = ManagedProcess(
            "LLM server", self.command(), log_path=self.log_path, env=self.environment(), cwd=self._root,
            error=LLMServerError,
        )  # fmt: skip
        self._service.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> float:
        """Block until ``GET /v1/models`` lists the served name; return the seconds since ``start``.

        Raises ``LLMServerError`` with the end of the log when the process exits or time runs out.
        """
        if self._service is None:
            raise LLMServerError("the LLM server was not started: call start() first")
        timeout = self.startup_timeout if timeout is None else timeout
        return self._service.wait_ready(self.serves_model, timeout)

    def stop(self, grace: float = 30.0) -> None:
        """Ask the server to shut down, kill it after ``grace`` seconds; safe to call twice."""
        if self._service is not None:
            self._service.stop(grace)

    @property
    def exit_code(self) -> int | None:
        """The exit code of a server process that ended, else None."""
        return self._service.exit_code if self._service else None

    def running(self) -> bool:
        """Whether the server process is alive (not whether it is ready)."""
        return self._service is not None and self._service.running()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's log."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> LLMServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running() else "stopped"
        return f"LLMServer({self.served_name!r} at {self.url}, {state})"

    def _check_installed(self) -> None:
        if not self.python.exists():
            raise ConfigError(f"the LLM server environment {self.python.parent.parent} is missing: {INSTALL_HINT}")
        if not (self.model_dir / "config.json").is_file():
            raise ConfigError(
                f"no model in {self.model_dir} (no config.json): {INSTALL_HINT}, "
                "or set the model folder to a Hugging Face model downloaded beforehand"
            )

    def serves_model(self, client: httpx.Client | None = None) -> bool:
        """True when a server at ``url`` (this one or another) lists the served name."""
        if client is None:
            with httpx.Client(timeout=2.0) as own:
                return self.serves_model(own)
        try:
            response = client.get(f"{self.url}/models")
            if response.status_code != 200:
                return False
            return any(model.get("id") == self.served_name for model in response.json().get("data", []))
        except (httpx.HTTPError, ValueError):
            return False


def _resolve(path: Path | str, root: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def _cpu_bind() -> str:
    """The CPUs this process may use as vLLM's OpenMP binding, e.g. ``0-1``: the first contiguous run."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    last = cpus[0]
    for cpu in cpus[1:]:
        if cpu != last + 1:
            break
        last = cpu
    return f"{cpus[0]}-{last}"


@contextmanager
def llm_endpoint(
    settings: Settings,
    announce: Callable[[str], None] = lambda message: None,
    supervisor: Supervisor | None = None,
) -> Iterator[str]:
    """The LLM's base URL for the length of the block.

    ``endpoints.yml``'s ``llm.url`` when set. Otherwise the local demo server: reused when one
    already serves the model on ``local_llm.port``, else started here (``announce`` hears about
    it, readiness is awaited; ``supervisor`` restarts it if it dies) and stopped when the block ends.
    """
    if settings.llm.url:
        yield settings.llm.url
        return
    server = LLMServer.from_settings(settings)
    if server.serves_model():
        yield server.url
        return
    announce(f"starting the local demo LLM ({settings.llm.model}, vLLM on CPU); this takes about a minute")
    with server:
        announce(f"LLM ready at {server.url}")
        if supervisor is not None:
            supervisor.watch(server, server.serves_model)
        yield server.url
