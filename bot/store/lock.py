"""An exclusive, process-level lock on an embedded store, with the owner written inside.

The operating system releases the lock when the owner exits, even if it
crashes, so a stale lock file never blocks anyone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import portalocker

from bot.errors import StoreLockedError

__all__ = ["OwnerLock"]


class OwnerLock:
    """Take with :meth:`acquire` (fails at once if held), give back with :meth:`release`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def acquire(self) -> None:
        """Own the store, or raise :class:`StoreLockedError` naming the current owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.LockException as exc:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise StoreLockedError(
                f"the embedded store {self.path.with_suffix('')} is in use by {owner}. "
                "An embedded store has one owner process at a time: wait for it or stop it, "
                "or point knowledge_store.url in endpoints.yml at a Qdrant server, "
                "which many processes can share."
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({' '.join(os.path.basename(a) for a in sys.argv[:2])})")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Give the store back; safe to call twice."""
        if self._handle is not None:
            portalocker.unlock(self._handle)
            self._handle.close()
            self._handle = None
