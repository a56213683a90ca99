"""The engine's exceptions, drawn in one place.

    BotError
    ├── ConfigError          a setting is missing or wrong; the message says what to change
    ├── ModelNotFoundError   a model path or package is missing; says what to install or configure
    ├── LoaderError          one file cannot be parsed (corrupt, empty, bad encoding, unknown type, too large)
    ├── StoreError           the vector store failed or does not match the configuration
    │   └── StoreLockedError another process owns the embedded store
    ├── ManifestError        the SQL manifest cannot be read or written
    ├── PromptError          a prompt template is missing or uses an undefined variable
    ├── UnknownTurnError     feedback names a turn that is not one of its conversation's
    ├── RerankError          the reranker server gave no scores; retrieval goes on without rerank
    └── LLMError             the LLM server could not give an answer
        ├── LLMUnreachableError     nothing answers at the URL (after retries)
        ├── LLMTimeoutError         connected, but no answer in time
        ├── LLMModelNotFoundError   the server does not serve the configured model name
        ├── LLMContextTooLongError  the prompt and answer do not fit the model's context
        ├── LLMResponseError        any other error status (4xx/5xx after retries, bad key)
        └── LLMServerError          the local vLLM server failed to start or died

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
    "PromptError",
    "UnknownTurnError",
    "RerankError",
    "LLMError",
    "LLMUnreachableError",
    "LLMTimeoutError",
    "LLMModelNotFoundError",
    "LLMContextTooLongError",
    "LLMResponseError",
    "LLMServerError",
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


class EncoderMismatchError(StoreError):
    """The collection was built with other encoders than the configured ones: rebuild it."""


class StoreLockedError(StoreError):
    """The embedded store is owned by another process."""


class ManifestError(BotError):
    """The ingestion manifest in SQL cannot be read or written."""


class PromptError(BotError):
    """A prompt template is missing, invalid, or uses a variable it was not given."""


class UnknownTurnError(BotError):
    """Feedback names a turn that does not exist or belongs to another conversation."""


class RerankError(BotError):
    """The reranker server gave no usable scores (unreachable, timeout, error status, malformed
    reply); the message is short and safe to show in a trace."""


class LLMError(BotError):
    """The LLM could not give an answer; the bot falls back to showing sources."""


class LLMUnreachableError(LLMError):
    """Nothing answers at the LLM URL (connection refused or reset, after retries)."""


class LLMTimeoutError(LLMError):
    """The LLM server accepted the connection but did not answer in time."""


class LLMModelNotFoundError(LLMError):
    """The server does not serve the model name the bot asks for."""


class LLMContextTooLongError(LLMError):
    """The prompt plus the answer budget exceed the model's context length."""


class LLMResponseError(LLMError):
    """The server answered with an error status the other classes do not cover."""


class ServiceError(BotError):
    """A service the bot runs in a child process failed to start, died, or was not ready in time."""


class LLMServerError(LLMError, ServiceError):
    """The local LLM server failed to start, died, or did not become ready in time."""
