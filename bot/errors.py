"""The engine's exceptions, drawn in one place.

    BotError
    ├── ConfigError          a setting is missing or wrong; the message says what to change
    ├── ModelNotFoundError   a model path or package is missing; says what to install or configure
    ├── LoaderError          one file cannot be parsed (corrupt, empty, bad encoding, unknown type, too large)
    ├── StoreError           the vector store failed or does not match the configuration
    │   └── StoreLockedError another process owns the embedded store
    └── ManifestError        the SQL manifest cannot be read or written

Third-party errors are translated at the boundary: ``raise StoreError(...) from exc``.
"""

__all__ = [
    "BotError",
    "ConfigError",
    "ModelNotFoundError",
    "LoaderError",
    "StoreError",
    "StoreLockedError",
    "ManifestError",
]


class BotError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(BotError):
    """A setting is missing or invalid."""


class ModelNotFoundError(BotError):
    """A model is not installed or its configured path does not hold it."""


class LoaderError(BotError):
    """A file cannot be turned into chunks; ``reason`` is shown to the user."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(BotError):
    """The vector store failed or does not match the configuration."""


class StoreLockedError(StoreError):
    """The embedded store is owned by another process."""


class ManifestError(BotError):
    """The ingestion manifest in SQL cannot be read or written."""
