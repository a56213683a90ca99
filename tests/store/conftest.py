"""Backends for the store contract suite: every backend must pass the same tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from bot.store.base import VectorStore
from bot.store.edge import EdgeStore
from bot.store.qdrant import QdrantStore

#: name -> opens collection "c" of that backend in a folder (and reopens it, for persistent ones).
BACKENDS: dict[str, Callable[[Path], VectorStore]] = {
    "edge": lambda folder: EdgeStore(folder, "c"),
    "qdrant-memory": lambda folder: QdrantStore("c", location=":memory:"),
    "qdrant-local": lambda folder: QdrantStore("c", path=str(folder / "local")),
}
#: Backends whose data outlives the store object.
PERSISTENT = ("edge", "qdrant-local")


def _opener(name: str, folder: Path):
    opened: list[VectorStore] = []

    def open_() -> VectorStore:
        store = BACKENDS[name](folder)
        opened.append(store)
        return store

    return open_, opened


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request, tmp_path: Path):
    """Opens the parametrized backend in ``tmp_path``; every store opened is closed at the end."""
    open_, opened = _opener(request.param, tmp_path)
    yield open_
    for store in opened:
        store.close()


@pytest.fixture(params=PERSISTENT)
def open_persistent_store(request, tmp_path: Path):
    """Like ``open_store``, for the backends that keep their data on disk."""
    open_, opened = _opener(request.param, tmp_path)
    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store) -> VectorStore:
    """A fresh store of the parametrized backend, without a collection yet."""
    return open_store()
