"""Parse files in a child process under ingest's time and memory limits.

    parser = ParserProcess(settings.ingest)
    try:
        document = parser.load(path)     # a ParsedDocument, or LoaderError with the reason
    finally:
        parser.close()

One child (``python -m bot.ingest.parser_process``) serves file after file, so a corpus
of many small files pays its start (about a second of imports) once. The child's address
space is capped at ``ingest.max_parse_mb``: past it a parser gets ``MemoryError``, which
fails that file. A file that takes longer than ``ingest.max_parse_seconds`` has its child
killed; so does one whose parser crashes the interpreter. Either way the file fails with
its reason and the next file gets a new child. The child runs nothing but the loaders
(:func:`bot.ingest.loaders.load_file`): no encoder, no store.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import bot
from bot.config import IngestSettings
from bot.errors import LoaderError
from bot.ingest.documents import ParsedDocument

__all__ = ["ParserProcess"]

_MB = 1024 * 1024
_START_SECONDS = 60.0  # for the child's imports, before any file is timed
_STOP_SECONDS = 5.0  # how long a child may take to exit when told to


class ParserProcess:
    """A child process that parses files with :func:`~bot.ingest.loaders.load_file`, started
    on first use and again after it was killed."""

    def __init__(self, settings: IngestSettings):
        self.settings = settings
        self._process: subprocess.Popen | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None

    def load(self, path: Path) -> ParsedDocument:
        """Parse ``path`` in the child; raise :class:`LoaderError` for anything that goes wrong."""
        if self._process is not None and self._process.poll() is not None:
            self._stop(kill=False)  # it ended between files: start another
        self._start(path)
        assert self._requests is not None and self._replies is not None
        try:
            self._requests.send(str(path))
            answered = self._replies.poll(self.settings.max_parse_seconds)
            reply = self._replies.recv() if answered else None
        except (EOFError, OSError):
            raise LoaderError(str(path), f"the parser process died ({self._stop(kill=True)})") from None
        if reply is None:
            self._stop(kill=True)
            raise LoaderError(
                str(path),
                f"parsing took longer than {self.settings.max_parse_seconds:g} s (ingest.max_parse_seconds)",
            )
        status, value = reply
        if status == "ok":
            return value
        raise LoaderError(str(path), value)

    def close(self) -> None:
        """Stop the child, if one runs; a later :meth:`load` starts another."""
        self._stop(kill=False)

    def _start(self, path: Path) -> None:
        """Start a child and wait until it is ready to parse (its imports take a while)."""
        if self._process is not None:
            return
        env = dict(os.environ)
        package_parent = str(Path(bot.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_parent, env.get("PYTHONPATH"))))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bot.ingest.parser_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests = Connection(os.dup(self._process.stdin.fileno()), readable=False)
        self._replies = Connection(os.dup(self._process.stdout.fileno()), writable=False)
        self._process.stdin.close()
        self._process.stdout.close()
        self._requests.send(self.settings)
        try:
            ready = self._replies.poll(_START_SECONDS) and self._replies.recv() == ("ready", None)
        except (EOFError, OSError):
            ready = False
        if not ready:
            how = self._stop(kill=True)
            raise LoaderError(str(path), f"the parser process did not start ({how}); see the errors above")

    def _stop(self, *, kill: bool) -> str:
        """End the child (at once when ``kill``); say how it ended."""
        process, self._process = self._process, None
        for connection in (self._requests, self._replies):
            if connection is not None:
                connection.close()
        self._requests = self._replies = None
        if process is None:
            return "not running"
        if kill and process.poll() is None:
            process.kill()
        try:
            code = process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        return _describe_exit(code)


def _describe_exit(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


# ---------------------------------------------------------------------------------- the child


def _serve(requests: Connection, replies: Connection) -> None:
    """Answer each path with ``("ok", document)`` or ``("error", reason)`` until the parent goes."""
    from bot.ingest.loaders import load_file

    settings: IngestSettings = requests.recv()
    limit = settings.max_parse_mb * _MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    replies.send(("ready", None))
    while True:
        try:
            path = requests.recv()
        except EOFError:
            return
        _allow_cpu_seconds(settings.max_parse_seconds, cpu_hard)
        try:
            reply = ("ok", load_file(Path(path), max_bytes=int(settings.max_file_mb * _MB), limits=settings))
        except LoaderError as exc:
            reply = ("error", exc.reason)
        try:
            replies.send(reply)
        except MemoryError:
            reply = None  # free the document before saying so
            replies.send(("error", "the parsed text is too large to pass on (ingest.max_parse_mb)"))


def _allow_cpu_seconds(seconds: float, hard: int) -> None:
    """Let this file use ``seconds`` more of CPU time: a backstop that ends the child by itself
    (SIGXCPU) should its parent be gone and no one kill it."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime + seconds) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _main() -> None:
    """The child's entry point: the channel is moved off stdin / stdout, so that nothing a
    parser prints can garble it; parsers' warnings about odd files are kept quiet, and Ctrl-C
    is left to the parent (which stops this child)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)
    _serve(requests, replies)


if __name__ == "__main__":
    _main()
