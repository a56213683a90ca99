"""Choose the store backend from the settings: one factory, several backends."""

from __future__ import annotations

from bot.config import StoreSettings
from bot.store.base import VectorStore

__all__ = ["open_store"]


def open_store(settings: StoreSettings, collection: str | None = None) -> VectorStore:
    """Open ``collection`` (default: the configured one).

    ``url`` set -> the Qdrant server or cluster; otherwise the embedded folder ``path``,
    with Qdrant Edge (``backend: auto`` or ``edge``) or qdrant-client's local mode
    (``backend: qdrant``, slower: brute force in Python).
    """
    name = collection or settings.collection
    if settings.url:
        from bot.store.qdrant import QdrantStore

        return QdrantStore(name, url=settings.url, api_key=settings.api_key)
    if settings.backend == "qdrant":
        from bot.store.qdrant import QdrantStore

        settings.path.mkdir(parents=True, exist_ok=True)
        return QdrantStore(name, path=str(settings.path / "qdrant-local"))
    from bot.store.edge import EdgeStore

    return EdgeStore(settings.path, name)
