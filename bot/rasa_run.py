"""``rasa`` serving on a listening socket its parent hands down, so that a restart refuses no one.

    python -m bot.rasa_run --listen-fd 5 run --model models/assistant.tar.gz ...

``bot serve`` opens the port once and passes the socket to each ``rasa run`` it starts. While
a Rasa that died is restarted (loading the model takes half a minute on two cores), the socket
stays open in ``bot serve``: a message sent meanwhile waits in the kernel's queue and is
answered by the new Rasa, instead of being refused. Without ``--listen-fd`` this is plain ``rasa``.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["main", "serve_on"]


def serve_on(listener: socket.socket) -> None:
    """Make every Sanic app of this process serve on ``listener`` instead of binding its host
    and port (Rasa's ``serve_application`` names them; Sanic takes a socket instead)."""
    import sanic

    run = sanic.Sanic.run

    def run_on_listener(self, host=None, port=None, **kwargs):
        return run(self, sock=listener, **kwargs)

    sanic.Sanic.run = run_on_listener


def main(argv: list[str] | None = None) -> None:
    """Run Rasa's command line with ``argv``, on the socket ``--listen-fd N`` names, if any."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--listen-fd"]:
        serve_on(socket.socket(fileno=int(args[1])))
        args = args[2:]
    sys.argv = ["rasa", *args]
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
